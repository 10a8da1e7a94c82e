"""Prometheus metrics: counted in the loop, summed over workers (promtool and a real Prometheus
server: tests/system/test_prometheus.py)."""
import os
import signal

import httpx
import pytest

from tests.support.metrics import mix, samples
from tests.support.servers import children, free_port, ready
from tests.support.sockets import Reader
from tests.support.waiting import wait_until


def test_openmetrics_by_accept_header(serve):
    server = serve()
    r = server.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.rstrip().endswith("# EOF")


def test_metrics_port_moves_metrics_off_the_main_port(serve):
    port = free_port()
    server = serve("--metrics-port", str(port))
    assert server.get("/metrics").status_code == 404          # the app's now
    r = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200 and "fastsock_requests_total" in r.text
    assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 404


def test_metrics_can_be_switched_off(serve):
    server = serve("--no-metrics")
    assert server.get("/metrics").status_code == 404


def test_counters_survive_a_killed_worker(serve):
    server = serve("--workers", "2")
    wait_until(lambda: ready(server) == 200, what="readiness")
    with httpx.Client(base_url=server.url) as c:
        for _ in range(50):
            c.get("/pid", headers={"Connection": "close"})
    os.kill(children(server.proc.pid)[0], signal.SIGKILL)
    wait_until(lambda: ready(server) == 200, what="respawn")
    with httpx.Client(base_url=server.url) as c:
        for _ in range(50):
            c.get("/pid", headers={"Connection": "close"})
    text = server.get("/metrics").text
    assert samples(text, "fastsock_requests_total")['{method="GET",route="/pid",status="200"}'] \
        == 100.0
    assert samples(text, "fastsock_worker_restarts_total") == {"": 1.0}


def routes_aimed_at_cell_0() -> list[tuple[str, str]]:
    """(method, path) of tests.apps.native's routes whose duration cell, keyed route << 8 | method as
    before issue 19, is the first cell a key 0 finds (cell 0 of 256): the cell such requests
    used to fill without claiming, until one of these claimed it with their counts."""
    from fastsock._message import METHOD_NAMES
    from tests.apps.native import app
    return [(method, path) for route, path in app.router.names().items() if "{" not in path
            for m, method in enumerate(METHOD_NAMES[1:7], 1)
            if mix(route << 8 | m) & 255 == 0]


def histograms(text: str) -> dict:
    """{labels: (count, sum)} of fastsock_request_duration_seconds."""
    counts = samples(text, "fastsock_request_duration_seconds_count")
    sums = samples(text, "fastsock_request_duration_seconds_sum")
    return {k: (counts[k], sums[k]) for k in counts}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_requests_with_no_route_and_an_unknown_method_do_not_land_in_other_series(serve, workers):
    """Issue 19: no route (id 0) and an unknown method (id 0) made the duration key 0, the
    empty-cell marker: those requests were counted into an unclaimed cell, shown nowhere, and
    handed to whichever series claimed that cell next."""
    aimed = routes_aimed_at_cell_0()
    assert aimed, "no route of tests.apps.native is keyed into cell 0: this test would aim at nothing"
    victims = [*aimed, ("GET", "/")]
    server = serve("--workers", workers)
    wait_until(lambda: ready(server) == 200, what="readiness")
    before_text = server.get("/metrics").text
    before = histograms(before_text)
    connections, junk = 4, 25
    socks = [server.connect() for _ in range(connections)]
    try:
        readers = [Reader(s) for s in socks]
        for s, reader in zip(socks, readers):
            for _ in range(junk):
                s.sendall(b"BREW /no/such/pot HTTP/1.1\r\nHost: t\r\n\r\n")
                assert reader.response()[0] == 404
        for s, reader in zip(socks, readers):      # on each worker the junk went to
            for method, path in victims:
                s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                reader.response(head_only=method == "HEAD")
    finally:
        for s in socks:
            s.close()
    after_text = server.get("/metrics").text
    after = histograms(after_text)
    unknown = '{method="other",route="unmatched"}'
    sent = {unknown: connections * junk}
    for method, path in victims:
        sent[f'{{method="{method}",route="{path}"}}'] = connections
    for labels in set(before) | set(after):
        if 'route="/metrics"' in labels:
            continue                                # the first scrape is counted as it ends
        count, total = after.get(labels, (0, 0.0))
        was_count, was_total = before.get(labels, (0, 0.0))
        assert count - was_count == sent.get(labels, 0), (labels, before, after)
        if labels not in sent:
            assert total == was_total, labels
    requests = samples(after_text, "fastsock_requests_total")
    assert requests['{method="other",route="unmatched",status="404"}'] == connections * junk


def test_probes_and_scrapes_are_counted_apart_from_the_apps_requests(serve):
    """Kubernetes' probes and Prometheus's scrapes are not the app's traffic: in
    fastsock_requests_total and the duration histogram they would pad the error-ratio and
    latency alerts (a draining pod's 503s on /readyz would page). They are counted in
    fastsock_probe_requests_total, by route and status."""
    server = serve("--workers", "2")
    wait_until(lambda: ready(server) == 200, what="readiness")

    def probes():
        return samples(server.get("/metrics").text, "fastsock_probe_requests_total")

    def readiness_polls(counts):
        return {k: v for k, v in counts.items() if "/metrics" not in k}
    # a request is counted once its response is sent: the readiness polls settle first
    settled = []
    wait_until(lambda: settled.append(readiness_polls(probes())) or
               len(settled) > 1 and settled[-1] == settled[-2], what="the polls counted")
    before = settled[-1]
    with httpx.Client(base_url=server.url) as c:
        for _ in range(3):
            assert c.get("/healthz").status_code == 200
            assert c.get("/readyz").status_code == 200
            assert c.get("/metrics").status_code == 200
        assert c.post("/healthz").status_code == 405
        assert c.get("/").status_code == 200
    want = {'{route="/healthz",status="200"}': 3.0, '{route="/healthz",status="405"}': 1.0,
            '{route="/readyz",status="200"}': 3.0}
    grew: dict = {}

    def counted():
        grew.clear()
        grew.update({k: v - before.get(k, 0.0) for k, v in probes().items()
                     if v != before.get(k)})
        return readiness_polls(grew) == want and grew['{route="/metrics",status="200"}'] >= 3
    wait_until(counted, what="the probes counted")
    assert readiness_polls(grew) == want, (before, grew)
    text = server.get("/metrics").text
    requests = samples(text, "fastsock_requests_total")
    assert requests == {'{method="GET",route="/",status="200"}': 1.0}, requests
    durations = samples(text, "fastsock_request_duration_seconds_count")
    assert durations == {'{method="GET",route="/"}': 1.0}, durations


def test_scrapes_on_the_metrics_port_are_probes_too(serve):
    port = free_port()
    server = serve("--metrics-port", str(port))
    assert server.get("/healthz").status_code == 200
    for _ in range(2):
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert samples(text, "fastsock_requests_total") == {}
    assert samples(text, "fastsock_probe_requests_total") == {
        '{route="/healthz",status="200"}': 1.0, '{route="/metrics",status="200"}': 2.0}
