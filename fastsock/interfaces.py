"""Which kind of application the server was given — a fastsock App, a WSGI (PEP 3333) or an
ASGI 3 application — and the adapter each worker serves the other two through."""
from __future__ import annotations

import inspect

from fastsock._handoff import BodyIn
from fastsock._message import Response

STREAM_ABOVE = 65536        # a body with a larger Content-Length (or chunked) is streamed in


class ClientDisconnected(OSError):
    """What a WSGI or ASGI app gets for reading or sending after the client went away."""


def kind_of(app, interface: str = "auto") -> str:
    """-> "fastsock", "wsgi" or "asgi"; ValueError for what is none of them."""
    if interface != "auto":
        if interface != "fastsock" and not callable(app):
            raise ValueError(f"a {type(app).__name__} is not callable: not a {interface} app")
        return interface
    if hasattr(app, "dispatcher") and hasattr(app, "router"):
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
    call = getattr(type(app), "__call__", None)
    return call is not None and not inspect.isfunction(app) and \
        inspect.iscoroutinefunction(call)


def for_worker(app, config, runner, workers: int):
    """The app as a worker serves it: an App as it is, the others through their adapter."""
    kind = kind_of(app, config.interface)
    if kind == "asgi":
        from fastsock.asgi import ASGIApp
        return ASGIApp(app, config, runner)
    if kind == "wsgi":
        from fastsock.wsgi import WSGIApp
        return WSGIApp(app, config, runner, workers)
    return app


def stream_large_bodies(limit: int):
    """The on_head of a WSGI or ASGI app: req -> BodyIn for a body streamed to the app as it
    arrives (a large or chunked one, up to limit), None for one read whole first."""
    def on_head(req):
        length = req.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= STREAM_ABOVE:
            return None
        body_in = BodyIn(limit)
        req.body_stream = body_in
        return body_in
    return on_head


def app_response(status: int, headers, body) -> Response:
    """A WSGI or ASGI app's response as the writer takes it: its headers as they are (the
    writer checks each), no Content-Type of the server's."""
    response = Response.__new__(Response)
    response.status = status
    response.headers = headers if type(headers) is list else list(headers)
    response.body = body
    response.content_type = None
    return response
