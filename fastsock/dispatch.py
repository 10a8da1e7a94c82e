"""What a worker's loop calls for each request, built once per worker from the Config.

The server's reserved routes (health, readiness, metrics) are resolved here, in the same lookup
as the app's routes, and answered without calling the app. Around that, only the layers the
Config asks for: trusted proxies' client addresses, request ids and the access log, recycling
after --max-requests. A request pays for no layer that is switched off.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection

from fastsock._message import RouteId
from fastsock._requestids import WithIds
from fastsock.config import Config
from fastsock.responses import (
    CONCURRENCY_FULL,
    HEALTH_OK,
    NOT_FOUND,
    NOT_READY,
    method_not_allowed,
)
from fastsock.routing import Route

Dispatch = Callable[[object], object]
log = logging.getLogger("fastsock.error")
REFUSALS_LOGGED_EVERY = 10.0    # seconds: one line (with the count since) per worker at most


def reserved_route(path: str, route_id: int, answer: Dispatch) -> Route:
    route = Route(path, route_id)
    route.handlers["GET"] = answer
    return route


def reserved_routes(config: Config, ready: Callable[[], bool],
                    exposition: Dispatch | None, metrics_here: bool,
                    owned: Collection[str] = ()) -> list[Route]:
    """The server's own routes on the main listener; ready() says whether /readyz is 200.
    A path in `owned` is the app's own route (adapters/owned.py): the app's answer wins."""
    routes = []
    if config.healthz_path and config.healthz_path not in owned:
        routes.append(reserved_route(config.healthz_path, RouteId.ROUTE_HEALTHZ,
                                     lambda req: HEALTH_OK))
    if config.readyz_path and config.readyz_path not in owned:
        routes.append(reserved_route(config.readyz_path, RouteId.ROUTE_READYZ,
                                     lambda req: HEALTH_OK if ready() else NOT_READY))
    if exposition is not None and metrics_here and config.metrics_path not in owned:
        routes.append(reserved_route(config.metrics_path, RouteId.ROUTE_METRICS, exposition))
    return routes


def with_ready_check(ready: Callable[[], bool], check: Callable[[], object],
                     every: float = 1.0) -> Callable[[], bool]:
    """ready() and then the app's check (--ready-check): not ready while the server is not
    (starting, draining: 503 first, whatever the app says), nor while the check returns
    false, raises, or has not answered yet. The check runs on a thread of its own, at most
    once every `every` seconds while probes come, and a probe takes its last answer: a check
    that blocks holds that thread, never the worker's loop (past STALE_AFTER seconds without
    an answer it is not ready, logged once). A failure is logged as it starts."""
    return _ReadyCheck(ready, check, every).ready


STALE_AFTER = 10.0      # a check this long without an answer (a hung database call): not ready


class _ReadyCheck:
    def __init__(self, ready: Callable[[], bool], check: Callable[[], object], every: float):
        self.server_ready, self.check, self.every = ready, check, every
        self.ok = False                 # the last answer (none yet: not ready)
        self.asked = float("-inf")      # when the last check started
        self.running = False
        self.said = ""                  # the failure last logged ("": none)

    def ready(self) -> bool:
        if not self.server_ready():
            return False
        now = time.monotonic()
        if self.running:
            if now - self.asked > max(STALE_AFTER, self.every):
                if self.said != "stale":
                    self.said = "stale"
                    log.error("the app's readiness check (--ready-check) has not answered "
                              "for %.0f s: not ready until it does", now - self.asked)
                return False
        elif now - self.asked >= self.every:
            self.running, self.asked = True, now
            try:
                threading.Thread(target=self._run, name="fastsock-ready-check",
                                 daemon=True).start()
            except RuntimeError:            # no thread to be had (a pids limit): asked here
                self._run()
        return self.ok

    def _run(self) -> None:                 # on its own thread
        try:
            ok = bool(self.check())
            if self.said:
                log.info("the app's readiness check (--ready-check) passes again")
            self.said = ""
        except Exception as e:      # noqa: BLE001  (the app's check: logged, not ready)
            ok = False
            if str(e) != self.said:
                self.said = str(e)
                log.error("the app's readiness check (--ready-check) failed", exc_info=e)
        self.ok, self.running = ok, False


def answer_reserved(reserved: list[Route]) -> Callable[[object], object]:
    """For a WSGI or ASGI app: req -> the server's answer when req is for one of its own
    routes (GET and HEAD; 405 otherwise), else None (the app's)."""
    table = {route.template: route for route in reserved}
    get = table.get

    def answer(req):
        route = get(req.path)
        if route is None:
            return None
        req.route_id = route.id
        if req.method not in ("GET", "HEAD"):
            return method_not_allowed("GET, HEAD")
        return route.handlers["GET"](req)
    return answer


def metrics_only(config: Config, exposition: Dispatch) -> Dispatch:
    """For the --metrics-port listener: the metrics, and 404 for anything else."""
    path = config.metrics_path

    def dispatch(req):
        if req.path != path:
            return NOT_FOUND
        req.route_id = RouteId.ROUTE_METRICS
        return exposition(req)
    return dispatch


def refuse_over_limit(config: Config, access_log: Callable | None) -> Callable:
    """The loop's on_refused under --limit-concurrency, called for a request that comes while
    the worker has that many in the app: the 503 (in the access log when it is on), or None for
    the server's own paths (health, readiness, metrics), never refused. The refusals are
    logged once, then at most once every REFUSALS_LOGGED_EVERY seconds, with their count."""
    never = frozenset(p for p in (config.healthz_path, config.readyz_path, config.metrics_path)
                      if p)
    limit = config.limit_concurrency
    unlogged = 0
    logged_at = -REFUSALS_LOGGED_EVERY

    def on_refused(req):
        nonlocal unlogged, logged_at
        if req.path in never:
            return None
        unlogged += 1
        now = time.monotonic()
        if now - logged_at >= REFUSALS_LOGGED_EVERY:
            log.warning("refused %d request(s) with 503: worker %d had %d requests in the app "
                        "(--limit-concurrency %d); the next such line in %.0f s at the "
                        "earliest", unlogged, os.getpid(), limit, limit,
                        REFUSALS_LOGGED_EVERY)
            unlogged, logged_at = 0, now
        if access_log is not None:
            req.on_complete = access_log
        return CONCURRENCY_FULL
    return on_refused


def with_request_ids(dispatch: Dispatch, access_log: Callable, log_health: bool) -> Dispatch:
    """Give each request an id (the client's X-Request-ID, or a new one), echo it on the
    response, and have the loop log the request once its response is written (access_log: an
    AccessLog, which the loop calls from C, or any callable(req, status, nbytes, seconds)).
    Health checks are out of the log unless log_health. The layer is C (_requestids.WithIds),
    called from C by the connection when it is the outermost."""
    return WithIds(dispatch, access_log, log_health)


def with_forwarded(dispatch: Dispatch, proxies) -> Dispatch:
    """A request from a trusted proxy is from the client its forwarding headers name."""
    def dispatch_forwarded(req):
        if proxies.trusts(req.client[0]):
            req.client = proxies.client(req)
            scheme = proxies.scheme(req)
            if scheme is not None:
                req.scheme = scheme
        return dispatch(req)
    return dispatch_forwarded


def with_recycling(dispatch: Dispatch, max_requests: int, retire: Callable[[], None]) -> Dispatch:
    """After max_requests requests, retire(): the master starts a replacement, and once it
    serves, this worker drains. Readiness stays as it was throughout."""
    served = 0

    def dispatch_counted(req):
        nonlocal served
        served += 1
        if served == max_requests:
            retire()
        return dispatch(req)
    return dispatch_counted


def build(app, config: Config, *, ready: Callable[[], bool], exposition: Dispatch | None,
          access_log: Callable | None, proxies, max_requests: int,
          retire: Callable[[], None], runner=None, owned: Collection[str] = (),
          ready_check: Callable[[], object] | None = None
          ) -> tuple[Dispatch, Dispatch | None]:
    """-> (dispatch for the main listener, dispatch for the --metrics-port listener or None).
    owned: the reserved paths the app routes itself; ready_check: the app's --ready-check."""
    metrics_port = bool(config.metrics_port)
    if ready_check is not None:
        ready = with_ready_check(ready, ready_check)
    dispatch = app.dispatcher(reserved_routes(config, ready, exposition, not metrics_port,
                                              owned), runner)
    if proxies is not None:
        dispatch = with_forwarded(dispatch, proxies)
    if max_requests:
        dispatch = with_recycling(dispatch, max_requests, retire)
    if access_log is not None:          # the outermost: the connection calls it from C
        dispatch = with_request_ids(dispatch, access_log, config.log_health)
    metrics = metrics_only(config, exposition) if exposition is not None and metrics_port \
        else None
    return dispatch, metrics
