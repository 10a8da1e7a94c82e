"""Metrics the application defines with prometheus_client: summed across workers, kept across a
worker's death, no files anywhere."""
import os
import signal
import subprocess
import sys

import httpx

from tests.support.metrics import samples
from tests.support.servers import ROOT, children, free_port, ready
from tests.support.tools import prometheus_bin
from tests.support.waiting import wait_until


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
    before (even before fastsock was imported), are taken over with what they held — the
    master's values, counted once, as prometheus_client keeps them in the master's file."""
    port = free_port()
    script = tmp_path / "script.py"
    script.write_text(
        "from prometheus_client import Counter, Gauge\n"
        "HITS = Counter('script_hits', 'Hits.', ['path'])\n"
        "HITS.labels(path='/before').inc(5)\n"        # in the master: counted once
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
        assert samples(text, "script_hits_total") == {'{path="/before"}': 5.0,
                                                       '{path="/hit"}': float(n)}, text
        # a gauge in the default mode (all): one series per process that set it, by pid;
        # the workers that used a metric show the value they inherited as theirs, from 0
        started = samples(text, "script_started")
        assert started[f'{{pid="{proc.pid}"}}'] == 1.0, started
        assert set(started.values()) - {1.0} <= {0.0} and len(started) <= 3, started
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


# ---- the same app under prometheus_client's own multiprocess mode

# Info, Enum, custom collectors: prometheus_client's multiprocess mode shows none of them
CMP_ONLY_FASTSOCK = ("cmp_build", "cmp_build_info", "cmp_state", "cmp_rank", "cmp_broken")


def rank_workers(server) -> dict[int, str]:
    """Give each of the 2 workers its rank: {pid: "rank0" | "rank1" | "master"}. Connections
    held open at once spread over the workers (each takes some as the others hold theirs):
    R is asked on each until a worker without a rank takes it."""
    names = {server.proc.pid: "master"}
    clients = [httpx.Client(base_url=server.url) for _ in range(8)]
    try:
        for c in clients:
            assert c.get("/healthz").status_code == 200
        for r in (0, 1):
            def took(r=r):
                for c in clients:
                    resp = c.get(f"/rank/{r}")
                    if resp.status_code == 200:
                        names[int(resp.text)] = f"rank{r}"
                        return True
                return False
            wait_until(took, what=f"a worker to take rank {r}")
    finally:
        for c in clients:
            c.close()
    return names


def hit(server, n=12):
    with httpx.Client(base_url=server.url) as c:
        for i in range(n):
            assert c.get(f"/hit/{i}", headers={"Connection": "close"}).text == "ok"


def app_samples(text: str, names: dict[int, str], skip=()) -> set:
    """(sample, labels, value) of the app's families, each pid label named by its process's
    role, so that two servers' processes compare."""
    from prometheus_client.parser import text_string_to_metric_families
    out = set()
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("cmp_") or family.name in skip:
            continue
        for s in family.samples:
            if s.name.endswith("_created"):         # made per process: not merged by either
                continue
            labels = dict(s.labels)
            if "pid" in labels:
                labels["pid"] = names.get(int(labels["pid"]), "unknown " + labels["pid"])
            # (12 digits: two sums of the same floats in another order differ in the last bit)
            out.add((s.name, tuple(sorted(labels.items())), float(f"{s.value:.12g}")))
    return out


def test_app_metrics_equal_prometheus_clients_multiprocess_collector(serve, tmp_path):
    """One app, two servers of 2 workers driven alike: fastsock's /metrics and
    prometheus_client's MultiProcessCollector (PROMETHEUS_MULTIPROC_DIR, fastsock's app
    metrics off) give the same samples — every Gauge mode, counters, histograms, summaries,
    values made in the master before the fork — and again once a worker has died (the
    multiprocess side told so by mark_process_dead, as gunicorn's child_exit hook does).
    The pid label names the same process on both sides (compared by role)."""
    from prometheus_client.multiprocess import mark_process_dead
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    ours = serve("--workers", "2", app="tests.apps.promcompare:app")
    theirs = serve("--workers", "2", "--no-metrics", app="tests.apps.promcompare:app",
                   env={"PROMETHEUS_MULTIPROC_DIR": str(prom_dir)})
    for server in (ours, theirs):
        wait_until(lambda server=server: ready(server) == 200, what="readiness")
    our_names, their_names = rank_workers(ours), rank_workers(theirs)
    hit(ours)
    hit(theirs)
    mine = app_samples(ours.get("/metrics").text, our_names, skip=CMP_ONLY_FASTSOCK)
    prom = app_samples(theirs.get("/prom").text, their_names)
    assert len(prom) > 60, prom
    assert mine == prom, (sorted(mine - prom), sorted(prom - mine))
    # the values that show what each mode means
    shared = {m: {dict(labels).get("pid"): v for name, labels, v in mine
                  if name == f"cmp_{m}_level" and ("kind", "shared") in labels}
              for m in ("all", "min", "max", "sum", "mostrecent")}
    assert shared == {"all": {"rank0": 10.0, "rank1": 11.0}, "min": {None: 10.0},
                      "max": {None: 11.0}, "sum": {None: 21.0}, "mostrecent": {None: 11.0}}
    assert ("cmp_pre_fork_total", (), 5.0) in mine          # counted once, the master's
    assert ("cmp_default", (("pid", "master"),), 0.0) in mine

    # the rank-1 worker dies on both sides; each respawns one, which touches no metric (one
    # that did would show every value it inherited, with its pid, on both sides)
    for server, names in ((ours, our_names), (theirs, their_names)):
        (dead,) = [pid for pid, name in names.items() if name == "rank1"]
        os.kill(dead, signal.SIGKILL)
        def respawned(server=server, dead=dead):
            workers = children(server.proc.pid)
            return dead not in workers and len(workers) == 2 and ready(server) == 200
        wait_until(respawned, what="the respawn")
        if server is theirs:
            mark_process_dead(dead, str(prom_dir))
    mine = app_samples(ours.get("/metrics").text, our_names, skip=CMP_ONLY_FASTSOCK)
    prom = app_samples(theirs.get("/prom").text, their_names)
    assert mine == prom, (sorted(mine - prom), sorted(prom - mine))
    live = {m: {dict(labels).get("pid"): v for name, labels, v in mine
                if name == f"cmp_{m}_level" and ("kind", "shared") in labels}
            for m in ("liveall", "livesum", "sum", "all")}
    assert live == {"liveall": {"rank0": 10.0}, "livesum": {None: 10.0}, "sum": {None: 21.0},
                    "all": {"rank0": 10.0, "rank1": 11.0}}


def test_info_enum_and_registry_collectors_per_worker(serve):
    """What prometheus_client's multiprocess mode leaves out: Info and Enum (once, merged
    over the workers) and every collector on REGISTRY — a custom one, the process, platform
    and GC collectors — per worker, with a worker label."""
    server = serve("--workers", "2", app="tests.apps.promcompare:app")
    wait_until(lambda: ready(server) == 200, what="readiness")
    rank_workers(server)

    def ranks():
        return samples(server.get("/metrics").text, "cmp_rank")
    wait_until(lambda: sorted(ranks().values()) == [0.0, 1.0], what="both workers' snapshots")
    assert set(ranks()) == {'{worker="0"}', '{worker="1"}'}
    text = server.get("/metrics").text
    assert samples(text, "cmp_build_info") == {'{version="1.2"}': 1.0}
    assert samples(text, "cmp_state") == {'{cmp_state="idle"}': 0.0,
                                          '{cmp_state="ranked"}': 1.0}
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds"):
        per_worker = samples(text, name)
        assert len(per_worker) == 2 and all("worker=" in k for k in per_worker), per_worker
        assert all(v > 0 for v in per_worker.values()) or name == "process_cpu_seconds_total"
    assert len(samples(text, "python_info")) == 2
    check = subprocess.run([prometheus_bin("promtool"), "check", "metrics"],
                           input=text.encode(), capture_output=True)
    assert check.returncode == 0, check
    # and as OpenMetrics: the info and stateset families keep their types
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    om = server.get("/metrics", headers={"Accept": "application/openmetrics-text; "
                                                   "version=1.0.0"}).text
    types = {f.name: f.type for f in text_string_to_metric_families(om)}
    assert types["cmp_build"] == "info" and types["cmp_state"] == "stateset", types
    assert types["cmp_rank"] == "gauge" and types["process_cpu_seconds"] == "counter", types


def wide_series(text: str) -> dict:
    """{item: (+Inf bucket, count)} of cmp_wide."""
    inf = {k.split('"')[1]: v for k, v in samples(text, "cmp_wide_bucket").items()
           if 'le="+Inf"' in k}
    counts = {k.split('"')[1]: v for k, v in samples(text, "cmp_wide_count").items()}
    return {item: (inf.get(item), counts.get(item)) for item in set(inf) | set(counts)}


def test_a_full_area_is_logged_once_and_counted_never_silent(serve):
    """300 label values on one histogram in an area too small for them: what fits is shown
    whole (no series without its +Inf bucket), the rest counted in
    fastsock_app_metrics_dropped_total, and the process says so once in the log."""
    small = serve("--workers", "2", "--app-metrics-bytes", "16384",
                  app="tests.apps.promcompare:app")
    wait_until(lambda: ready(small) == 200, what="readiness")
    with httpx.Client(base_url=small.url) as c:
        assert c.get("/wide/300").text == "ok"
        assert c.get("/wide/300").text == "ok"           # the same worker: no new warning
    text = small.get("/metrics").text
    series = wide_series(text)
    assert 0 < len(series) < 300, len(series)
    assert all(inf == count == 2.0 for inf, count in series.values()), series
    dropped = samples(text, "fastsock_app_metrics_dropped_total")[""]
    # each series: its sum and 3 buckets; the one that found room for part of them, left out
    assert dropped >= (300 - len(series) - 1) * 4 + 1, dropped
    check = subprocess.run([prometheus_bin("promtool"), "check", "metrics"],
                           input=text.encode(), capture_output=True)
    assert check.returncode == 0, check
    assert small.log().count("is full") == 1, small.log()
    assert "--app-metrics-bytes" in small.log()

    # the option sizes it: the default area holds them all
    roomy = serve("--workers", "2", app="tests.apps.promcompare:app")
    wait_until(lambda: ready(roomy) == 200, what="readiness")
    assert httpx.get(roomy.url + "/wide/300").text == "ok"
    text = roomy.get("/metrics").text
    assert len(wide_series(text)) == 300
    assert samples(text, "fastsock_app_metrics_dropped_total") == {"": 0.0}
    assert "is full" not in roomy.log()


def test_the_area_size_option_is_checked_before_anything_starts(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fastsock", "tests.apps.promcompare:app",
                        "--app-metrics-bytes", "100"], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "--app-metrics-bytes" in r.stderr, r.stderr


def test_a_failing_collector_costs_its_own_figures_only(serve):
    """A custom collector that raises: /metrics still answers with everything else, and the
    failure is logged once per worker, not at every scrape or tick."""
    server = serve("--workers", "1", app="tests.apps.promcompare:app")
    wait_until(lambda: ready(server) == 200, what="readiness")
    assert samples(server.get("/metrics").text, "cmp_broken") == {'{worker="0"}': 1.0}
    assert server.get("/break").text == "ok"
    for _ in range(5):
        r = server.get("/metrics")
        assert r.status_code == 200
        assert samples(r.text, "cmp_broken") == {}
        assert samples(r.text, "cmp_rank") == {'{worker="0"}': -1.0}
        assert "fastsock_requests_total" in r.text
    wait_until(lambda: "the queue is unreachable" in server.log(), what="the log line")
    assert server.log().count("the collector") == 1, server.log()


def test_a_collector_that_hangs_never_holds_a_workers_loop(serve, tmp_path):
    """A custom collector blocks (its database hangs) in both workers: the scrape still
    answers, and every worker goes on serving while its collector is provably blocked."""
    hold = tmp_path / "hold"
    # (reuseport: connections hashed over both workers' sockets, so both are asked)
    server = serve("--workers", "2", "--accept", "reuseport", app="tests.apps.slowcollector:app",
                   env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    wait_until(lambda: ready(server) == 200, what="readiness")
    pids = set()
    hold.touch()
    try:
        assert server.get("/metrics").status_code == 200    # (its own snapshot not waited for)
        wait_until(lambda: len(list(tmp_path.glob("collecting-*"))) == 2,
                   what="both workers' collectors blocked", server=server)
        with httpx.Client(base_url=server.url) as c:
            for _ in range(200):
                r = c.get("/hello", headers={"Connection": "close"})
                assert r.status_code == 200
                pids.add(r.text)
                if len(pids) == 2:
                    break
        assert len(pids) == 2, pids          # both workers answered while blocked
        assert len(list(tmp_path.glob("collecting-*"))) == 2   # (still blocked meanwhile)
    finally:
        hold.unlink(missing_ok=True)
    wait_until(lambda: "slow_thing" in server.get("/metrics").text,
               what="the collector's figure once it answers", server=server)
