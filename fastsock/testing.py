"""Test an app without a server: `TestClient(app)` is an httpx.Client whose transport hands each
request, as HTTP/1.1 bytes, to the same connection, parser, dispatcher, hooks and writer the
server runs — no socket, no process. The app is a fastsock App, a WSGI or an ASGI app (FastAPI,
Flask, Django...), served through the same adapters as under the server. Async handlers (and
ASGI apps) run on the client's own asyncio loop, threaded ones (and WSGI apps) in its own thread
pool; startup hooks (an ASGI app's lifespan startup) run on entering the client, or at the first
request, shutdown hooks (lifespan shutdown) on closing it; a failing one raises there.

    from fastsock.testing import TestClient

    with TestClient(app) as client:
        assert client.get("/users/7").json() == {"id": 7}

As Starlette's TestClient, an exception the app raised — one the server would log with its
traceback and answer 500 (or cut a stream for) — is raised in the test
(`raise_server_exceptions=False`: the response the server would send). A request that has no
answer within httpx's read timeout is an httpx.ReadTimeout; its handler is told the client went
away (a task is cancelled; a thread cannot be stopped, and runs on), and the next request does
not wait for it. (An exception that abandoned handler raises later, while another request is
being answered, is raised in that one: the log record it comes from does not say whose it is.)

`client.websocket_connect(path)` opens a WebSocket to the app the same way: see
fastsock.testing_websocket.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable

import h11
import httpx

from fastsock._conn import Connection
from fastsock._context import Context
from fastsock._message import Request
from fastsock.adapters.kinds import adapt, kind_of
from fastsock.adapters.protocol import ServableApp
from fastsock.config import Config
from fastsock.hooks import run_lifecycle
from fastsock.runner import Runner
from fastsock.testing_websocket import WebSocketDenied, WebSocketTestSession

__all__ = ["TestClient", "WebSocketDenied", "WebSocketTestSession"]

# the connection's states in which the response is not all written yet
_ANSWERING = frozenset({"wait", "stream_in", "stream_out"})


class _Tasks:
    """Stands in for the server's loop in the runner: it counts tasks, and keeps what the
    thread pool hands back until the transport runs it (as the loop's inbox does)."""

    def __init__(self):
        self.tasks = 0
        self.ws_handlers = 0
        self.aio = None
        self.inbox: collections.deque = collections.deque()

    def task_done(self) -> None:
        self.tasks -= 1

    def call_soon_threadsafe(self, fn, arg) -> None:
        self.inbox.append((fn, arg))

    def run_inbox(self) -> None:
        while self.inbox:
            fn, arg = self.inbox.popleft()
            fn(arg)


class _Errors(logging.Handler):
    """What the server logs at ERROR on fastsock.error while it is attached: the failures it
    would answer 500 for (or cut a stream for), with their exceptions."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> _Errors:
        self.records = []
        logging.getLogger("fastsock.error").addHandler(self)
        return self

    def __exit__(self, *exc_info) -> None:
        logging.getLogger("fastsock.error").removeHandler(self)

    def first_exception(self) -> BaseException | None:
        for record in self.records:
            if record.exc_info and record.exc_info[1] is not None:
                return record.exc_info[1]
        return None


class _AppTransport(httpx.BaseTransport):
    def __init__(self, app, config: Config, client: tuple[str, int],
                 raise_server_exceptions: bool):
        kind_of(app, config.interface)      # ValueError now for what is not an app
        self.raw_app, self.config, self.client = app, config, client
        self.raise_server_exceptions = raise_server_exceptions
        self.limits = config.limits()
        self.tasks = _Tasks()
        self.runner = self._new_runner()
        self.app: ServableApp | None = None     # start() makes them, for each life of it
        self.dispatch: Callable[[Request], object] | None = None
        self.on_head: Callable[[Request], object] | None = None
        self.started = False
        self.errors = _Errors()
        self.sessions: set[WebSocketTestSession] = set()   # the WebSockets open

    def _new_runner(self) -> Runner:
        config = self.config
        runner = Runner(self.tasks, threads=config.threads, backlog=config.thread_backlog,
                        timeout=config.handler_timeout,
                        threads_by_default=config.run_sync == "thread")
        runner.websockets = config.websockets()
        return runner

    def start(self) -> None:
        if self.started:
            return
        if self.app is not None:        # entered again after a close: a new runner
            self.tasks = _Tasks()
            self.runner = self._new_runner()
        # a WSGI or ASGI app through its adapter, as a worker serves it
        app = self.app = adapt(self.raw_app, self.config, self.runner, 1)
        with self.errors:
            try:
                run_lifecycle(list(app.startup), self.runner)
            except BaseException as e:
                original = self._lifespan_exception()
                self._stop_runner()
                if original is not None:    # what the app raised, as Starlette's client does
                    raise original from e
                raise
        self.dispatch = app.dispatcher((), self.runner)
        self.on_head = app.body_streams(self.runner, self.limits["max_body_size"])
        self.started = True

    def close(self) -> None:
        for session in list(self.sessions):     # left open: hung up, their handlers told
            session._end()
        if self.started and self.app is not None:
            self.started = False
            with self.errors:
                try:
                    run_lifecycle(list(self.app.shutdown), self.runner)
                finally:
                    self._stop_runner()
            failed = self.errors.first_exception()
            if failed is not None:
                raise failed
            if self.errors.records:         # e.g. lifespan.shutdown.failed, its message
                raise RuntimeError(self.errors.records[0].getMessage())

    def _lifespan_exception(self) -> BaseException | None:
        """What an ASGI app's lifespan task raised at startup (after, or instead of, its
        lifespan.startup.failed), or None."""
        task = getattr(getattr(self.app, "_lifespan", None), "task", None)
        if task is None:
            return None
        if not task.done():             # it says failed, then raises: let it
            self.runner.aio.run_until_complete(asyncio.wait([task], timeout=1.0))
        if task.done() and not task.cancelled():
            return task.exception()
        return None

    def _stop_runner(self) -> None:
        self.runner.close()
        aio = self.runner._aio
        if aio is not None and not aio.is_closed():
            pending = asyncio.all_tasks(aio)
            for task in pending:
                task.cancel()
            if pending:
                aio.run_until_complete(asyncio.wait(pending, timeout=1.0))
            aio.close()
            try:            # the runner made it the thread's loop: not a closed one now
                if asyncio.get_event_loop_policy().get_event_loop() is aio:
                    asyncio.set_event_loop(None)
            except RuntimeError:
                pass

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.start()
        ctx = Context(self.limits)
        ctx.on_stream = self.runner.start_feed
        ctx.on_head = self.on_head
        conn = Connection(ctx, self._with_client)
        # a task or thread job: let it finish, within the client's read timeout
        wait = (request.extensions.get("timeout") or {}).get("read")
        deadline = None if wait is None else time.monotonic() + wait
        with self.errors:
            self.tasks.run_inbox()          # what finished since (an abandoned handler's)
            out = conn.feed(_serialize(request))
            while conn.state_name in _ANSWERING:
                if deadline is not None and time.monotonic() > deadline:
                    conn.hang_up()          # the handler is told the client went away
                    raise httpx.ReadTimeout(f"the app did not answer within {wait} s",
                                            request=request)
                self.runner.aio.run_until_complete(asyncio.sleep(0.001))
                self.tasks.run_inbox()
                out += conn.feed(b"")
        failed = self.errors.first_exception()
        if failed is not None and self.raise_server_exceptions:
            raise failed
        return _parse(out, request)

    def _with_client(self, req):
        req.client = self.client
        assert self.dispatch is not None            # handle_request() started the app
        return self.dispatch(req)


def _serialize(request: httpx.Request) -> bytes:
    body = request.read()
    lines = [f"{request.method} {request.url.raw_path.decode('ascii')} HTTP/1.1".encode()]
    for name, value in request.headers.raw:
        if name.lower() not in (b"content-length", b"transfer-encoding"):
            lines.append(name + b": " + value)
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _parse(raw: bytes, request: httpx.Request) -> httpx.Response:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=request.method, target=request.url.raw_path,
                          headers=[("Host", "testserver")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")          # what the server sent is all there is
    response, body = None, b""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:     # e.g. a stream cut mid-body: as httpx says it
            raise httpx.RemoteProtocolError(str(e), request=request) from None
        if isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)) or \
                event is h11.NEED_DATA or event is h11.PAUSED:
            break
    if response is None:
        raise httpx.RemoteProtocolError(f"no response from the app: {raw[:200]!r}",
                                        request=request)
    return httpx.Response(response.status_code, headers=response.headers, content=body,
                          request=request)


class TestClient(httpx.Client):
    """An httpx.Client that calls the app in this process (see the module's doc)."""

    __test__ = False                # not a pytest test class, despite its name

    def __init__(self, app, base_url: str = "http://testserver",
                 client: tuple[str, int] = ("testclient", 50000),
                 raise_server_exceptions: bool = True, **options):
        # server options go to the Config; `timeout` stays httpx's (no watchdog runs here)
        config = Config(**{k: options.pop(k) for k in list(options)
                           if k in Config.__dataclass_fields__ and k != "timeout"})
        self._app_transport = _AppTransport(app, config, client, raise_server_exceptions)
        super().__init__(transport=self._app_transport, base_url=base_url, **options)

    def __enter__(self):
        self._app_transport.start()
        return super().__enter__()

    def websocket_connect(self, path: str, subprotocols=None, headers=None,
                          timeout: float = 10.0) -> WebSocketTestSession:
        """Open a WebSocket to the app (see fastsock.testing_websocket): a session to use in
        a `with` block. WebSocketDenied (a WebSocketDisconnect) when the app answers the
        handshake with something else than 101; what the app raised, as for requests."""
        return WebSocketTestSession(self._app_transport, path, subprotocols, headers, timeout)

    def close(self) -> None:
        try:
            self._app_transport.close()
        finally:
            super().close()
