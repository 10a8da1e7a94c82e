"""`fastsock MODULE:ATTR [options]` and `python -m fastsock`."""
from __future__ import annotations

import errno
import sys

from fastsock import appmetrics
from fastsock.config import build_parser, from_args
from fastsock.loading import LoadError, check_spec, load_app
from fastsock.server import serve


class CLIError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    try:
        config = from_args(argv)
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
            app = config.app
    except (CLIError, LoadError, ValueError) as e:     # ValueError: a bad option value
        print(f"fastsock: error: {e}", file=sys.stderr)
        return 2
    try:
        serve(config, app)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            where = config.uds or f"{config.host}:{config.port}"
            if config.metrics_port:
                where += f" (metrics: {config.metrics_port})"
            reason = "address already in use" if e.errno == errno.EADDRINUSE else e.strerror
            print(f"fastsock: error: cannot listen on {where}: {reason}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
