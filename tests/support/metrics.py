"""Reading Prometheus text exposition; the queries of the Grafana dashboard."""
import json
import math
from pathlib import Path

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "fastsock.json"


def samples(text: str, name: str) -> dict:
    """{label string: value} for one metric in Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out


def by_label(text: str, name: str) -> dict[str, float]:
    """{first label's value: sample} of one family."""
    return {key.split('"')[1]: v for key, v in samples(text, name).items()}


def assert_saturation_sane(text: str) -> None:
    """Every saturation figure finite and within [0, 1]; no count below 0."""
    values = list(samples(text, "fastsock_saturation").values()) + \
        list(samples(text, "fastsock_worker_saturation").values())
    for v in values:
        assert math.isfinite(v) and 0.0 <= v <= 1.0, text
    for name in ("fastsock_requests_in_flight", "fastsock_thread_pool_jobs",
                 "fastsock_async_tasks", "fastsock_accept_queue_length",
                 "fastsock_worker_busy_seconds_total"):
        for v in samples(text, name).values():
            assert math.isfinite(v) and v >= 0, (name, text)


def mix(k: int) -> int:
    """The shared tables' hash (_mix in fastsock/_shared.pyx)."""
    k &= (1 << 64) - 1
    k ^= k >> 33
    k = (k * 0xff51afd7ed558ccd) & ((1 << 64) - 1)
    return k ^ (k >> 33)


def dashboard_queries(job=".*", rate="1m", range_="1h"):
    panels = json.loads(DASHBOARD.read_text())["panels"]     # a row is a panel without targets
    return [t["expr"].replace("$job", job).replace("$__rate_interval", rate)
            .replace("$__range", range_) for p in panels for t in p.get("targets", [])]


def metric(server, name: str) -> float:
    """The sum of one family's samples, as the server reports it now (GET /metrics on its main
    port: a gauge such as fastsock_requests_in_flight counts that request too)."""
    return sum(samples(server.get("/metrics").text, name).values())
