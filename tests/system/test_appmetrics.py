"""Metrics the application defines with prometheus_client: summed across workers, kept across a
worker's death, no files anywhere."""
import os
import signal
import subprocess
import sys

import httpx

from tests.support.metrics import samples
from tests.support.servers import ROOT, children, free_port, ready
from tests.support.waiting import wait_until
from tests.support.tools import prometheus_bin


def test_app_metrics_summed_over_workers_without_files(serve, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    server = serve("--workers", "2", app="examples.metrics:app",
                   env={"TMPDIR": str(scratch)})
    wait_until(lambda: ready(server) == 200, what="readiness")
    n = 120
    with httpx.Client(base_url=server.url) as c:
        for i in range(n):                      # new connections: both workers take some
            r = c.post(f"/orders/{'book' if i % 3 else 'pen'}?items={i % 7 + 1}",
                       headers={"Connection": "close"})
            assert r.status_code == 200
    per_worker = samples(server.get("/metrics").text, "fastsock_requests_total")
    assert sum(per_worker.values()) >= n
    text = server.get("/metrics").text
    assert samples(text, "shop_orders_total") == {'{kind="book"}': 80.0, '{kind="pen"}': 40.0}
    buckets = samples(text, "shop_cart_items_bucket")
    assert buckets['{le="+Inf"}'] == n
    assert buckets['{le="1.0"}'] == sum(1 for i in range(n) if i % 7 + 1 <= 1)
    assert buckets['{le="5.0"}'] == sum(1 for i in range(n) if i % 7 + 1 <= 5)
    assert samples(text, "shop_cart_items_count") == {"": n}
    assert samples(text, "shop_cart_items_sum") == {"": float(sum(i % 7 + 1 for i in range(n)))}
    check = subprocess.run([prometheus_bin("promtool"), "check", "metrics"],
                           input=text.encode(), capture_output=True)
    assert check.returncode == 0 and check.stdout + check.stderr == b"", check

    # a worker dies: its counts stay in the sum
    os.kill(children(server.proc.pid)[0], signal.SIGKILL)
    wait_until(lambda: ready(server) == 200, what="respawn")
    with httpx.Client(base_url=server.url) as c:
        c.post("/orders/pen?items=1")
    text = server.get("/metrics").text
    assert samples(text, "shop_orders_total") == {'{kind="book"}': 80.0, '{kind="pen"}': 41.0}

    server.stop()
    assert list(scratch.iterdir()) == []
    assert not any(p.is_file() and p.name.endswith(".db") for p in tmp_path.rglob("*"))


def test_metrics_a_script_made_before_fastsock_run_are_summed_over_workers(tmp_path):
    """fastsock.run(app) installs the shared values when it starts: a script's metrics, made
    before (even before fastsock was imported), are taken over with what they held."""
    port = free_port()
    script = tmp_path / "script.py"
    script.write_text(
        "from prometheus_client import Counter, Gauge\n"
        "HITS = Counter('script_hits', 'Hits.', ['path'])\n"
        "HITS.labels(path='/before').inc(5)\n"        # in the master: each worker's copy
        "STARTED = Gauge('script_started', 'Set before run().')\n"
        "STARTED.set(1)\n"
        "import fastsock\n"
        "app = fastsock.App()\n"
        "@app.get('/hit')\n"
        "def hit(req):\n"
        "    HITS.labels(path='/hit').inc()\n"
        "    return 'ok'\n"
        f"fastsock.run(app, port={port}, workers=2)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _status(url + "/readyz") == 200, what="readiness")
        n = 60
        with httpx.Client(base_url=url) as c:
            for _ in range(n):                  # new connections: both workers take some
                assert c.get("/hit", headers={"Connection": "close"}).text == "ok"
        text = httpx.get(url + "/metrics").text
        assert samples(text, "script_hits_total") == {'{path="/before"}': 10.0,
                                                       '{path="/hit"}': float(n)}, text
        assert samples(text, "script_started") == {"": 2.0}     # a gauge: summed over both
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _status(url: str) -> int:
    try:
        return httpx.get(url).status_code
    except httpx.HTTPError:
        return 0
