"""The process model: the master binds, forks workers that each run one loop, supervises them,
and turns signals into draining, rolling restarts and exits.

    SIGTERM, SIGINT   graceful: readiness 503 at once, keep serving --shutdown-delay seconds,
                      then drain (stop accepting, finish in-flight work, close idle
                      connections) for at most --graceful-timeout seconds, and exit 0
    second SIGINT,    fast exit
    SIGQUIT
    SIGHUP            rolling restart: workers replaced one at a time, each new one serving
                      before the old one drains (--max-requests replaces a worker the same way)

With --reload (development) a watcher on a thread of the master replaces the one worker the way
SIGHUP does when a .py file under the app's directory changes; a worker that cannot start the
changed app is logged, and the master waits for the next change instead of stopping.

A watchdog (--timeout) replaces a worker whose loop has stopped turning, after logging where
it is stuck; a failed fork is logged and retried with the crash backoff.

Workers share the master's listening socket, watched with EPOLLEXCLUSIVE so that a connection
wakes one idle worker; a worker that stops or dies never takes queued connections down with it
(as a per-worker SO_REUSEPORT socket, --accept reuseport, would). As PID 1 in a container the
master also reaps every child it inherits.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

from fastsock import appmetrics, tls
from fastsock._shared import SharedState
from fastsock._tlsctx import TLSError, fill_ring
from fastsock.config import Config
from fastsock.worker import SIGNALS, WATCHDOG_SIGNAL, run_worker

log = logging.getLogger("fastsock.error")

CRASH_WINDOW = 10.0         # a worker that dies sooner than this after starting is crash-looping
MAX_BACKOFF = 10.0
STARTUP_FAILED = 3          # the master's exit code when the app cannot start in a worker
STACK_DUMP_WAIT = 1.0       # between asking a stuck worker for its stack and killing it
SERVING = (SharedState.RUNNING, SharedState.RETIRING)


class WorkerProcess:
    """The master's record of one forked worker."""

    __slots__ = ("pid", "slot", "started", "retiring", "stuck_since")

    def __init__(self, pid: int, slot: int):
        self.pid, self.slot, self.started, self.retiring = pid, slot, time.monotonic(), False
        self.stuck_since = 0.0      # when the watchdog asked for its stack; 0 while it is fine


class Master:
    def __init__(self, config: Config, app, sock: socket.socket, n: int,
                 metrics_sock: socket.socket | None = None):
        self.config, self.app, self.sock, self.wanted = config, app, sock, n
        self.metrics_sock = metrics_sock
        # room for every worker plus the replacements a rolling restart runs beside them
        try:
            self.shared = SharedState(2 * n + 2, (config.app_metrics_bytes + 7) & ~7)
        except OSError as e:            # ENOMEM: e.g. a typo's --app-metrics-bytes
            print(f"fastsock: error: cannot map the shared memory for {n} workers "
                  f"(--app-metrics-bytes {config.app_metrics_bytes} each, twice over for "
                  f"rolling restarts): {e.strerror}", file=sys.stderr)
            raise SystemExit(2) from None
        if config.metrics:      # the app's values made before the fork: the master's
            appmetrics.attach(self.shared.app_area(self.shared.nslots), bind=True)
        # TLS: loaded once here, so a worker never starts without certificates that load;
        # session-ticket keys in the shared memory, new ones every --tls-ticket-key-rotation
        self.certificates: tls.Certificates | None = None
        self.next_ticket_key = 0.0
        try:
            context = tls.load(config)
        except (TLSError, OSError) as e:
            print(f"fastsock: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        if context is not None:
            self.certificates = tls.Certificates(config, context)
            fill_ring(self.shared, all_keys=True)
            self.next_ticket_key = time.monotonic() + config.tls_ticket_key_rotation
        self.workers: dict[int, WorkerProcess] = {}
        self.backoff = 0.0
        self.next_spawn = 0.0
        self.rolling: list[int] = []            # pids still to replace (SIGHUP)
        self.replacement: int | None = None     # the new worker being waited for
        self.replacing: int | None = None       # the old worker it replaces
        self.phase = "running"                  # running -> delaying -> draining
        self.startup_failed = False
        self.phase_deadline = 0.0
        self.reloader = None
        self.paused = False                     # --reload: the app fails to start; wait
        if config.reload:
            from fastsock.reload import Reloader, app_directory
            self.reloader = Reloader(app_directory(app))
            sys.dont_write_bytecode = True      # a .pyc written in the second of an edit of
                                                # the same size would hide that edit

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
                                  self.metrics_sock, self.wanted, self.certificates)
            except BaseException:
                log.exception("worker failed")
            finally:
                logging.shutdown()
                os._exit(code)
        # from here on the slot is the worker's to write
        self.workers[pid] = WorkerProcess(pid, slot)
        log.info("started worker %d", pid)
        return pid

    def active(self) -> list[WorkerProcess]:
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
            if start_failed and self.reloader is not None:
                log.error("worker %d could not start the app (see above); %swaiting for a "
                          "change to try again", pid,
                          "the one before it serves meanwhile; " if self.active() else "")
                self.paused = True
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
        if self.paused:
            return
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
            if old not in self.workers or self.workers[old].retiring:
                self.rolling.pop(0)
            else:
                self.replacement = self.spawn()
                if self.replacement is not None:
                    self.replacing = self.rolling.pop(0)
        elif self.replacement is not None:
            assert self.replacing is not None               # set with replacement, above
            new = self.workers.get(self.replacement)
            if new is None:                                 # it died: try that one again
                self.rolling.insert(0, self.replacing)
                self.replacement = None
            elif self.shared.slot_state(new.slot) in SERVING:
                retired = self.workers.get(self.replacing)
                if retired is not None:
                    retired.retiring = True
                    os.kill(retired.pid, signal.SIGTERM)
                self.replacement = None

    def update_ready(self) -> None:
        running = sum(1 for w in self.active() if self.shared.slot_state(w.slot) in SERVING)
        self.shared.ready = self.phase == "running" and running >= self.wanted
        self.shared.set_workers_alive(len(self.workers))

    def reload(self) -> None:
        """--reload: replace every worker, the one being started included (it may hold the
        code from before the change)."""
        if self.phase == "running":
            self.paused = False
            self.backoff, self.next_spawn = 0.0, 0.0
            self.rolling = [w.pid for w in self.active()]
            self.replacement = self.replacing = None

    # signals and shutdown

    def on_signal(self, signo: int) -> int | None:
        """-> an exit code when the master must leave now."""
        if signo == signal.SIGCHLD:
            return None
        if signo == signal.SIGHUP:
            if self.phase == "running":
                if self.certificates is not None:       # the new workers start with these
                    self.certificates.reload()
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
        log.info("fastsock serving on %s with %d worker%s",
                 describe(self.sock, self.certificates is not None), self.wanted,
                 "s" if self.wanted != 1 else "")
        if self.reloader is not None:
            self.reloader.start()
        try:
            return self.supervise()
        finally:
            if self.reloader is not None:
                self.reloader.close()

    def supervise(self) -> int:
        for _ in range(self.wanted):
            self.spawn()
        while True:
            info = signal.sigtimedwait(SIGNALS, 0.05)
            if info is not None:
                code = self.on_signal(info.si_signo)
                if code is not None:
                    return code
            self.reap()
            if self.reloader is not None and self.reloader.changed():
                self.reload()
            if self.startup_failed:
                self.fast_exit()
                return STARTUP_FAILED
            self.watch()
            if self.certificates is not None and time.monotonic() >= self.next_ticket_key:
                fill_ring(self.shared)
                self.next_ticket_key = time.monotonic() + self.config.tls_ticket_key_rotation
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


def describe(sock: socket.socket, tls: bool = False) -> str:
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
