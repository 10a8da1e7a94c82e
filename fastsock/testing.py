"""Test an app without a server: `TestClient(app)` is an httpx.Client whose transport hands each
request, as HTTP/1.1 bytes, to the same connection, parser, dispatcher, hooks and writer the
server runs — no socket, no process. Async handlers run on the client's own asyncio loop and
threaded ones in its own thread pool; startup hooks run on entering the client (or at the
first request), shutdown hooks on closing it.

    from fastsock.testing import TestClient

    with TestClient(app) as client:
        assert client.get("/users/7").json() == {"id": 7}
"""
from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import h11
import httpx

from fastsock._conn import Connection
from fastsock._context import Context
from fastsock._message import Request
from fastsock.config import Config
from fastsock.hooks import run_lifecycle
from fastsock.runner import Runner

__all__ = ["TestClient"]


class _Tasks:
    """Stands in for the server's loop in the runner: it counts tasks, and keeps what the
    thread pool hands back until the transport runs it (as the loop's inbox does)."""

    def __init__(self):
        self.tasks = 0
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


class _AppTransport(httpx.BaseTransport):
    def __init__(self, app, config: Config, client: tuple[str, int]):
        self.app, self.client = app, client
        self.tasks = _Tasks()
        self.runner = Runner(self.tasks, threads=config.threads, backlog=config.thread_backlog,
                             timeout=config.handler_timeout,
                             threads_by_default=config.run_sync == "thread")
        self.limits = config.limits()
        self.dispatch: Callable[[Request], object] | None = None     # start() makes them
        self.on_head = None
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            run_lifecycle(self.app.startup, self.runner)
            self.dispatch = self.app.dispatcher((), self.runner)
            self.on_head = self.app.body_streams(self.runner, self.limits["max_body_size"])

    def close(self) -> None:
        if self.started:
            self.started = False
            run_lifecycle(self.app.shutdown, self.runner)
            self.runner.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.start()
        ctx = Context(self.limits)
        ctx.on_stream = self.runner.start_feed
        ctx.on_head = self.on_head
        conn = Connection(ctx, self._with_client)
        out = conn.feed(_serialize(request))
        # a task or thread job: let it finish, within the client's read timeout
        wait = (request.extensions.get("timeout") or {}).get("read")
        deadline = None if wait is None else time.monotonic() + wait
        while ctx.waiting or self.tasks.tasks:
            if deadline is not None and time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"the app did not answer within {wait} s",
                                        request=request)
            self.runner.aio.run_until_complete(asyncio.sleep(0.001))
            self.tasks.run_inbox()
            out += conn.feed(b"")
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
        event = conn.next_event()
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
                 client: tuple[str, int] = ("testclient", 50000), **options):
        # server options go to the Config; `timeout` stays httpx's (no watchdog runs here)
        config = Config(**{k: options.pop(k) for k in list(options)
                           if k in Config.__dataclass_fields__ and k != "timeout"})
        self._app_transport = _AppTransport(app, config, client)
        super().__init__(transport=self._app_transport, base_url=base_url, **options)

    def __enter__(self):
        self._app_transport.start()
        return super().__enter__()

    def close(self) -> None:
        self._app_transport.close()
        super().close()
