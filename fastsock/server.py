"""Starting a server — what `fastsock MODULE:ATTR`, `fastsock.run(app)` and `app.run()` call:
logging, the fd limit, the listening sockets, then the master (master.py) until it stops."""
from __future__ import annotations

import dataclasses
import logging
import os
import resource
import socket
import stat
import sys

from fastsock import appmetrics, logs
from fastsock.adapters.owned import say_owned
from fastsock.config import Config
from fastsock.cpus import auto_workers
from fastsock.master import Master

log = logging.getLogger("fastsock.error")


class CannotListen(OSError):
    """A listening socket that could not be made: the option it comes from (port, uds or
    metrics_port), where, and the error (its errno, or a socket.gaierror's)."""

    def __init__(self, option: str, where: str, error: OSError):
        super().__init__(error.errno, error.strerror)
        self.option, self.where, self.error = option, where, error


def serve(config: Config, app, sock: socket.socket | None = None) -> None:
    """Run the master until it stops; raises SystemExit with its exit code if not 0."""
    if config.reload and not isinstance(app, str):
        raise ValueError("reload needs the app as 'MODULE:ATTRIBUTE' (a restart imports it "
                         "afresh), not an app object")
    try:
        logs.configure(config.log_level, config.log_format, config.log_config)
    except ValueError as e:             # a bad --log-config: said before anything starts
        print(f"fastsock: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise_fd_limit()
    if not isinstance(app, str):        # loaded here (preloaded): said once, by the master
        say_owned(app, config)
    if config.uds or os.environ.get("LISTEN_FDS") or sock is not None:
        config = dataclasses.replace(config, accept="exclusive")   # one socket: nothing to split
    where = config.uds or f"{config.host}:{config.port}"
    try:
        sock = sock or listen_socket(config, reuseport=config.accept == "reuseport")
    except OSError as e:
        raise CannotListen("uds" if config.uds else "port", where, e) from e
    metrics_sock = None
    if config.metrics and config.metrics_port:
        try:
            metrics_sock = listen_socket(dataclasses.replace(
                config, port=config.metrics_port, metrics_port=0, uds=""))
        except OSError as e:
            sock.close()
            raise CannotListen("metrics_port", f"{config.host}:{config.metrics_port}", e) from e
    if config.metrics:
        appmetrics.install()    # the app's prometheus_client metrics, summed across workers
    if config.workers == "auto":
        n, why = auto_workers()
        log.info("--workers auto: %d (%s)", n, why)
    else:
        n = int(config.workers)
    code = Master(config, app, sock, n, metrics_sock).run()
    if code:
        raise SystemExit(code)


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
        addr: str | tuple[str, int] = config.uds
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
