"""App: route decorators, and the dispatch callable the server's loop calls for every request."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from types import SimpleNamespace

from fastsock import hooks
from fastsock._handoff import BodyIn, Deferred
from fastsock._json import configure as configure_json
from fastsock._message import METHOD_NAMES, Dispatcher, Request, Response
from fastsock.responses import NOT_FOUND, method_not_allowed
from fastsock.results import HTTPError, error_response, to_response
from fastsock.routing import Route, Router
from fastsock.runner import RequestStream, is_async
from fastsock.websocket import websocket_route
from fastsock.wslayers import layered_websocket

__all__ = ["App", "HTTPError"]

_HEAD = METHOD_NAMES.index("HEAD")


def _runnable(handler, options: dict, runner, app: App):
    """The handler as the dispatcher calls it: as it is (inline), or started on the runner's
    asyncio loop or thread pool, returning a Deferred; inside the app's hooks and middleware
    when it has any (hooks.runnable)."""
    if options.get("websocket"):
        if runner is None:
            raise RuntimeError(f"{handler.__qualname__} is a WebSocket handler: serve the app "
                               "(fastsock MODULE:APP) or test it with fastsock.testing")
        if hooks.has_layers(app):
            return layered_websocket(handler, runner, app)
        return websocket_route(handler, runner, options)
    if hooks.has_layers(app):
        return hooks.runnable(handler, options, runner, app)
    pull_inline = bool(options.get("pull_inline"))
    if is_async(handler):
        if runner is None:
            raise RuntimeError(f"{handler.__qualname__} is an async handler: serve the app "
                               "(fastsock MODULE:APP) or test it with fastsock.testing")
        return runner.run_async(handler, options.get("timeout"), pull_inline)
    threaded = options.get("threaded")
    if threaded is None and runner is not None:
        threaded = runner.threads_by_default
    if threaded:
        if runner is None or not runner.threads:
            raise RuntimeError(f"{handler.__qualname__} runs in the thread pool, which this "
                               "server has none of (--threads 0)")
        return runner.run_in_thread(handler, options.get("timeout"), pull_inline)
    return handler


class _Dispatch(Dispatcher):
    """The tables dispatch looks a request up in (app.pxd gives them C attributes, and
    dispatch a typed Request: its fields are read as a struct's, not looked up by name). A
    Dispatcher: called as dispatch(req), and by the connection from C."""

    def __init__(self, by_id: dict, lookup, match, pooled_body, pulled_inline: frozenset):
        self.by_id, self.lookup, self.match = by_id, lookup, match
        self.pooled_body = pooled_body          # runner.pooled_body, or None (no runner)
        self.pulled_inline = pulled_inline      # the handlers of routes with pull_inline=True

    def dispatch(self, req):
        if req is None:         # (compiled, req is a typed Request: checked, but None passes)
            raise TypeError("dispatch takes a Request, not None")
        found = self.lookup(req.path)
        params = None
        if found is None:
            route, params = self.match(req.path)
            if route is None:
                return NOT_FOUND
            found = self.by_id[route.id]
        route_id, by_method, route = found
        req.route_id = route_id
        method_id = req.method_id
        handler = by_method[method_id] if method_id else by_method[0].get(req.method)
        if handler is None:
            return method_not_allowed(route.allowed())
        try:
            if params is None:
                result = handler(req)
            else:
                req.path_params = params
                result = handler(req, **params)
            t = type(result)
            if (t is str or t is bytes or t is dict or t is list or t is Deferred
                    or (t is Response and type(result.body) is bytes)):
                return result
            return self.finish(result, handler, method_id)
        except Exception as e:          # noqa: BLE001  (a handler's error: its response)
            return error_response(req, e)

    def finish(self, result, handler, method_id):
        """An inline handler's other results: made a response (to_response), a plain iterator
        body pulled in the pool unless its route says pull_inline=True. A body that is never
        pulled (HEAD, 204, 304) is left as it is: the writer closes it at once."""
        response = to_response(result)
        if (type(response) is Response and self.pooled_body is not None
                and handler not in self.pulled_inline and method_id != _HEAD
                and response.status != 204 and response.status != 304):
            response.body = self.pooled_body(response.body)
        return response


def _method_table(route: Route, runner=None, app: App | None = None,
                  pulled: set | None = None) -> tuple:
    """The route's handlers indexed by method id (METHOD_NAMES), HEAD answered by the GET
    handler unless it has its own; [0] is a dict for methods without an id. The server's own
    routes (app None) are neither hooked nor run elsewhere. pulled: gets the handlers of the
    methods with pull_inline=True."""
    handlers = {m: _runnable(h, route.options.get(m, {}), runner, app) if app else h
                for m, h in route.handlers.items()}
    if pulled is not None:
        pulled.update(h for m, h in handlers.items()
                      if route.options.get(m, {}).get("pull_inline"))
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])
    return ({m: h for m, h in handlers.items() if m not in METHOD_NAMES},
            *(handlers.get(m) for m in METHOD_NAMES[1:]))


class App:
    """A fastsock application: register handlers with the route decorators, then serve it
    with `fastsock MODULE:ATTR` or `fastsock.run(app)`."""

    def __init__(self, *, json_default: Callable | None = None,
                 use_orjson: bool | None = None):
        """json_default(o): what a value of a type the JSON encoder does not take becomes (a
        value it takes), or TypeError. use_orjson: None uses orjson when it is installed.
        The encoder is the process's: set when this app's dispatcher is built."""
        self.json_default, self.use_orjson = json_default, use_orjson
        self.router = Router()
        self._dispatch: Callable[[Request], object] | None = None
        self.startup: list[Callable] = []           # run in each worker before it serves
        self.shutdown: list[Callable] = []          # ... and after it has drained
        self.before: list[Callable] = []
        self.after: list[Callable] = []
        self.middlewares: list[Callable] = []
        self.error_handlers: dict[type, Callable] = {}
        self.state = SimpleNamespace()              # the app's own: pools, clients, settings

    # -- the app's lifecycle and hooks

    def on_startup(self, hook: Callable) -> Callable:
        """hook() — sync or async — runs in each worker after the fork, before it serves:
        open pools and clients here, not at import. If it raises, the server stops."""
        self.startup.append(hook)
        return hook

    def on_shutdown(self, hook: Callable) -> Callable:
        """hook() — sync or async — runs in each worker once it has drained."""
        self.shutdown.append(hook)
        return hook

    def before_request(self, hook: Callable) -> Callable:
        """hook(req) runs before each handler; a result other than None is the response and
        the handler is not called."""
        self._hook(self.before, hook)
        return hook

    def after_request(self, hook: Callable) -> Callable:
        """hook(req, response) runs after each handler, with its result made a Response; a
        result other than None replaces it."""
        self._hook(self.after, hook)
        return hook

    def middleware(self, fn: Callable) -> Callable:
        """fn(req, call_next) wraps every route's handler, whatever its kind: call_next(req)
        runs the rest and returns a Response (made from whatever the handler returned) that fn
        may change, or replace by what it returns. fn may be plain or `async def` (awaiting
        call_next). The first registered is the outermost. See hooks.py for where each runs."""
        self._hook(self.middlewares, fn)
        return fn

    def errorhandler(self, exc_type: type) -> Callable:
        """@app.errorhandler(KeyError) def h(req, exc): ... — the response for that exception
        (and its subclasses) from a handler or a hook, instead of a 500."""
        def register(handler: Callable) -> Callable:
            self.error_handlers[exc_type] = handler
            self._dispatch = None
            return handler
        return register

    def _hook(self, hooks: list, fn: Callable) -> None:
        hooks.append(fn)
        self._dispatch = None

    def route(self, path: str, methods: Iterable[str] = ("GET",), *,
              threaded: bool | None = None, timeout: float | None = None,
              stream: bool = False, max_body_size: int | None = None,
              pull_inline: bool = False) -> Callable:
        """Register a handler. An `async def` handler runs on the worker's asyncio loop; a plain
        one inline on the worker's loop, or in its thread pool with threaded=True (None: as
        --run-sync says). timeout: seconds before a task or thread job is answered 504
        (None: --handler-timeout). stream=True (async handlers): the handler starts when the
        head is in and reads the body with `async for chunk in req.stream()` as it arrives,
        up to max_body_size bytes (None: --max-body-size; 413 past it). A plain iterator the
        handler returns (a generator, a file) is pulled in the thread pool, so one that blocks
        never stalls the loop; pull_inline=True pulls it on the loop instead, for generators
        that never block (cheaper per chunk)."""
        options = {"threaded": threaded, "timeout": timeout, "stream": stream,
                   "max_body_size": max_body_size, "pull_inline": pull_inline}

        def register(handler: Callable) -> Callable:
            if stream and not is_async(handler):
                raise TypeError(f"{handler.__qualname__}: stream=True needs an async handler "
                                "(it reads the body with `async for chunk in req.stream()`)")
            self.router.add(path, methods, handler, options)
            self._dispatch = None
            return handler
        return register

    def websocket(self, path: str) -> Callable:
        """Register an `async def handler(ws, **params)` for WebSockets at path: it gets a
        fastsock.websocket.WebSocket (`async for message in ws`, `await ws.send(...)`, `await
        ws.close(code)`), accepted on first use unless it calls `await ws.accept(...)` first
        (to pick one of `ws.subprotocols` or add headers) or closes it (a 403). A request to
        path that is not an opening handshake gets 426. The app's middleware, hooks and error
        handlers wrap its handshake (see fastsock.wslayers)."""
        def register(handler: Callable) -> Callable:
            if not is_async(handler):
                raise TypeError(f"{handler.__qualname__}: a WebSocket handler is an async def")
            self.router.add(path, ("GET",), handler, {"websocket": True})
            self._dispatch = None
            return handler
        return register

    def get(self, path: str, **options) -> Callable:
        return self.route(path, ("GET",), **options)

    def post(self, path: str, **options) -> Callable:
        return self.route(path, ("POST",), **options)

    def put(self, path: str, **options) -> Callable:
        return self.route(path, ("PUT",), **options)

    def patch(self, path: str, **options) -> Callable:
        return self.route(path, ("PATCH",), **options)

    def delete(self, path: str, **options) -> Callable:
        return self.route(path, ("DELETE",), **options)

    def dispatch(self, req: Request):
        """Route one request and call its handler. Never raises: an error is a 500 response."""
        if self._dispatch is None:
            self._dispatch = self.dispatcher()
        return self._dispatch(req)

    def dispatcher(self, reserved: Iterable[Route] = (), runner=None
                   ) -> Callable[[Request], object]:
        """The function that answers a request: the reserved routes (the server's own, which
        win over the app's), then the app's routes by one dict lookup, then its patterns.
        Built once: a request costs one call here and one to its handler. runner: the
        worker's runner.Runner, for handlers that do not run inline."""
        configure_json(self.json_default, self.use_orjson)
        pulled: set = set()
        by_id = {route.id: (route.id, _method_table(route, runner, self, pulled), route)
                 for route in self.router.routes()}
        by_id.update({route.id: (route.id, _method_table(route), route) for route in reserved})
        lookup = {route.template: by_id[route.id]
                  for route in (*self.router.exact.values(), *reserved)}.get
        return _Dispatch(by_id, lookup, self.router.match_pattern,
                         runner.pooled_body if runner is not None else None,
                         frozenset(pulled))

    def route_names(self) -> dict[int, str]:
        """route id -> template: the metrics' route label."""
        return self.router.names()

    def body_streams(self, runner, default_limit: int) -> Callable | None:
        """For the server: req -> BodyIn when req's route streams its body in (stream=True),
        else None; None when no route does (heads are then not announced at all)."""
        limits = {(route.id, method): opts.get("max_body_size") or default_limit
                  for route in self.router.routes()
                  for method, opts in route.options.items() if opts.get("stream")}
        if not limits:
            return None
        match = self.router.match

        def on_head(req):
            route, _ = match(req.path)
            limit = limits.get((route.id, req.method)) if route is not None else None
            if limit is None:
                return None
            body_in = BodyIn(limit)
            req.body_stream = RequestStream(body_in, runner.aio)
            return body_in
        return on_head

    def run(self, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
        """Serve this app from a script: `fastsock.run(app, ...)` under another name."""
        from fastsock.config import Config
        from fastsock.server import serve  # the server only when one is started
        serve(Config(host=host, port=port, **options), self)
