"""App: route decorators, and the dispatch callable the server's loop calls for every request."""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from fastsock._message import METHOD_NAMES, BadRequest, Request, Response
from fastsock.routing import Route, Router

error_log = logging.getLogger("fastsock.error")

_NOT_FOUND = Response(b"Not Found\n", 404, content_type="text/plain; charset=utf-8")
_SERVER_ERROR_BODY = b"Internal Server Error\n"


class HTTPError(Exception):
    """Raise from a handler to answer with a status: `raise HTTPError(403, "no")`."""

    def __init__(self, status: int, body="", headers=None):
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers


def to_response(result):
    """What a handler may return, made into something the writer sends: str, bytes,
    dict/list (JSON) and Response go as they are."""
    t = type(result)
    if t is tuple:
        body, status, *rest = result
        if type(body) is Response:
            body.status = status
            return body
        return Response(body, status, headers=rest[0] if rest else None)
    if result is None:
        return Response(None, 204)
    return Response(result)     # bytes-like, or an iterator to stream


def _method_table(route: Route) -> tuple:
    """The route's handlers indexed by method id (METHOD_NAMES), HEAD answered by the GET
    handler unless it has its own; [0] is a dict for methods without an id."""
    handlers = dict(route.handlers)
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])
    return ({m: h for m, h in handlers.items() if m not in METHOD_NAMES},
            *(handlers.get(m) for m in METHOD_NAMES[1:]))


class App:
    """A fastsock application: register handlers with the route decorators, then serve it
    with `fastsock MODULE:ATTR` or `fastsock.run(app)`."""

    def __init__(self):
        self.router = Router()
        self._dispatch = None

    def route(self, path: str, methods: Iterable[str] = ("GET",)) -> Callable:
        def register(handler: Callable) -> Callable:
            self.router.add(path, methods, handler)
            self._dispatch = None
            return handler
        return register

    def get(self, path: str) -> Callable:
        return self.route(path, ("GET",))

    def post(self, path: str) -> Callable:
        return self.route(path, ("POST",))

    def put(self, path: str) -> Callable:
        return self.route(path, ("PUT",))

    def patch(self, path: str) -> Callable:
        return self.route(path, ("PATCH",))

    def delete(self, path: str) -> Callable:
        return self.route(path, ("DELETE",))

    def dispatch(self, req: Request):
        """Route one request and call its handler. Never raises: an error is a 500 response."""
        if self._dispatch is None:
            self._dispatch = self.dispatcher()
        return self._dispatch(req)

    def dispatcher(self, reserved: Iterable[Route] = ()) -> Callable[[Request], object]:
        """The function that answers a request: the reserved routes (the server's own, which
        win over the app's), then the app's routes by one dict lookup, then its patterns.
        Built once: a request costs one call here and one to its handler."""
        by_id = {route.id: (route.id, _method_table(route), route)
                 for route in (*self.router.routes(), *reserved)}
        lookup = {route.template: by_id[route.id]
                  for route in (*self.router.exact.values(), *reserved)}.get
        match = self.router.match_pattern

        def dispatch(req):
            found = lookup(req.path)
            params = None
            if found is None:
                route, params = match(req.path)
                if route is None:
                    return _NOT_FOUND
                found = by_id[route.id]
            route_id, by_method, route = found
            req.route_id = route_id
            method_id = req.method_id
            handler = by_method[method_id] if method_id else by_method[0].get(req.method)
            if handler is None:
                return Response(b"Method Not Allowed\n", 405, headers=[("Allow", route.allowed())],
                                content_type="text/plain; charset=utf-8")
            try:
                if params is None:
                    result = handler(req)
                else:
                    req.path_params = params
                    result = handler(req, **params)
                t = type(result)
                if t is str or t is bytes or t is Response or t is dict or t is list:
                    return result
                return to_response(result)
            except HTTPError as e:
                return Response(e.body, e.status, headers=e.headers)
            except BadRequest as e:
                error_log.info("bad request: %s %s: %s", req.method, req.path, e)
                return Response(f"{e}\n", 400, content_type="text/plain; charset=utf-8")
            except Exception:
                error_log.exception("handler failed: %s %s", req.method, req.path)
                return Response(_SERVER_ERROR_BODY, 500, content_type="text/plain; charset=utf-8")
        return dispatch

    def run(self, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
        """Serve this app from a script: `fastsock.run(app, ...)` under another name."""
        import fastsock
        fastsock.run(self, host=host, port=port, **options)
