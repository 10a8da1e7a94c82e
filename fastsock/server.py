"""Process start-up: logging, file limits, the listening socket, signals, then the loop."""
from __future__ import annotations

import logging
import resource
import signal
import socket
import sys

from fastsock._loop import Loop
from fastsock.config import Config

log = logging.getLogger("fastsock.error")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("fastsock")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def raise_fd_limit() -> None:
    """Thousands of connections need thousands of fds: take the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def bind(config: Config) -> socket.socket:
    """A non-blocking listening socket; OSError (e.g. address in use) goes to the caller."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
        sock.listen(config.backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def serve(config: Config, app, sock: socket.socket | None = None) -> None:
    configure_logging(config.log_level)
    raise_fd_limit()
    if sock is None:
        sock = bind(config)
    loop = Loop(sock.fileno(), app.dispatch, config)

    def on_stop(signum, frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        loop.stop()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    host, port = sock.getsockname()[:2]
    log.info("fastsock serving on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    try:
        loop.run()
    finally:
        sock.close()
    log.info("stopped")
