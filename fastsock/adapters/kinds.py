"""Which kind of application the server was given — a fastsock App, a WSGI (PEP 3333) or an
ASGI 3 application — and the app a worker serves for each: an App as it is, the other two
through their adapter."""
from __future__ import annotations

import inspect

from fastsock.adapters.asgi import ASGIApp
from fastsock.adapters.protocol import ServableApp
from fastsock.adapters.wsgi import WSGIApp


def kind_of(app, interface: str = "auto") -> str:
    """-> "fastsock", "wsgi" or "asgi"; ValueError for what is none of them."""
    if interface != "auto":
        if interface != "fastsock" and not callable(app):
            raise ValueError(f"a {type(app).__name__} is not callable: not a {interface} app")
        return interface
    if isinstance(app, ServableApp):
        return "fastsock"
    if not callable(app):
        raise ValueError(f"a {type(app).__name__} is not an application (a fastsock App, a "
                         "WSGI or an ASGI app)")
    if inspect.isclass(app):
        raise ValueError(f"{app.__name__} is a class: give an application instance (an "
                         "ASGI 2 class is not supported)")
    kind, arguments = ("asgi", 3) if _is_coroutine_function(app) else ("wsgi", 2)
    if not _takes(app, arguments):
        raise ValueError(f"a {type(app).__name__} that does not take {arguments} arguments is "
                         "neither a fastsock App, a WSGI app (environ, start_response) nor an "
                         "ASGI app (scope, receive, send)")
    return kind


def _takes(app, n: int) -> bool:
    try:
        inspect.signature(app).bind(*range(n))
    except TypeError:
        return False
    except ValueError:                  # no signature to read (a builtin): let it try
        return True
    return True


def _is_coroutine_function(app) -> bool:
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(type(app), "__call__", None)    # noqa: B004  (the method, to inspect it)
    return call is not None and not inspect.isfunction(app) and \
        inspect.iscoroutinefunction(call)


def adapt(app, config, runner, workers: int) -> ServableApp:
    """The app as a worker serves it: an App as it is, the others through their adapter."""
    kind = kind_of(app, config.interface)
    if kind == "asgi":
        return ASGIApp(app, config, runner)
    if kind == "wsgi":
        return WSGIApp(app, config, runner, workers)
    return app
