"""ASGI 3 applications (FastAPI, Starlette, Django's ASGI handler, ...) served by fastsock.

Each request is a task on the worker's asyncio loop: `app(scope, receive, send)`. The worker's
asyncio loop runs for the worker's whole life (an ASGI app may keep tasks of its own going), with
the epoll loop turning inside it. The response goes out whole when the app sends its body in
one message (Content-Length), else chunked as it is sent, with back-pressure: send() waits while
the client is behind. The request body is read whole up to --max-body-size, or, past
common.STREAM_ABOVE bytes or chunked, streamed to receive() as it arrives. When the client goes,
receive() answers http.disconnect and send() raises ClientDisconnected (an OSError), as ASGI
2.4 says.
"""
from __future__ import annotations

import asyncio
import logging

from fastsock._handoff import Deferred
from fastsock._shared import KIND_ASGI
from fastsock._wshandshake import subprotocols
from fastsock.adapters.asgi_ws import WebSocketCycle
from fastsock.adapters.common import (
    ClientDisconnected,
    app_response,
    head_body,
    stream_large_bodies,
)
from fastsock.adapters.routelabels import RouteLabels
from fastsock.dispatch import answer_reserved
from fastsock.logs import REQUEST
from fastsock.responses import GATEWAY_TIMEOUT, SERVER_ERROR, SHUTTING_DOWN
from fastsock.websocket import start_websocket

error_log = logging.getLogger("fastsock.error")

ASGI = {"version": "3.0", "spec_version": "2.4"}
_DISCONNECT = {"type": "http.disconnect"}



class ASGIApp:
    """An ASGI 3 application, as the server serves it (one per worker)."""

    def __init__(self, app, config, runner):
        self.app, self.runner = app, runner
        self.labels = RouteLabels(app)
        self.root_path = config.root_path
        self.lifespan = config.lifespan
        self.max_body_size = config.max_body_size
        self.graceful_timeout = config.graceful_timeout
        self.server = (config.uds, None) if config.uds else (config.host, config.port)
        self.state: dict = {}                   # lifespan's state, copied into each request
        self._lifespan = None
        self.startup = [self._startup]
        self.shutdown = [self._shutdown]

    def route_names(self) -> dict[int, str]:
        return self.labels.names

    # -- lifespan: once per worker

    def _startup(self) -> None:
        self.runner.hold_aio()          # the app's loop runs all the time from here on
        if self.lifespan == "off":
            return
        self._lifespan = _Lifespan(self.app, self.state, self.runner.aio)
        reply = self._lifespan.run("startup", None)
        if reply is None:
            if self.lifespan == "on":
                raise RuntimeError("the ASGI app does not take the lifespan scope "
                                   "(--lifespan on)")
            self._lifespan = None       # not every app speaks lifespan: serve without it
        elif reply["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the ASGI app's lifespan startup failed: "
                               f"{reply.get('message', '')}")

    def _shutdown(self) -> None:
        if self._lifespan is None:
            return
        reply = self._lifespan.run("shutdown", self.graceful_timeout)
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            error_log.error("the ASGI app's lifespan shutdown failed: %s",
                            reply.get("message", ""))

    # -- requests

    def body_streams(self, runner, default_limit: int):
        """A large or chunked body streams to receive() as it arrives."""
        return stream_large_bodies(self.max_body_size)

    def dispatcher(self, reserved, runner):
        reserved_answer = answer_reserved(reserved)
        app, aio, labels = self.app, runner.aio, self.labels
        root_path, server, state = self.root_path, self.server, self.state
        raw_root = root_path.encode("latin-1")
        timeout = runner.timeout
        fallback = labels.fallback

        def dispatch(req):
            answer = reserved_answer(req)
            if answer is not None:
                return answer
            headers = req.raw_headers
            if req.websocket:
                return self._websocket(req, runner)
            scope = {
                "type": "http", "asgi": ASGI, "http_version": req.http_version,
                "method": req.method, "scheme": req.scheme,
                "path": root_path + req.path if root_path else req.path,
                "raw_path": raw_root + req.raw_path if root_path else req.raw_path,
                "query_string": req.query_string, "root_path": root_path,
                "headers": headers, "client": req.client, "server": server,
                "state": state.copy() if state else {},
            }
            if req.tls is not None:
                scope["extensions"] = {"tls": req.tls.asgi()}
            req.route_id = fallback         # until the app tells its route
            deferred = Deferred(KIND_ASGI)
            cycle = _Cycle(req, deferred, scope, labels, aio)
            token = REQUEST.set(req)        # the app's task has its request (its logs)
            try:
                cycle.task = aio.create_task(cycle.run(app))
            finally:
                REQUEST.reset(token)
            deferred.on_cancel = cycle.gone
            if timeout:
                cycle.timer = aio.call_later(timeout, cycle.expire)
            return deferred
        return dispatch


    def _websocket(self, req, runner):
        """An opening handshake: the app's websocket scope (a WebSocketCycle)."""
        root_path = self.root_path
        scope = {
            "type": "websocket", "asgi": ASGI, "http_version": req.http_version,
            "scheme": "wss" if req.scheme == "https" else "ws",
            "path": root_path + req.path if root_path else req.path,
            "raw_path": root_path.encode("latin-1") + req.raw_path if root_path
            else req.raw_path,
            "query_string": req.query_string, "root_path": root_path,
            "headers": req.raw_headers, "client": req.client, "server": self.server,
            "subprotocols": subprotocols(req),
            "state": self.state.copy() if self.state else {},
            "extensions": {"websocket.http.response": {}},
        }
        if req.tls is not None:
            scope["extensions"]["tls"] = req.tls.asgi()
        req.route_id = self.labels.fallback
        app = self.app

        def run(channel):
            return WebSocketCycle(req, scope, self.labels, channel).run(app)
        return start_websocket(req, runner, run, "ASGI app")



class _Cycle:
    """One request's way through the app: what receive() hands in, what send() hands out."""

    def __init__(self, req, deferred, scope, labels, aio):
        self.req, self.deferred, self.scope, self.labels, self.aio = (
            req, deferred, scope, labels, aio)
        # the rest as the compiled class's C attributes start (asgi.pxd), and as the pure
        # build (FASTSOCK_PURE=1) needs them
        self.task: asyncio.Task | None = None           # set by dispatch, at once
        self.timer: asyncio.TimerHandle | None = None
        self.status: int | None = None                  # with started
        self.headers = None
        self.feed = None
        self.recv_waiter: asyncio.Future | None = None
        self.send_waiter: asyncio.Future | None = None
        self.body_done = self.is_gone = self.started = self.complete = self.closed = False
        self.told_gone = False                          # receive() said http.disconnect

    # -- what the app calls

    async def receive(self):
        if not self.body_done:
            body_in = self.req.body_stream
            if body_in is None:
                self.body_done = True
                return {"type": "http.request", "body": self.req.body, "more_body": False}
            while not self.is_gone:
                try:
                    chunk = body_in.take()
                except StopAsyncIteration:
                    self.body_done = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                except ConnectionError:     # the client went, or the server refused the
                    self.body_done = True   # body (413): either way the app has its answer
                    self.told_gone = True
                    return _DISCONNECT
                if chunk is not None:
                    return {"type": "http.request", "body": chunk, "more_body": True}
                arrived = self.recv_waiter = self.aio.create_future()
                body_in.waiter = self._wake_receive
                await arrived
            self.told_gone = True
            return _DISCONNECT
        if not (self.is_gone or self.complete):
            self.recv_waiter = self.aio.create_future()
            await self.recv_waiter          # until the client goes or the response is sent
        return _DISCONNECT

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started or self.complete:   # (started: status is an int, below)
                raise RuntimeError("ASGI: http.response.body " + (
                    "after the response was complete" if self.started
                    else "before http.response.start"))
            if self.is_gone:
                raise ClientDisconnected("the client went away")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.feed is None and not self.closed:
                if not more:
                    if not body and self.req.method == "HEAD":
                        body = head_body(self.headers)
                    response = app_response(self.status, self.headers, body)  # type: ignore[arg-type]
                    self._finish()
                    self.deferred.complete(response)
                    return
                # streamed: the connection writes the head, then attach_feed() gives the way in
                self.deferred.complete(app_response(self.status, self.headers, self))  # type: ignore[arg-type]
            feed = self.feed
            if feed is None:                # HEAD (no body is sent), or the client went
                if not more:
                    self._finish()
                return
            if body and not feed.write(body) and not feed.closed:
                room = self.send_waiter = self.aio.create_future()
                feed.on_drain = self._wake_send
                await room
                if self.is_gone:
                    raise ClientDisconnected("the client went away")
            if not more:
                self._finish()
                feed.end()
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("ASGI: a second http.response.start")
            self.status = message["status"]
            if type(self.status) is not int:
                raise TypeError(f"ASGI: the status is a {type(self.status).__name__}, not int")
            self.headers = message.get("headers", [])
            self.started = True
            self.req.route_id = self.labels.for_scope(self.scope)
        else:
            raise ValueError(f"ASGI: unexpected message {kind!r} on an http scope")

    # -- the stream the connection sees (a response sent in several messages)

    def attach_feed(self, feed) -> None:
        self.feed = feed
        feed.on_cancel = self.gone

    def __aiter__(self):
        return self

    async def __anext__(self):          # never pulled: send() pushes into the feed
        raise StopAsyncIteration

    def close(self) -> None:
        """The connection will not stream (HEAD): to the app that is the client gone (issue
        19): receive() answers http.disconnect and its next send raises, so the task ends."""
        self.closed = True
        self.gone()

    # -- the connection's and the task's calls

    def _finish(self) -> None:
        self.complete = True
        if self.timer is not None:
            self.timer.cancel()
        self._wake_receive()

    def gone(self) -> None:
        """The client went away (or will get no more of this response)."""
        self.is_gone = True
        self.feed = None
        self._wake_receive()
        self._wake_send()
        body_in = self.req.body_stream
        if body_in is not None and body_in.waiter is not None:
            body_in._wake()

    def _wake_receive(self) -> None:
        waiter = self.recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_send(self) -> None:
        waiter = self.send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        """--handler-timeout: 504 unless the response has begun, and the task cancelled."""
        if self.feed is None:
            self.deferred.complete(GATEWAY_TIMEOUT)
        self.task.cancel()  # type: ignore[union-attr]

    async def run(self, app):
        """The app's call, and what follows it: its outcome handled here, in the task,
        rather than in a done-callback (one scheduling fewer per request)."""
        exc = None
        cancelled = False
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            cancelled = True
            if not self.complete:
                self.deferred.complete(SHUTTING_DOWN)   # only reaches a client still there
        except Exception as e:          # noqa: BLE001  (the app's error: ended() answers it)
            exc = e
        self.ended(exc, cancelled)

    def ended(self, exc, cancelled: bool) -> None:
        if self.timer is not None:
            self.timer.cancel()
        req = self.req
        if exc is not None:
            # what the app raised once told the client was gone (Starlette's ClientDisconnect),
            # or the client's body refused (413: answered and logged by the server): no
            # failure of the app's
            if self.is_gone and (self.told_gone or _from_disconnect(exc)):
                error_log.debug("%s %s: the client went away", req.method, req.path,
                                exc_info=exc)
            else:
                error_log.error("ASGI app failed: %s %s", req.method, req.path, exc_info=exc)
        if not self.complete:
            self.complete = True
            if self.feed is not None:       # mid-response: cut it, never end it cleanly
                self.feed.fail("the ASGI app ended mid-response")
            elif not self.is_gone:
                if exc is None and not cancelled:
                    error_log.error("ASGI app returned without a response: %s %s",
                                    req.method, req.path)
                self.deferred.complete(SERVER_ERROR)
        self._wake_receive()


def _from_disconnect(exc: BaseException | None) -> bool:
    """The app's exception is send()'s OSError, or one raised while handling it (Starlette's
    ClientDisconnect): the client gone, not a failure worth a traceback."""
    for _ in range(4):
        if exc is None:
            return False
        if isinstance(exc, OSError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retrieve(task) -> None:
    if not task.cancelled():
        task.exception()


class _Lifespan:
    """The lifespan scope: one task for the worker's life, told startup, later shutdown."""

    def __init__(self, app, state: dict, aio: asyncio.AbstractEventLoop):
        self.app, self.state, self.aio = app, state, aio
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.reply: asyncio.Future | None = None
        self.task: asyncio.Task | None = None
        self.received = False           # the app took an event: it speaks lifespan

    async def receive(self):
        message = await self.inbox.get()
        self.received = True
        return message

    async def send(self, message) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(message)

    def run(self, event: str, timeout: float | None):
        """Tell the app `event`; -> its answer, or None if it ended (or raised) instead."""
        aio = self.aio
        self.reply = aio.create_future()
        self.inbox.put_nowait({"type": f"lifespan.{event}"})
        if self.task is None:
            scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
            self.task = aio.create_task(self.app(scope, self.receive, self.send))
            self.task.add_done_callback(_retrieve)      # its exception is logged below
        aio.run_until_complete(asyncio.wait([self.reply, self.task], timeout=timeout,
                                            return_when=asyncio.FIRST_COMPLETED))
        if self.reply.done():
            return self.reply.result()
        if self.task.done():
            exc = None if self.task.cancelled() else self.task.exception()
            if event == "startup" and self.received:     # it took startup, then failed
                return {"type": "lifespan.startup.failed",
                        "message": f"{type(exc).__name__}: {exc}" if exc is not None
                        else "the lifespan ended without answering startup"}
            if event == "startup":
                error_log.info("the ASGI app does not take the lifespan scope (%s): serving "
                               "without it", exc if exc is not None else "it returned")
            elif exc is not None:
                error_log.error("the ASGI app's lifespan failed at shutdown", exc_info=exc)
            return None
        error_log.error("the ASGI app's lifespan %s did not answer in %ss", event, timeout)
        self.task.cancel()
        return None

