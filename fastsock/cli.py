"""`fastsock MODULE:ATTR [options]` and `python -m fastsock`."""
from __future__ import annotations

import errno
import socket
import sys

from fastsock import appmetrics
from fastsock.config import build_parser, flag_name, parse
from fastsock.loading import LoadError, check_spec, load_app, load_callable
from fastsock.reload import app_directory
from fastsock.server import CannotListen, serve


class CLIError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    given_as: dict[str, str] = {}
    try:
        config, given_as = parse(argv)
        if not config.app:
            build_parser().print_usage(sys.stderr)
            raise CLIError("missing the application (MODULE:ATTRIBUTE)")
        if config.preload:
            # the app's prometheus_client metrics, made as it is imported, merged across
            # workers (with --no-metrics prometheus_client is left as it is)
            if config.metrics:
                appmetrics.install()
            app = load_app(config.app, config.interface)
        else:                           # only the workers import it (after the fork)
            check_spec(config.app)
            if config.reload:           # the module is there, and where to watch
                app_directory(config.app)
            app = config.app
        if config.ready_check:          # a bad one stops the start here, before any fork
            load_callable(config.ready_check, given_as.get("ready_check", "--ready-check"))
    except (CLIError, LoadError, ValueError) as e:     # ValueError: a bad option value
        print(f"fastsock: error: {e}", file=sys.stderr)
        return 2
    try:
        serve(config, app)
    except CannotListen as e:
        code, line = cannot_listen(e, config, given_as)
        print(f"fastsock: error: {line}", file=sys.stderr)
        return code
    return 0


def cannot_listen(e: CannotListen, config, given_as: dict[str, str]) -> tuple[int, str]:
    """-> (exit status, one line): 2 and the option's name when its value cannot work on this
    machine; 1 when the address is busy (another process has it) or for anything else."""
    def named(field: str) -> str:
        return f"{given_as.get(field, flag_name(field))} {getattr(config, field)!r}"

    if isinstance(e.error, socket.gaierror):
        return 2, f"{named('host')} cannot be resolved: {e.strerror}"
    if e.errno == errno.EADDRNOTAVAIL:
        return 2, f"{named('host')} is not an address of this machine ({e.where})"
    if e.errno == errno.EACCES:
        why = "" if e.option == "uds" else " (below 1024 needs CAP_NET_BIND_SERVICE)"
        return 2, f"{named(e.option)}: permission denied{why}"
    if e.errno == errno.EADDRINUSE:
        which = " (the metrics port)" if e.option == "metrics_port" else ""
        return 1, f"cannot listen on {e.where}{which}: address already in use"
    return 1, f"cannot listen on {e.where}: {e.strerror}"


if __name__ == "__main__":
    sys.exit(main())
