"""The application named as MODULE:ATTRIBUTE, imported and checked to be one fastsock serves:
by the command before the master forks, or by each worker with --no-preload."""
from __future__ import annotations

import importlib
import inspect
import sys

from fastsock.adapters.kinds import kind_of


class LoadError(Exception):
    """The app cannot be loaded: the message says why, in one line."""


def check_spec(spec: str) -> tuple[str, str]:
    """MODULE:ATTRIBUTE -> (module, attribute); LoadError for anything else."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise LoadError(f"the application must be given as MODULE:ATTRIBUTE, not {spec!r}")
    return module_name, attr


def load_app(spec: str, interface: str = "auto"):
    module_name, attr = check_spec(spec)
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")          # like `python -m`: the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise LoadError(f"cannot import module {module_name!r}: no such module") from None
        raise
    app = module
    for part in attr.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise LoadError(f"module {module_name!r} has no attribute {attr!r}") from None
    try:
        kind_of(app, interface)
    except ValueError as e:
        raise LoadError(f"{spec}: {e}") from None
    return app


def load_callable(spec: str, flag: str):
    """A plain callable named as MODULE:ATTRIBUTE for an option (--ready-check); LoadError,
    naming the flag, for anything else."""
    try:
        module_name, attr = check_spec(spec)
    except LoadError as e:
        raise LoadError(f"{flag}: {e}") from None
    try:
        target = importlib.import_module(module_name)
    except ImportError as e:
        raise LoadError(f"{flag}: cannot import module {module_name!r}: {e}") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LoadError(f"{flag}: module {module_name!r} has no attribute "
                            f"{attr!r}") from None
    if not callable(target) or inspect.iscoroutinefunction(target):
        raise LoadError(f"{flag}: {spec} is not a plain function (one taking no arguments, "
                        "returning true when ready)")
    return target
