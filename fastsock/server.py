"""The process model: the master binds, forks workers that each run one loop, supervises them,
and turns signals into draining, rolling restarts and exits.

    SIGTERM, SIGINT   graceful: readiness 503 at once, keep serving --shutdown-delay seconds,
                      then drain (stop accepting, finish in-flight work, close idle
                      connections) for at most --graceful-timeout seconds, and exit 0
    second SIGINT,    fast exit
    SIGQUIT
    SIGHUP            rolling restart: workers replaced one at a time, each new one serving
                      before the old one drains (--max-requests replaces a worker the same way)

A watchdog (--timeout) replaces a worker whose loop has stopped turning, after logging where
it is stuck; a failed fork is logged and retried with the crash backoff.

Workers share the master's listening socket, watched with EPOLLEXCLUSIVE so that a connection
wakes one idle worker; a worker that stops or dies never takes queued connections down with it
(as a per-worker SO_REUSEPORT socket, --accept reuseport, would). As PID 1 in a container the
master also reaps every child it inherits.
"""
from __future__ import annotations

import ctypes
import dataclasses
import faulthandler
import gc
import logging
import os
import random
import resource
import signal
import socket
import stat
import sys
import time

from fastsock._loop import Loop
from fastsock._message import RouteId
from fastsock._shared import SharedState
from fastsock.accesslog import AccessLog
from fastsock.config import Config
from fastsock import appmetrics, dispatch, handlers, hooks, interfaces, logs
from fastsock.metrics import CoreCollector, Exposition
from fastsock.proxy import Proxies
from fastsock.workers import worker_count

log = logging.getLogger("fastsock.error")

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD}
CRASH_WINDOW = 10.0         # a worker that dies sooner than this after starting is crash-looping
MAX_BACKOFF = 10.0
WATCHDOG_SIGNAL = signal.SIGUSR1
STARTUP_FAILED = 3          # the master's exit code when the app cannot start in a worker
STACK_DUMP_WAIT = 1.0       # between asking a stuck worker for its stack and killing it
SERVING = (SharedState.RUNNING, SharedState.RETIRING)


def raise_fd_limit() -> None:
    """Thousands of connections need thousands of fds: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open file limit raised from %d to %d (the hard limit)", soft, hard)


def listen_socket(config: Config, reuseport: bool = False) -> socket.socket:
    """systemd's socket (LISTEN_FDS) when there is one, else --uds, else --host/--port.
    OSError (e.g. address in use) goes to the caller. With reuseport the TCP socket is only
    bound, to hold the port: each worker listens on a socket of its own (worker_socket)."""
    if os.environ.get("LISTEN_FDS") and os.environ.get("LISTEN_PID") == str(os.getpid()):
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        return socket.socket(fileno=3)                  # SD_LISTEN_FDS_START
    if config.uds:
        try:
            if stat.S_ISSOCK(os.stat(config.uds).st_mode):
                os.unlink(config.uds)                   # a stale socket from an earlier run
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = config.uds
    else:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        addr = (config.host, config.port)
    try:
        sock.bind(addr)
        if not reuseport:
            sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def worker_socket(config: Config, master_sock: socket.socket) -> socket.socket:
    """--accept reuseport: this worker's own socket in the port's SO_REUSEPORT group."""
    sock = socket.socket(master_sock.family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(master_sock.getsockname())
    sock.listen(config.backlog)
    master_sock.close()
    return sock


def describe(sock: socket.socket) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def serve(config: Config, app, sock: socket.socket | None = None) -> None:
    """Run the master until it stops; raises SystemExit with its exit code if not 0."""
    try:
        logs.configure(config.log_level, config.log_format, config.log_config)
    except ValueError as e:             # a bad --log-config: said before anything starts
        print(f"fastsock: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise_fd_limit()
    if config.uds or os.environ.get("LISTEN_FDS") or sock is not None:
        config = dataclasses.replace(config, accept="exclusive")   # one socket: nothing to split
    sock = sock or listen_socket(config, reuseport=config.accept == "reuseport")
    metrics_sock = None
    if config.metrics and config.metrics_port:
        metrics_sock = listen_socket(dataclasses.replace(config, port=config.metrics_port, uds=""))
    code = Master(config, app, sock, worker_count(config.workers), metrics_sock).run()
    if code:
        raise SystemExit(code)


# ---------------------------------------------------------------------------- workers

def exposition_for(config: Config, app, shared: SharedState) -> Exposition | None:
    if not config.metrics:
        return None
    names = {RouteId.ROUTE_HEALTHZ: config.healthz_path, RouteId.ROUTE_READYZ: config.readyz_path,
             RouteId.ROUTE_METRICS: config.metrics_path}
    names.update(app.route_names() if hasattr(app, "route_names") else app.router.names())

    def areas():
        return [(shared.app_area(i), shared.slot_state(i) != SharedState.FREE)
                for i in range(shared.nslots)]
    return Exposition(CoreCollector(shared, names), appmetrics.AppCollector(areas))


def run_worker(config: Config, app, sock: socket.socket, shared: SharedState, slot: int,
               metrics_sock: socket.socket | None = None, workers: int = 1) -> int:
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
    max_requests = config.max_requests
    if max_requests:
        max_requests += random.randint(0, config.max_requests_jitter)
    access_log = AccessLog(config.access_log) if config.access_log != "off" else None
    exclusive = workers > 1
    if config.accept == "reuseport":
        sock, exclusive = worker_socket(config, sock), False
    loop = Loop(config.limits(), shared, slot, exclusive=exclusive,
                on_tick=access_log.flush if access_log is not None else None)
    # async handlers and thread-pool completions run on an asyncio loop, made when needed
    runner = handlers.Runner(loop, threads=config.threads, backlog=config.thread_backlog,
                             timeout=config.handler_timeout,
                             threads_by_default=config.run_sync == "thread")
    loop.on_stream = runner.start_feed
    try:
        # what can keep the app from starting: the master stops instead of respawning it
        step = "import the app"
        if isinstance(app, str):        # --no-preload: this worker imports the app itself
            from fastsock.cli import load_app
            app = load_app(app, config.interface)
        step = "set up the app"
        app = interfaces.for_worker(app, config, runner, workers)
        step = "run a startup hook"
        hooks.run_lifecycle(getattr(app, "startup", ()), runner)
        step = "set up the app's routes and hooks"
        main, metrics = dispatch.build(
            app, config,
            ready=lambda: shared.ready,
            exposition=exposition_for(config, app, shared),
            access_log=access_log.log if access_log is not None else None,
            proxies=Proxies(config.forwarded_allow_ips) if config.forwarded_allow_ips else None,
            max_requests=max_requests, retire=loop.retire, runner=runner)
        loop.on_head = app.body_streams(runner, config.max_body_size)
    except Exception:
        log.exception("cannot %s in worker %d", step, os.getpid())
        shared.set_slot(slot, os.getpid(), SharedState.START_FAILED)
        return 1
    # what the app made at import and start-up lives as long as the worker: out of the
    # collector's full passes (faster ones under load, and pages stay shared after the fork)
    gc.freeze()
    loop.listen(sock, main)
    if metrics_sock is not None and metrics is not None:
        loop.listen(metrics_sock, metrics)
    signal.signal(signal.SIGTERM, lambda *_: loop.drain())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    # a handler that forks: its child holds none of the worker's sockets
    os.register_at_fork(after_in_child=loop.close_in_child)
    loop.run()
    try:
        hooks.run_lifecycle(getattr(app, "shutdown", ()), runner)
    except Exception:
        log.exception("a shutdown hook failed in worker %d", os.getpid())
    runner.close()
    return 0


class Worker:
    __slots__ = ("pid", "slot", "started", "retiring", "stuck_since")

    def __init__(self, pid: int, slot: int):
        self.pid, self.slot, self.started, self.retiring = pid, slot, time.monotonic(), False
        self.stuck_since = 0.0      # when the watchdog asked for its stack; 0 while it is fine


# ---------------------------------------------------------------------------- the master

class Master:
    def __init__(self, config: Config, app, sock: socket.socket, n: int,
                 metrics_sock: socket.socket | None = None):
        self.config, self.app, self.sock, self.wanted = config, app, sock, n
        self.metrics_sock = metrics_sock
        # room for every worker plus the replacements a rolling restart runs beside them
        self.shared = SharedState(2 * n + 2)
        self.workers: dict[int, Worker] = {}
        self.backoff = 0.0
        self.next_spawn = 0.0
        self.rolling: list[int] = []            # pids still to replace (SIGHUP)
        self.replacement: int | None = None     # the new worker being waited for
        self.replacing: int | None = None       # the old worker it replaces
        self.phase = "running"                  # running -> delaying -> draining
        self.startup_failed = False
        self.phase_deadline = 0.0

    # the worker processes

    def spawn(self) -> int | None:
        """Fork a worker into a free slot; None while every slot is taken (by workers still
        draining after repeated SIGHUPs): the caller tries again on a later round."""
        slot = self.shared.free_slot()
        if slot < 0:
            return None
        self.shared.set_slot(slot, 0, SharedState.STARTING)
        try:
            pid = os.fork()
        except OSError as e:        # EAGAIN (a pids limit), ENOMEM: transient, so try again
            self.shared.set_slot(slot, 0, SharedState.FREE)
            self.backoff = min(max(0.1, self.backoff * 2), MAX_BACKOFF)
            self.next_spawn = time.monotonic() + self.backoff
            log.error("cannot start a worker: fork failed: %s; trying again in %.1fs",
                      e.strerror, self.backoff)
            return None
        if pid == 0:
            code = 1
            try:
                code = run_worker(self.config, self.app, self.sock, self.shared, slot,
                                  self.metrics_sock, self.wanted)
            except BaseException:
                log.exception("worker failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.workers[pid] = Worker(pid, slot)  # from here on the slot is the worker's to write
        log.info("started worker %d", pid)
        return pid

    def active(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.retiring]

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue                    # an orphan we inherited as PID 1: reaped, done
            start_failed = self.shared.slot_state(worker.slot) == SharedState.START_FAILED
            self.shared.set_slot(worker.slot, 0, SharedState.FREE)
            if os.WIFSIGNALED(status):
                reason, crashed = f"killed by {signal.Signals(os.WTERMSIG(status)).name}", True
            else:
                code = os.WEXITSTATUS(status)
                reason, crashed = f"exited with code {code}", code != 0
            if worker.retiring or self.phase != "running":
                log.info("worker %d %s", pid, reason)
                continue
            if start_failed:
                log.error("worker %d could not start the app (see above): stopping", pid)
                self.startup_failed = True
                continue
            if worker.stuck_since:
                reason = "replaced by the watchdog"
            lived = time.monotonic() - worker.started
            if crashed:
                self.shared.count_restart()
                self.backoff = (min(max(0.1, self.backoff * 2), MAX_BACKOFF)
                                if lived < CRASH_WINDOW else 0.0)
                log.error("worker %d %s after %.1fs; respawning in %.1fs", pid, reason, lived,
                          self.backoff)
                self.next_spawn = time.monotonic() + self.backoff
            else:
                log.info("worker %d %s (recycled); respawning", pid, reason)

    def watch(self) -> None:
        """The watchdog: a worker whose loop has not turned for --timeout seconds is stuck
        (a handler blocking it). Its stack is logged, then it is killed and, like any crashed
        worker, replaced. It takes no new connections meanwhile: only a worker waiting in
        epoll_wait is woken for one."""
        timeout = self.config.timeout
        if not timeout:
            return
        now = time.monotonic()
        for w in list(self.workers.values()):
            if w.stuck_since:
                if now - w.stuck_since >= STACK_DUMP_WAIT:
                    os.kill(w.pid, signal.SIGKILL)
                continue
            beat = self.shared.heartbeat(w.slot)
            if beat and now - beat > timeout:
                log.error("worker %d: its loop has not turned for %.1fs (a handler blocking "
                          "it?); its stack follows, then it is replaced", w.pid, now - beat)
                w.stuck_since = now
                os.kill(w.pid, WATCHDOG_SIGNAL)

    def keep_workers(self) -> None:
        now = time.monotonic()
        for w in self.active():         # --max-requests: a worker asking to be replaced
            if (self.shared.slot_state(w.slot) == SharedState.RETIRING
                    and w.pid not in self.rolling and w.pid != self.replacing):
                log.info("worker %d served its --max-requests; replacing it", w.pid)
                self.rolling.append(w.pid)
        if len(self.active()) < self.wanted and now >= self.next_spawn:
            self.spawn()
        if self.replacement is None and self.rolling and now >= self.next_spawn:
            old = self.rolling[0]
            if old not in self.workers:
                self.rolling.pop(0)
            else:
                self.replacement = self.spawn()
                if self.replacement is not None:
                    self.replacing = self.rolling.pop(0)
        elif self.replacement is not None:
            new = self.workers.get(self.replacement)
            if new is None:                                 # it died: try that one again
                self.rolling.insert(0, self.replacing)
                self.replacement = None
            elif self.shared.slot_state(new.slot) in SERVING:
                old = self.workers.get(self.replacing)
                if old is not None:
                    old.retiring = True
                    os.kill(old.pid, signal.SIGTERM)
                self.replacement = None

    def update_ready(self) -> None:
        running = sum(1 for w in self.active() if self.shared.slot_state(w.slot) in SERVING)
        self.shared.ready = self.phase == "running" and running >= self.wanted
        self.shared.set_workers_alive(len(self.workers))

    # signals and shutdown

    def on_signal(self, signo: int) -> int | None:
        """-> an exit code when the master must leave now."""
        if signo == signal.SIGCHLD:
            return None
        if signo == signal.SIGHUP:
            if self.phase == "running":
                log.info("SIGHUP: replacing %d workers one at a time", len(self.active()))
                self.rolling = [w.pid for w in self.active()]
            return None
        if signo == signal.SIGQUIT or (signo == signal.SIGINT and self.phase != "running"):
            log.warning("%s: fast exit", signal.Signals(signo).name)
            return self.fast_exit()
        if self.phase == "running":
            log.info("%s: readiness off; draining in %.1fs", signal.Signals(signo).name,
                     self.config.shutdown_delay)
            self.phase = "delaying"
            self.shared.draining = True
            self.shared.ready = False
            self.phase_deadline = time.monotonic() + self.config.shutdown_delay
        return None

    def start_draining(self) -> None:
        log.info("draining: no new connections; up to %.1fs for in-flight requests",
                 self.config.graceful_timeout)
        self.phase = "draining"
        # the workers keep the deadline themselves; this is the backstop for a stuck handler
        self.phase_deadline = time.monotonic() + self.config.graceful_timeout + 1
        for w in self.workers.values():
            os.kill(w.pid, signal.SIGTERM)
        self.sock.close()
        if self.metrics_sock is not None:
            self.metrics_sock.close()

    def fast_exit(self) -> int:
        for w in self.workers.values():
            os.kill(w.pid, signal.SIGQUIT)
        deadline = time.monotonic() + 2
        while self.workers and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.02)
        for w in self.workers.values():
            os.kill(w.pid, signal.SIGKILL)
        return 1

    def run(self) -> int:
        # Signals are taken synchronously with sigtimedwait. The handlers never run; they are
        # there because PID 1 in a container ignores signals left at SIG_DFL.
        for signo in SIGNALS - {signal.SIGCHLD}:
            signal.signal(signo, lambda *_: None)
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        log.info("fastsock serving on %s with %d worker%s", describe(self.sock), self.wanted,
                 "s" if self.wanted != 1 else "")
        for _ in range(self.wanted):
            self.spawn()
        while True:
            info = signal.sigtimedwait(SIGNALS, 0.05)
            if info is not None:
                code = self.on_signal(info.si_signo)
                if code is not None:
                    return code
            self.reap()
            if self.startup_failed:
                self.fast_exit()
                return STARTUP_FAILED
            self.watch()
            if self.phase == "running":
                self.keep_workers()
            elif self.phase == "delaying" and time.monotonic() >= self.phase_deadline:
                self.start_draining()
            elif self.phase == "draining":
                if not self.workers:
                    log.info("stopped")
                    return 0
                if time.monotonic() >= self.phase_deadline:
                    log.error("workers still running past the graceful timeout: killing them")
                    for w in self.workers.values():
                        os.kill(w.pid, signal.SIGKILL)
                    return 1
            self.update_ready()
