"""`fastsock MODULE:ATTR [options]` and `python -m fastsock`."""
from __future__ import annotations

import errno
import importlib
import sys

from fastsock.config import build_parser, from_args
from fastsock.interfaces import kind_of


class CLIError(Exception):
    pass


def load_app(spec: str, interface: str = "auto"):
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"the application must be given as MODULE:ATTRIBUTE, not {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")          # like `python -m`: the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise CLIError(f"cannot import module {module_name!r}: no such module") from None
        raise
    app = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}") from None
    try:
        kind_of(app, interface)
    except ValueError as e:
        raise CLIError(f"{spec}: {e}") from None
    return app


def main(argv: list[str] | None = None) -> int:
    try:
        config = from_args(argv)
        if not config.app:
            build_parser().print_usage(sys.stderr)
            raise CLIError("missing the application (MODULE:ATTRIBUTE)")
        # --no-preload: only the workers import it (after the fork); checked there
        app = load_app(config.app, config.interface) if config.preload else config.app
    except (CLIError, ValueError) as e:        # ValueError: a bad option value
        print(f"fastsock: error: {e}", file=sys.stderr)
        return 2
    if not config.preload and ":" not in config.app:
        print(f"fastsock: error: the application must be given as MODULE:ATTRIBUTE, not "
              f"{config.app!r}", file=sys.stderr)
        return 2
    from fastsock.server import serve
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
