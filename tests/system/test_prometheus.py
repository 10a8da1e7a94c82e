"""The metrics against the real Prometheus tools: promtool checks the exposition, a Prometheus
server scrapes exact counts from two workers and runs every query of the Grafana dashboard."""
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.metrics import dashboard_queries, samples
from tests.support.servers import free_port, ready
from tests.support.sockets import read_until_close
from tests.support.tools import prometheus_bin
from tests.support.waiting import wait_until


def test_text_format_passes_promtool_and_has_every_family(serve):
    server = serve("--workers", "2")
    wait_until(lambda: ready(server) == 200, what="readiness")
    with httpx.Client(base_url=server.url) as c:
        c.get("/")
        c.get("/users/5")
        c.get("/missing")
        c.get("/boom")
        c.post("/echo", content=b"x" * 100)
    with server.connect() as s:                     # a parse error
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        read_until_close(s)
    r = server.get("/metrics")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    check = subprocess.run([prometheus_bin("promtool"), "check", "metrics"], input=r.content,
                           capture_output=True)
    assert check.returncode == 0 and check.stdout + check.stderr == b"", check
    text = r.text
    # only what this test sent: the readiness polls are probes, counted apart
    assert samples(text, "fastsock_requests_total") == {
        '{method="GET",route="/",status="200"}': 1.0,
        '{method="GET",route="/users/{user_id:int}",status="200"}': 1.0,
        '{method="GET",route="unmatched",status="404"}': 1.0,
        '{method="GET",route="/boom",status="500"}': 1.0,
        '{method="POST",route="/echo",status="200"}': 1.0,
    }
    assert set(samples(text, "fastsock_probe_requests_total")) <= {
        '{route="/readyz",status="200"}', '{route="/readyz",status="503"}'}
    assert samples(text, "fastsock_parse_errors_total") == {'{reason="duplicate_host"}': 1.0}
    assert samples(text, "fastsock_connections_closed_total")['{reason="error"}'] == 1.0
    assert samples(text, "fastsock_workers") == {"": 2.0}
    bucket = samples(text, "fastsock_request_duration_seconds_bucket")
    assert bucket['{le="0.0001",method="GET",route="/"}'] <= 1.0
    assert bucket['{le="+Inf",method="GET",route="/"}'] == 1.0
    assert len(samples(text, "fastsock_worker_cpu_seconds_total")) == 2
    assert len(samples(text, "fastsock_worker_resident_memory_bytes")) == 2
    assert samples(text, "fastsock_request_bytes_total")[""] > 100
    assert "fastsock_build_info{" in text


def test_real_prometheus_scrapes_exact_counts_from_two_workers(serve, tmp_path):
    server = serve("--workers", "2")
    wait_until(lambda: ready(server) == 200, what="readiness")
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: fastsock\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n")
    prom = subprocess.Popen(
        [prometheus_bin("prometheus"), f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    api = f"http://127.0.0.1:{web}/api/v1/query"

    def query(q):
        try:
            result = httpx.get(api, params={"query": q}).json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return float(result[0]["value"][1]) if result else None

    try:
        wait_until(lambda: query('up{job="fastsock"}') == 1.0, timeout=30, what="target up")
        n = 300

        def get_pid(_):
            return httpx.get(server.url + "/pid", headers={"Connection": "close"}).text
        with ThreadPoolExecutor(4) as pool:         # new connections from 4 clients at once:
            pids = set(pool.map(get_pid, range(n)))     # both workers take some
        assert len(pids) == 2, "the requests did not spread over both workers"
        wait_until(lambda: query('sum(fastsock_requests_total{route="/pid"})') == n,
                   timeout=30, what=f"Prometheus to read {n} requests")
        assert query('up{job="fastsock"}') == 1.0
        assert query("fastsock_workers") == 2.0
        # Prometheus's own scrapes are probes: out of the app's requests
        assert query('sum(fastsock_probe_requests_total{route="/metrics"})') >= 1
        assert query('count(fastsock_requests_total{route=~"/metrics|/readyz|/healthz"})') \
            is None
        # the standard collectors, per worker
        wait_until(lambda: query('count(process_resident_memory_bytes{job="fastsock"})')
                   == 2.0, timeout=30, what="both workers' process metrics")
        assert query('count(count by (worker) (process_cpu_seconds_total))') == 2.0
        # every query of the Grafana dashboard runs against the real server's data
        for q in dashboard_queries(job="fastsock", rate="1m", range_="5m"):
            r = httpx.get(api, params={"query": q}).json()
            assert r["status"] == "success", (q, r)
    finally:
        prom.terminate()
        prom.wait(10)
