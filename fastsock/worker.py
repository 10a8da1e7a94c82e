"""One worker process, forked by the master: the app set up for this worker, one event loop
serving it until it drains or is told to stop, then the app's shutdown hooks."""
from __future__ import annotations

import ctypes
import faulthandler
import gc
import logging
import os
import random
import signal
import socket
import sys
import time

from fastsock import appcollectors, appmetrics, dispatch, hooks, logs
from fastsock._accesslog import AccessLog
from fastsock._loop import Loop
from fastsock._message import RouteId
from fastsock._shared import SharedState
from fastsock._tlsctx import use_shared_ticket_keys
from fastsock.adapters.kinds import adapt
from fastsock.adapters.owned import owned_paths, reserved_paths, say_owned
from fastsock.adapters.protocol import ServableApp
from fastsock.config import Config
from fastsock.forwarded import Proxies
from fastsock.loading import load_app, load_callable
from fastsock.metrics import CoreCollector, Exposition
from fastsock.runner import Runner
from fastsock.tls import Certificates

log = logging.getLogger("fastsock.error")

# the signals the master waits for: blocked there, so in a worker just forked too, which
# unblocks them once its own handlers are set
SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD}
WATCHDOG_SIGNAL = signal.SIGUSR1    # the master asking a stuck worker for its threads' stacks


def run_worker(config: Config, app, sock: socket.socket, shared: SharedState, slot: int,
               metrics_sock: socket.socket | None = None, workers: int = 1,
               certificates: Certificates | None = None) -> int:
    """The body of a forked worker: one loop until it drains or is told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # a terminal's ^C is the master's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, lambda *_: os._exit(0))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # the watchdog's signal: every thread's stack to stderr, from C, even while a handler
    # holds the loop's thread
    faulthandler.register(WATCHDOG_SIGNAL, file=sys.stderr, all_threads=True)
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG: die with the master
    except (OSError, AttributeError):
        pass
    appmetrics.attach(shared.app_area(slot))
    snapshots = appcollectors.Snapshots(shared.app_area(slot), os.getpid()) \
        if config.metrics else None
    max_requests = config.max_requests
    if max_requests:
        max_requests += random.randint(0, config.max_requests_jitter)
    access_log = AccessLog(config.access_log) if config.access_log != "off" else None
    exclusive = workers > 1
    if config.accept == "reuseport":
        sock, exclusive = worker_socket(config, sock), False
    tls_check = certificates_check(certificates, shared, slot,
                                   lambda context: loop.use_tls(context))
    loop: Loop = Loop(config.limits(), shared, slot, exclusive=exclusive,
                on_tick=on_tick(access_log, snapshots, tls_check))
    if certificates is not None:
        use_shared_ticket_keys(shared)
    # async handlers and thread-pool completions run on an asyncio loop, made when needed
    runner = Runner(loop, threads=config.threads, backlog=config.thread_backlog,
                    timeout=config.handler_timeout,
                    threads_by_default=config.run_sync == "thread")
    runner.websockets = config.websockets()
    loop.pool = runner                  # its pool's figures go to the slot once a tick
    loop.on_drain = runner.websockets.refuse_waiting
    loop.on_stream = runner.start_feed
    if config.limit_concurrency:
        loop.on_refused = dispatch.refuse_over_limit(
            config, access_log)
    try:
        # what can keep the app from starting: the master stops instead of respawning it
        step = "import the app"
        if isinstance(app, str):        # --no-preload: this worker imports the app itself
            app = load_app(app, config.interface)
            owned = say_owned(app, config)      # (preloaded, the master said it once)
        else:                           # (what the master could read: it said so if not)
            try:
                owned = owned_paths(app, reserved_paths(config))
            except Exception:           # noqa: BLE001
                owned = set()
        step = "load the --ready-check"
        ready_check = load_callable(config.ready_check, "--ready-check") \
            if config.ready_check else None
        step = "set up the app"
        app = adapt(app, config, runner, workers)
        step = "run a startup hook"
        hooks.run_lifecycle(app.startup, runner)
        step = "set up the app's routes and hooks"
        logs.ROUTE_NAMES.update(route_names(config, app))     # the error log's "route"
        main, metrics = dispatch.build(
            app, config,
            ready=lambda: shared.ready,
            exposition=exposition_for(config, app, shared, snapshots, certificates),
            access_log=access_log,
            proxies=Proxies(config.forwarded_allow_ips) if config.forwarded_allow_ips else None,
            max_requests=max_requests, retire=loop.retire, runner=runner, owned=owned,
            ready_check=ready_check)
        loop.on_head = app.body_streams(runner, config.max_body_size)
    except Exception:
        log.exception("cannot %s in worker %d", step, os.getpid())
        shared.set_slot(slot, os.getpid(), SharedState.START_FAILED)
        return 1
    if snapshots is not None:
        # a scrape answered by another worker shows this one at once
        snapshots.refresh(wait=appcollectors.COLLECT_WAIT)
    # what the app made at import and start-up lives as long as the worker: out of the
    # collector's full passes (faster ones under load, and pages stay shared after the fork)
    gc.freeze()
    loop.listen(sock, main, certificates.context if certificates is not None else None)
    if metrics_sock is not None and metrics is not None:
        loop.listen(metrics_sock, metrics)
    signal.signal(signal.SIGTERM, lambda *_: loop.drain())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    # a handler that forks: its child holds none of the worker's sockets
    os.register_at_fork(after_in_child=loop.close_in_child)
    loop.run()
    try:
        hooks.run_lifecycle(app.shutdown, runner)
    except Exception:
        log.exception("a shutdown hook failed in worker %d", os.getpid())
    runner.close()
    return 0


def route_names(config: Config, app: ServableApp) -> dict[int, str]:
    """Route id -> its template (the server's own routes too): the metrics' and logs' label."""
    names: dict[int, str] = {RouteId.ROUTE_HEALTHZ: config.healthz_path,
                             RouteId.ROUTE_READYZ: config.readyz_path,
                             RouteId.ROUTE_METRICS: config.metrics_path}
    names.update(app.route_names())
    return names


def on_tick(access_log: AccessLog | None, snapshots: appcollectors.Snapshots | None,
            tls_check=None):
    """What the loop does once a tick: flush the access log, refresh the collectors'
    snapshot while scrapes come, look whether the TLS files changed."""
    hooks = [f for f in (access_log and access_log.flush, snapshots and snapshots.tick,
                         tls_check) if f]
    if len(hooks) < 2:
        return hooks[0] if hooks else None

    def all_of_them():
        for hook in hooks:
            hook()
    return all_of_them


def certificates_check(certificates: Certificates | None, shared: SharedState, slot: int,
                       use):
    """The tick's look at the TLS files: when they changed, reloaded and use(context) for new
    handshakes (counted either way)."""
    if certificates is None:
        return None

    def check():
        if certificates.changed(time.monotonic()):
            ok = certificates.reload()
            shared.count_tls_reload(slot, ok)
            if ok:
                use(certificates.context)
    return check


def exposition_for(config: Config, app: ServableApp, shared: SharedState,
                   snapshots: appcollectors.Snapshots | None,
                   certificates: Certificates | None = None) -> Exposition | None:
    if not config.metrics or snapshots is None:
        return None
    names = route_names(config, app)

    master = os.getppid()

    def live_pid(i):
        return shared.slot_pid(i) if shared.slot_state(i) != SharedState.FREE else 0

    def areas():        # every worker's area, then the master's
        return [(shared.app_area(i), live_pid(i)) for i in range(shared.nslots)] \
            + [(shared.app_area(shared.nslots), master)]

    def workers():
        return [(i, shared.app_area(i), pid) for i in range(shared.nslots)
                if (pid := live_pid(i))]
    return Exposition(CoreCollector(shared, names, certificates),
                      appmetrics.AppCollector(areas),
                      appcollectors.WorkerCollectors(snapshots, workers))


def worker_socket(config: Config, master_sock: socket.socket) -> socket.socket:
    """--accept reuseport: this worker's own socket in the port's SO_REUSEPORT group."""
    sock = socket.socket(master_sock.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(master_sock.getsockname())
    sock.listen(config.backlog)
    master_sock.close()
    return sock
