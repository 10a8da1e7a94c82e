"""An app whose prometheus_client metrics are driven the same way under fastsock's app metrics
and under prometheus_client's own multiprocess mode (served with --no-metrics and
PROMETHEUS_MULTIPROC_DIR set; /prom is then its MultiProcessCollector's exposition).

Each worker is given a rank by the client (GET /rank/R, 409 once it has one): what a worker
sets depends on its rank only, so two servers driven alike hold the same values whichever
worker takes which connection."""
import os

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from fastsock import App, Response

app = App()

MODES = ("all", "liveall", "min", "livemin", "max", "livemax", "sum", "livesum", "mostrecent",
         "livemostrecent")
GAUGES = {mode: Gauge(f"cmp_{mode}_level", f"A gauge in mode {mode}.", ["kind"],
                      multiprocess_mode=mode) for mode in MODES}
DEFAULT = Gauge("cmp_default", "A gauge in prometheus_client's default mode.")   # made here,
PRE_FORK = Counter("cmp_pre_fork", "Counted in the master, before the fork.")   # in the master
PRE_FORK.inc(5)
HITS = Counter("cmp_hits", "Hits.", ["kind"])
SIZES = Histogram("cmp_sizes", "Sizes.", ["kind"], buckets=(1, 5, 10))
LATENCY = Summary("cmp_latency", "Latency.")
BUILD = Info("cmp_build", "Build.")
BUILD.info({"version": "1.2"})
STATE = Enum("cmp_state", "State.", states=["idle", "ranked"])
rank = None


class RankCollector:
    """A custom collector on REGISTRY: per worker, its rank."""

    def collect(self):
        yield GaugeMetricFamily("cmp_rank", "The worker's rank.", value=-1 if rank is None
                                else rank)


REGISTRY.register(RankCollector())


@app.get("/rank/{r:int}")
def take_rank(req, r):
    global rank
    if rank is not None:
        return Response(f"{os.getpid()} {rank}", 409)
    rank = r
    for mode, gauge in GAUGES.items():
        gauge.labels(kind="shared").set(10 + r)         # rank 1 is set last: the most recent
        gauge.labels(kind=f"only{r}").set(r + 1)
        if "mostrecent" not in mode:
            gauge.labels(kind="inc").inc(r + 2)
    STATE.state("ranked")
    return str(os.getpid())


@app.get("/hit/{n:int}")
def hit(req, n):
    kind = "odd" if n % 2 else "even"
    HITS.labels(kind=kind).inc()
    SIZES.labels(kind=kind).observe(n)
    LATENCY.observe(n / 10)
    return "ok"


@app.get("/prom")
def prom(req):
    from prometheus_client.multiprocess import MultiProcessCollector
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return Response(generate_latest(registry), 200, content_type="text/plain")


WIDE = Histogram("cmp_wide", "One histogram, many label values.", ["item"], buckets=(1, 5))


@app.get("/wide/{n:int}")
def wide(req, n):
    for i in range(n):
        WIDE.labels(item=f"item-{i:04d}").observe(i % 7)
    return "ok"


class Broken:
    """A custom collector that fails while the app says so."""
    failing = False

    def collect(self):
        if Broken.failing:
            raise RuntimeError("the queue is unreachable")
        yield GaugeMetricFamily("cmp_broken", "Fails on demand.", value=1)


REGISTRY.register(Broken())


@app.get("/break")
def break_collector(req):
    Broken.failing = True
    return "ok"
