"""Prometheus metrics: the loop counts in shared memory, this formats only when scraped.

Every figure is summed over all worker slots (a respawned worker continues its slot, so sums
only grow). Any worker can answer a scrape for all of them.
"""
from __future__ import annotations

import os
import platform
import time

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from fastsock._message import METHOD_NAMES, Response, RouteId
from fastsock._parser import PARSE_ERRORS
from fastsock._saturation import server as server_saturation
from fastsock._saturation import worker as worker_saturation
from fastsock._shared import (
    CLOSE_REASONS,
    DURATION_BOUNDS,
    HANDLER_KINDS,
    LISTENER_NAMES,
    SharedState,
)
from fastsock._tls import CIPHERS, FAILURES, VERSIONS
from fastsock._wsconn import CLOSE_CODES
from fastsock.version import __version__

UNMATCHED = "unmatched"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
_LE = [floatToGoString(b) for b in DURATION_BOUNDS] + ["+Inf"]
WS_CLOSE_LABELS = [str(code) for code in CLOSE_CODES] + ["other"]
_PARSE_LABELS = [label for _name, _status, label in PARSE_ERRORS]
# the server's own routes: probes and scrapes, counted apart from the app's requests so that
# error-ratio and latency alerts see only the app's traffic
PROBE_ROUTES = frozenset((RouteId.ROUTE_HEALTHZ, RouteId.ROUTE_READYZ, RouteId.ROUTE_METRICS))


class CoreCollector:
    """fastsock_* metrics from the shared slots, and per-worker process figures from /proc."""

    def __init__(self, shared: SharedState, route_names: dict[int, str], certificates=None):
        self.shared = shared
        self.route_names = route_names      # route id -> template (built-ins included)
        self.certificates = certificates    # fastsock.tls.Certificates, or None (no TLS)

    def _route(self, route_id: int) -> str:
        return self.route_names.get(route_id, UNMATCHED)

    def collect(self):
        snap = self.shared.snapshot()
        requests = CounterMetricFamily(
            "fastsock_requests", "HTTP requests answered (the app's: probes and scrapes are "
            "in fastsock_probe_requests_total).", labels=["method", "route", "status"])
        probes = CounterMetricFamily(
            "fastsock_probe_requests", "Requests to the server's own routes: health, "
            "readiness and metrics.", labels=["route", "status"])
        probe_counts: dict[tuple[str, str], float] = {}
        for (route, method, status), count in sorted(snap["requests"].items()):
            if route in PROBE_ROUTES:
                key = (self._route(route), str(status))
                probe_counts[key] = probe_counts.get(key, 0) + count
            else:
                requests.add_metric([METHOD_NAMES[method], self._route(route), str(status)],
                                    count)
        for key, count in sorted(probe_counts.items()):
            probes.add_metric(list(key), count)
        yield requests
        yield probes

        duration = HistogramMetricFamily(
            "fastsock_request_duration_seconds",
            "Time from a whole request to its response written, in seconds.",
            labels=["method", "route"])
        for (route, method), (_count, total, buckets) in sorted(snap["durations"].items()):
            if route in PROBE_ROUTES:
                continue
            acc, cumulative = 0, []
            for le, n in zip(_LE, buckets, strict=False):
                acc += n
                cumulative.append((le, acc))
            duration.add_metric([METHOD_NAMES[method], self._route(route)], cumulative, total)
        yield duration

        in_flight = GaugeMetricFamily("fastsock_requests_in_flight", "Requests being handled, "
                                      "by where their handler runs (inline: on the loop).",
                                      labels=["kind"])
        in_flight.add_metric(["inline"], max(0, snap["in_flight"] - sum(snap["waiting_kinds"])))
        for kind, n in zip(HANDLER_KINDS, snap["waiting_kinds"], strict=True):
            in_flight.add_metric([kind], n)
        yield in_flight
        yield CounterMetricFamily("fastsock_request_bytes", "Bytes received from clients.",
                                  value=snap["request_bytes"])
        yield CounterMetricFamily("fastsock_response_bytes", "Bytes sent to clients.",
                                  value=snap["response_bytes"])
        yield CounterMetricFamily("fastsock_untracked_requests",
                                  "Requests past the label table's capacity (not in "
                                  "fastsock_requests_total).", value=snap["untracked"])
        refused = CounterMetricFamily("fastsock_requests_refused",
                                      "Requests answered 503 by the server before the app "
                                      "(concurrency: past --limit-concurrency; "
                                      "thread_pool: past the pool's backlog).",
                                      labels=["reason"])
        refused.add_metric(["concurrency"], snap["refused_concurrency"])
        refused.add_metric(["thread_pool"], snap["refused_pool"])
        yield refused
        shed = CounterMetricFamily("fastsock_connections_shed", "Connections closed as they "
                                   "were accepted (fds: the worker was out of file "
                                   "descriptors).", labels=["reason"])
        shed.add_metric(["fds"], snap["shed_fds"])
        yield shed
        yield from self._saturation(snap)
        yield CounterMetricFamily("fastsock_connections_accepted", "Connections accepted.",
                                  value=snap["accepted"])
        yield GaugeMetricFamily("fastsock_connections_open", "Connections open now.",
                                value=snap["open"])
        closed = CounterMetricFamily("fastsock_connections_closed", "Connections closed.",
                                     labels=["reason"])
        for reason, n in zip(CLOSE_REASONS, snap["closed"], strict=False):
            closed.add_metric([reason], n)
        yield closed
        yield from self._websockets(snap)
        if self.certificates is not None:
            yield from self._tls(snap["tls"], self.certificates.context.certificates)
        errors = CounterMetricFamily("fastsock_parse_errors",
                                     "Requests refused by the HTTP parser.", labels=["reason"])
        for index, n in sorted(snap["parse_errors"].items()):
            errors.add_metric([_PARSE_LABELS[index]], n)
        yield errors

        yield GaugeMetricFamily("fastsock_workers", "Worker processes alive.",
                                value=snap["workers_alive"])
        yield CounterMetricFamily("fastsock_worker_restarts",
                                  "Workers respawned after dying unexpectedly.",
                                  value=snap["restarts"])
        info = GaugeMetricFamily("fastsock_build_info", "fastsock build information.",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        yield from self._processes(snap["workers"])

    @staticmethod
    def _saturation(snap: dict):
        """How full the server is, and the figures it is made of (docs/saturation.md)."""
        now = time.monotonic()          # the clock of the slots' heartbeats
        server = server_saturation([(s, beat) for _, s, beat in snap["serving"]], now)
        if server is not None:
            yield GaugeMetricFamily("fastsock_saturation", "How full the server is: 0 idle, "
                                    "1 cannot take more (the mean of its workers'; "
                                    "docs/saturation.md).", value=server)
        workers = GaugeMetricFamily("fastsock_worker_saturation", "How full each serving "
                                    "worker is: the largest of its loop's busy share, its "
                                    "pool's, its requests over --limit-concurrency and its "
                                    "accept queue's, smoothed.", labels=["worker"])
        for slot, s, beat in snap["serving"]:
            workers.add_metric([str(slot)], worker_saturation(s, beat, now))
        yield workers
        busy = CounterMetricFamily("fastsock_worker_busy_seconds", "Wall time each worker's "
                                   "loop was busy (not waiting for events).", labels=["worker"])
        for slot, seconds in sorted(snap["busy"].items()):
            busy.add_metric([str(slot)], seconds)
        yield busy
        yield GaugeMetricFamily("fastsock_thread_pool_threads", "Threads the workers' pools "
                                "may run (--threads each).", value=snap["pool_threads"])
        jobs = GaugeMetricFamily("fastsock_thread_pool_jobs", "Jobs in the workers' thread "
                                 "pools: running, or queued for a thread.", labels=["state"])
        jobs.add_metric(["running"], snap["pool_running"])
        jobs.add_metric(["queued"], snap["pool_queued"])
        yield jobs
        yield GaugeMetricFamily("fastsock_async_tasks", "asyncio tasks not done in the "
                                "workers: handlers, ASGI requests, WebSocket sessions, the "
                                "app's own.", value=snap["tasks"])
        length = GaugeMetricFamily("fastsock_accept_queue_length", "Connections waiting in "
                                   "each listener's accept queue.", labels=["listener"])
        limit = GaugeMetricFamily("fastsock_accept_queue_limit", "The accept queue's limit "
                                  "(the listen backlog, capped by net.core.somaxconn).",
                                  labels=["listener"])
        for name, figures in zip(LISTENER_NAMES, snap["accept_queues"], strict=True):
            if figures is not None:
                length.add_metric([name], figures[0])
                limit.add_metric([name], figures[1])
        yield length
        yield limit
        overflows = listen_overflows()
        if overflows is not None:
            yield CounterMetricFamily("fastsock_listen_overflows", "Connections the kernel "
                                      "dropped: an accept queue was full (every listener of "
                                      "the network namespace: the pod's, or the host's).",
                                      value=overflows)

    @staticmethod
    def _websockets(snap: dict):
        yield GaugeMetricFamily("fastsock_websockets_open", "WebSockets open now.",
                                value=snap["ws_open"])
        yield CounterMetricFamily("fastsock_websockets_opened", "WebSockets accepted.",
                                  value=snap["ws_opened"])
        messages = CounterMetricFamily("fastsock_websocket_messages",
                                       "WebSocket messages, by direction (in: from clients).",
                                       labels=["direction"])
        messages.add_metric(["in"], snap["ws_messages_in"])
        messages.add_metric(["out"], snap["ws_messages_out"])
        yield messages
        wire = CounterMetricFamily("fastsock_websocket_bytes",
                                   "WebSocket bytes on the wire, by direction (in: every frame "
                                   "read; out: the app's messages, framed and compressed).",
                                   labels=["direction"])
        wire.add_metric(["in"], snap["ws_bytes_in"])
        wire.add_metric(["out"], snap["ws_bytes_out"])
        yield wire
        closes = CounterMetricFamily("fastsock_websocket_closes",
                                     "WebSockets ended, by close code (1005: the peer gave "
                                     "none; 1006: no Close exchanged; other: any code not "
                                     "named).", labels=["code"])
        for code, n in zip(WS_CLOSE_LABELS, snap["ws_closes"], strict=True):
            closes.add_metric([code], n)
        yield closes

    @staticmethod
    def _tls(tls: dict, certificates: list):
        handshakes = CounterMetricFamily(
            "fastsock_tls_handshakes", "TLS handshakes completed, by version, cipher and "
            "whether a session was resumed.", labels=["version", "cipher", "resumed"])
        for (version, cipher, resumed), n in sorted(tls["handshakes"].items()):
            handshakes.add_metric([VERSIONS[version], CIPHERS[cipher],
                                   "true" if resumed else "false"], n)
        yield handshakes
        failures = CounterMetricFamily(
            "fastsock_tls_handshake_failures", "TLS handshakes that failed, by reason "
            "(too_many: past --tls-max-handshakes).", labels=["reason"])
        for reason, n in zip(FAILURES, tls["failures"], strict=False):
            failures.add_metric([reason], n)
        yield failures
        ktls = CounterMetricFamily("fastsock_tls_ktls", "TLS connections whose records the "
                                   "kernel encrypts (send) or decrypts (recv).",
                                   labels=["direction"])
        ktls.add_metric(["send"], tls["ktls"][0])
        ktls.add_metric(["recv"], tls["ktls"][1])
        yield ktls
        reloads = CounterMetricFamily("fastsock_tls_reloads", "TLS certificate reloads by "
                                      "the workers (failed: the files before were kept).",
                                      labels=["result"])
        reloads.add_metric(["ok"], tls["reloads"][0])
        reloads.add_metric(["failed"], tls["reloads"][1])
        yield reloads
        expiry = GaugeMetricFamily("fastsock_tls_certificate_expiry_timestamp_seconds",
                                   "When each certificate served expires (Unix time).",
                                   labels=["file", "subject"])
        for file, subject, not_after in certificates:
            expiry.add_metric([file, subject], not_after)
        yield expiry

    @staticmethod
    def _processes(workers: dict[int, int]):
        cpu = CounterMetricFamily("fastsock_worker_cpu_seconds",
                                  "CPU time of each worker process.", labels=["worker"])
        rss = GaugeMetricFamily("fastsock_worker_resident_memory_bytes",
                                "Resident memory of each worker process.", labels=["worker"])
        fds = GaugeMetricFamily("fastsock_worker_open_fds",
                                "Open file descriptors of each worker process.",
                                labels=["worker"])
        for slot, pid in sorted(workers.items()):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/statm") as f:
                    resident = int(f.read().split()[1]) * PAGE
                nfds = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue                    # it just exited
            label = [str(slot)]
            cpu.add_metric(label, (int(fields[11]) + int(fields[12])) / CLK_TCK)
            rss.add_metric(label, resident)
            fds.add_metric(label, nfds)
        yield cpu
        yield rss
        yield fds


def listen_overflows() -> int | None:
    """TcpExt ListenOverflows of /proc/net/netstat: the network namespace's count of
    connections dropped because an accept queue was full (None where it is not there)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            fields = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            if "ListenOverflows" in fields:
                return int(fields["ListenOverflows"])
    return None


class Exposition:
    """The /metrics response: Prometheus text 0.0.4 or OpenMetrics, by the Accept header."""

    def __init__(self, *collectors):
        self.registry = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            self.registry.register(collector)

    def __call__(self, req) -> Response:
        encoder, content_type = choose_encoder(req.headers.get("accept") or "")
        return Response(encoder(self.registry), 200, content_type=content_type)
