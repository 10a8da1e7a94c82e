"""WebSockets for handlers: the native `WebSocket` an `@app.websocket` handler gets, and the
way every WebSocket (native or ASGI) is started, accepted, waited on and ended. The protocol
is the compiled rooms' (_wshandshake, _wsframes, _wsdeflate, _wsconn): this layer never reads
a frame, it hands messages over."""
from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from fastsock._handoff import Deferred
from fastsock._message import Request, Response
from fastsock._requestids import ECHO_ID, echo_of
from fastsock._wsawait import WebSocketDisconnect, receiving, sending
from fastsock._wsconn import WsOptions, WsSession
from fastsock._wshandshake import (
    VERSION_HEADER,
    extensions,
    refusal,
    request_accept_value,
    subprotocols,
)
from fastsock.logs import REQUEST

__all__ = ["WebSocket", "WebSocketDisconnect"]

error_log = logging.getLogger("fastsock.error")

_WHY = {400: b"Bad WebSocket handshake\n", 426: b"WebSocket version 13 only\n"}
NOT_AN_UPGRADE = "Upgrade does not name websocket"     # _wshandshake's reason for a plain GET


class WebSockets:
    """One worker's WebSockets: their options, how many are open, and the refusals."""

    def __init__(self, options: WsOptions | None = None, max_connections: int = 10000,
                 handshake_timeout: float = 10.0):
        self.options = options or WsOptions()
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.open = 0               # started (handshake on the way) and not yet ended
        self.waiting: set[Channel] = set()     # handshakes their handler has not answered
        # handshakes still in the app's layers (wslayers._Handshake: its deferred, cancel())
        self.layered: set[Any] = set()
        self.draining = False       # the worker drains: every handshake from now on is a 503

    def refusal(self, req: Request) -> Response | None:
        """The answer to an opening handshake that is not served, or None."""
        status, why = refusal(req)
        if status:
            if why == NOT_AN_UPGRADE:       # a plain request to a WebSocket route
                return _UPGRADE_REQUIRED
            error_log.info("refused a WebSocket handshake from %s: %d %s", req.client[0]
                           if req.client else "?", status, why)
            headers = [VERSION_HEADER] if status == 426 else []
            return Response(_WHY.get(status, b"Bad WebSocket handshake\n"), status,
                            headers=headers, content_type="text/plain")
        if self.draining:               # (dispatched after the drain began: pipelined, or
            return _DRAINING            # held in the app's layers until now)
        if self.open >= self.max_connections:
            error_log.warning("refused a WebSocket: %d open in this worker (--ws-max-connections)",
                              self.open)
            return Response(b"Too many WebSockets\n", 503, headers=[("Retry-After", "1")],
                            content_type="text/plain")
        return None

    def session(self, req: Request) -> WsSession:
        """A WebSocket's session; it holds its place in `open` until it closes (or, never
        attached, until its handler ends: Channel.__call__)."""
        session = WsSession(self.options, request_accept_value(req), extensions(req))
        session.on_closed = self        # (itself, not a bound method: 64 bytes per WebSocket)
        self.open += 1
        return session

    def __call__(self, session: WsSession) -> None:
        """A session closed: its place is free."""
        self.open -= 1

    def refuse_waiting(self) -> None:
        """The worker drains: the handshakes still waiting for their handler get 503 with
        Retry-After now (the client reconnects to another worker or pod at once; accepted,
        they would get 1001 at once) and their handlers are cancelled; so do those still in
        the app's layers (their layers cancelled), and every handshake after them."""
        self.draining = True
        for channel in list(self.waiting):
            if not channel.answered:
                channel.deny(_DRAINING)
                channel.on_timeout()
        self.waiting.clear()
        for handshake in list(self.layered):
            if not handshake.deferred.is_done:      # (a 101 given: it opens, then 1001)
                handshake.deferred.complete(_DRAINING)
                handshake.cancel()
        self.layered.clear()


class Answers(Protocol):
    """Where a handshake's answer goes: the connection's Deferred, or the app's layers."""

    def complete(self, result) -> None: ...


def with_echo(req: Request, headers) -> list:
    """The 101's headers: the app's, and the request id echoed as on any response (the
    request-id layer asked for it: req.response_headers is ECHO_ID)."""
    headers = list(headers) if headers else []
    if req.response_headers is ECHO_ID:
        echo, _ = echo_of(req)      # (an id that cannot go out as it is: not echoed)
        if echo is not None:
            headers.append(("X-Request-ID", echo.decode("latin-1")))
    return headers


class Channel:
    """One WebSocket's way between the connection and a handler (native or ASGI): accept or
    deny the handshake, receive, send with back-pressure, close. On the loop's thread.
    Slotted, and the handler's task's done callback itself (__call__): each idle WebSocket
    holds one."""

    __slots__ = ("req", "session", "aio", "deferred", "handshake_timeout", "accepted",
                 "answered", "headers", "opened", "on_failure", "close_when_open", "timer",
                 "task", "loop", "what", "sockets")

    def __init__(self, req: Request, session: WsSession, deferred: Answers,
                 aio: asyncio.AbstractEventLoop, handshake_timeout: float):
        self.req, self.session, self.aio = req, session, aio
        self.deferred: Answers | None = deferred      # let go once answered
        session.aio = aio
        self.handshake_timeout = handshake_timeout
        self.accepted = False
        self.answered = False       # accepted, or denied with a response
        self.headers: list | tuple = ()     # the app's, for the 101
        # the app's layers (wslayers): the 101 goes out once they are through (opened's
        # result True; False: they denied it), what the handler raised before that is theirs
        self.opened: asyncio.Future | None = None
        self.on_failure: Callable[[BaseException], None] | None = None
        self.close_when_open = 0    # the handler ended before opened: close with this code
        self.timer = aio.call_later(handshake_timeout, self._handshake_expired) \
            if handshake_timeout else None
        self.task: asyncio.Task | None = None      # the handler's (start_websocket's)
        self.loop = None                            # ... and what its end counts down
        self.sockets: WebSockets | None = None      # the registry, while it waits in it
        self.what = ""

    def accept(self, subprotocol: str | None = None, headers=None) -> None:
        if self.answered:
            raise RuntimeError("this WebSocket was already accepted or refused")
        # ValueError: a header it cannot send
        self.session.agree(subprotocol, with_echo(self.req, headers))
        self.headers = list(headers) if headers else ()
        self.accepted = self.answered = True
        self._stop_timer()
        self._answer(self.session)

    async def ready(self) -> None:
        """Behind the app's layers: wait until the 101 is out; WebSocketDisconnect if they
        denied the handshake after the handler accepted it."""
        opened = self.opened
        if opened is None:
            return
        if not opened.done():
            await asyncio.wait((opened,))   # (not awaited itself: a cancel would cancel it)
        if not opened.result():
            raise WebSocketDisconnect(1006, "the handshake was denied")

    def deny(self, response: Response) -> None:
        if self.answered:
            raise RuntimeError("this WebSocket was already accepted or refused")
        self.answered = True
        self._stop_timer()
        self._answer(response)

    def receive(self, stop: bool = False) -> Coroutine[Any, Any, str | bytes]:
        """await it: the next message; WebSocketDisconnect once closed (stop: StopAsyncIteration
        instead). Once open, no coroutine: a compiled awaitable (_wsawait.Awaiting), in which
        an idle WebSocket waits with a Future and no frame."""
        if self.is_open():
            return receiving(self.session, stop)
        return self._when_open(receiving(self.session, stop), stop)

    def send(self, message) -> Coroutine[Any, Any, None]:
        """await it: message framed out, waiting while the output is over its bound."""
        if self.is_open():
            return sending(self.session, message)
        return self._when_open(sending(self.session, message), False)

    def is_open(self) -> bool:
        """The 101 is out (no app layers, or they are through and let it go)."""
        opened = self.opened
        return opened is None or (opened.done() and not opened.cancelled()
                                  and opened.result() is True)

    async def _when_open(self, then, stop: bool):
        try:
            await self.ready()
        except WebSocketDisconnect:
            then.close()
            if stop:
                raise StopAsyncIteration from None
            raise
        return await then

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not 1000 <= code <= 4999 or code in (1004, 1005, 1006, 1015):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is at most 123 bytes of UTF-8")
        self.session.close(code, reason)

    def ended(self, exc: BaseException | None, cancelled: bool, what: str) -> None:
        """The handler is done: a handshake it never answered gets 403 (or 500 if it failed);
        an open WebSocket it leaves is closed (1000, or 1011 after an error)."""
        self._stop_timer()
        failed = exc is not None and not isinstance(exc, WebSocketDisconnect)
        if exc is not None and failed and not self.answered and self.on_failure is not None:
            self.answered = True
            self.on_failure(exc)    # the app's error handlers, else logged there
            return
        if failed:
            error_log.error("WebSocket handler %s failed", what, exc_info=exc)
        if not self.answered:
            self.answered = True
            self._answer(_SERVER_ERROR if failed or cancelled else _FORBIDDEN)
        elif self.accepted:
            if self.opened is not None and not self.opened.done():
                self.close_when_open = 1011 if failed else 1000
            else:
                self.session.close(1011 if failed else 1000, "")

    def _handshake_expired(self) -> None:
        self.timer = None
        if not self.answered:
            error_log.warning("a WebSocket handler neither accepted nor refused within %gs "
                              "(--ws-handshake-timeout)", self.handshake_timeout)
            self.answered = True
            self._answer(_HANDSHAKE_TIMEOUT)
            self.on_timeout()

    def on_timeout(self) -> None:
        if self.task is not None:           # cancel the handler
            self.task.cancel()

    def _answer(self, result) -> None:
        if self.sockets is not None:        # answered: no longer waiting
            self.sockets.waiting.discard(self)
            self.sockets = None
        deferred, self.deferred = self.deferred, None
        if deferred is not None:
            deferred.complete(result)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def __call__(self, task: asyncio.Task) -> None:
        """The handler's task is done (start_websocket): its WebSocket ends, the counts go
        down."""
        try:
            cancelled = task.cancelled()
            self.ended(None if cancelled else task.exception(), cancelled, self.what)
        finally:
            if self.sockets is not None:    # (its layers answered, or it never did)
                self.sockets.waiting.discard(self)
                self.sockets = None
            session = self.session
            if session.on_closed is not None and not session.attached:
                free, session.on_closed = session.on_closed, None   # never opened: its
                free(session)                                       # place is free now
            if self.loop is not None:
                self.loop.ws_handlers -= 1
                self.loop.task_done()


_FORBIDDEN = Response(b"WebSocket refused\n", 403, content_type="text/plain")
_SERVER_ERROR = Response(b"Internal Server Error\n", 500, content_type="text/plain")
_HANDSHAKE_TIMEOUT = Response(b"WebSocket handshake timed out\n", 504,
                              content_type="text/plain")
_DRAINING = Response(b"Server shutting down\n", 503, headers=[("Retry-After", "1")],
                     content_type="text/plain")


class WebSocket:
    """What an `@app.websocket` handler gets. Accepted on first use unless the handler calls
    accept() (to pick a subprotocol or add headers) or close() before it.

        @app.websocket("/echo")
        async def echo(ws: WebSocket):
            async for message in ws:
                await ws.send(message)
    """

    __slots__ = ("request", "_channel", "_subprotocols")

    def __init__(self, request: Request, channel: Channel, offered: list[str] | None = None):
        self.request = request
        self._channel = channel
        self._subprotocols = offered        # None: read off the request when asked

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order of preference."""
        if self._subprotocols is None:
            self._subprotocols = subprotocols(self.request)
        return self._subprotocols

    @property
    def subprotocol(self) -> str | None:
        return self._channel.session.subprotocol

    @property
    def close_code(self) -> int | None:
        """Once closed: the peer's code, or the server's (see WebSocketDisconnect)."""
        session = self._channel.session
        return session.close_code if session.closed else None

    async def accept(self, subprotocol: str | None = None, headers=None) -> None:
        """Answer the handshake with 101. subprotocol: one the client offered; headers:
        (name, value) pairs added to the response. With the app's middleware or hooks, it
        returns once they are through and the 101 is out (WebSocketDisconnect: they denied
        the handshake)."""
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        self._channel.accept(subprotocol, headers)
        if self._channel.opened is not None:
            await self._channel.ready()

    def receive(self) -> Coroutine[Any, Any, str | bytes]:
        """await it: the next message, str (text) or bytes (binary). WebSocketDisconnect once
        closed. (A compiled awaitable, not a coroutine: see Channel.receive.)"""
        channel = self._channel
        if not channel.answered:
            channel.accept()
        return channel.receive()

    def send(self, message: str | bytes) -> Coroutine[Any, Any, None]:
        """await it: send a message, str as text, bytes-like as binary. Waits while the client
        is slow to read (the output is over its bound). WebSocketDisconnect once closed."""
        channel = self._channel
        if not channel.answered:
            channel.accept()
        return channel.send(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with code and reason (before accepting: refuse the handshake with 403)."""
        if not self._channel.answered:
            self._channel.deny(_FORBIDDEN)
            return
        if self._channel.opened is not None:
            await self._channel.ready()
        self._channel.close(code, reason)

    def __aiter__(self):
        return self

    def __anext__(self) -> Coroutine[Any, Any, str | bytes]:
        channel = self._channel
        if not channel.answered:
            channel.accept()
        return channel.receive(stop=True)       # the close: StopAsyncIteration


def websocket_route(handler: Callable, runner, options: dict) -> Callable:
    """handler(ws, **params), an `async def`, as the dispatcher calls it: req -> a Deferred
    completed with the session when the handler accepts (or the refusal)."""
    what = getattr(handler, "__qualname__", repr(handler))

    @functools.wraps(handler)
    def start(req, **params):
        def run(channel: Channel):
            return handler(WebSocket(req, channel), **params)
        return start_websocket(req, runner, run, what)
    return start


def start_websocket(req: Request, runner, run: Callable, what: str,
                    answers: Callable[[Channel], Answers] | None = None):
    """An opening handshake to serve: its refusal (a Response), or a Deferred completed with
    the session when the handler accepts. run(channel) -> the handler's coroutine, a task on
    the worker's asyncio loop that ends the WebSocket when it ends (Channel.ended).
    answers(channel): where the answer goes instead of a Deferred (the app's layers: wslayers),
    it then returns the handler's task."""
    sockets: WebSockets = runner.websockets
    req.close_after()       # refused, the connection closes: what follows is never read as
                            # requests (a proxy that took the upgrade for done sends frames)
    refusal = sockets.refusal(req)
    if refusal is not None:
        return refusal
    aio = runner.aio
    deferred = Deferred()
    channel = Channel(req, sockets.session(req), deferred, aio, sockets.handshake_timeout)
    if answers is not None:
        channel.deferred = answers(channel)
    context = contextvars.copy_context()    # the task's context has its request
    context.run(REQUEST.set, req)
    task = aio.create_task(run(channel), context=context)
    loop = runner.loop
    if loop is not None:
        loop.tasks += 1
        loop.ws_handlers += 1
    channel.task, channel.loop, channel.what = task, loop, what
    if not channel.answered:                # (a handler may answer before its first await)
        channel.sockets = sockets
        sockets.waiting.add(channel)
    deferred.on_cancel = task.cancel        # the client left before the handshake's answer
    # the channel itself is the callback (no object more per WebSocket); the task's own
    # context, not a copy of the loop's (both live as long as the WebSocket)
    task.add_done_callback(channel, context=context)
    return deferred if answers is None else task


_UPGRADE_REQUIRED = Response(b"This route is a WebSocket: upgrade to one\n", 426,
                             headers=[("Upgrade", "websocket"), ("Connection", "Upgrade")],
                             content_type="text/plain")
