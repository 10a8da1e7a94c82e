"""An `@app.websocket` route inside the app's middleware, hooks and error handlers (hooks.py's
model, as for HTTP routes): they wrap the opening handshake, not the WebSocket's life.

- before hooks run before the handler starts; one that returns a result denies the handshake
  with it (e.g. a 401 for a missing token), and the handler never runs;
- call_next(req) returns once the handshake is answered: a Response with status 101 when the
  handler accepted (its headers are the ones the handler gave accept(); those a middleware or
  after hook adds go into the 101, checked as accept() checks them), else the refusal (400,
  426, 503, the handler's 403, a 504 at --ws-handshake-timeout); the handler goes on after;
- after hooks see that answer, and may add headers to the 101 or replace it (a denial);
- a middleware, hook or after hook may deny a handshake the handler accepted: the handler's
  next receive/send (or its accept()) raises WebSocketDisconnect (1006);
- error handlers apply to what the handler raises before it answers the handshake (their
  response is the denial), and to what the layers raise; an exception nobody handles is a 500,
  logged; one the handler raises once accepted closes the WebSocket with 1011, as without
  layers.

The handler's accept() returns once the layers are through and the 101 is out."""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from fastsock._handoff import Deferred
from fastsock._message import Request, Response
from fastsock._wsconn import WsSession
from fastsock.hooks import async_layers
from fastsock.logs import REQUEST
from fastsock.responses import GATEWAY_TIMEOUT, SERVER_ERROR, SHUTTING_DOWN
from fastsock.websocket import Channel, WebSocket, start_websocket, subprotocols, with_echo

__all__ = ["layered_websocket"]

error_log = logging.getLogger("fastsock.error")

LAYERS_GRACE = 1.0      # seconds past --ws-handshake-timeout for a layer that never answers


class _Handshake:
    """One opening handshake behind the layers: what its handler answers (the 101 as a
    Response, a denial, or what it raised before answering) for the layers' innermost call to
    await, then the layers' answer to the connection."""

    def __init__(self, req: Request, deferred: Deferred, aio: asyncio.AbstractEventLoop):
        self.req, self.deferred = req, deferred
        self.answer: asyncio.Future = aio.create_future()
        self.channel: Channel | None = None
        self.handler: asyncio.Task | None = None
        self.layers: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None

    def attach(self, channel: Channel) -> _Handshake:
        """start_websocket's answers(): the channel answers here, not to the connection."""
        self.channel = channel
        channel.opened = channel.aio.create_future()
        channel.on_failure = self.failed
        return self

    def complete(self, result) -> None:
        """The handler's answer: its session (accepted) or a Response (denied)."""
        if self.answer.done():
            return
        if type(result) is WsSession:
            assert self.channel is not None
            result = Response(b"", 101, headers=list(self.channel.headers))
        self.answer.set_result(result)

    def failed(self, exc: BaseException) -> None:
        """The handler raised before answering: the layers' error handlers see it."""
        if not self.answer.done():
            self.answer.set_exception(exc)

    def cancel(self) -> None:
        """The client left before the answer, or it was not given in time."""
        for task in (self.layers, self.handler):
            if task is not None:
                task.cancel()
        self._open(False)

    def expired(self, timeout: float) -> None:
        self.timer = None
        if not self.deferred.is_done:
            error_log.warning("a hook or middleware did not answer a WebSocket handshake "
                              "within %gs (--ws-handshake-timeout, and %gs)", timeout,
                              LAYERS_GRACE)
            self.deferred.complete(GATEWAY_TIMEOUT)
        self.cancel()

    def finish(self, response) -> None:
        """The layers' answer: a 101 opens the WebSocket the handler accepted (with the
        headers it has now); anything else denies the handshake."""
        channel, req = self.channel, self.req
        if type(response) is Response and response.status == 101:
            if channel is None or not channel.accepted:
                error_log.error("a hook or middleware answered 101 to a WebSocket handshake "
                                "its handler did not accept: %s", req.path)
                response = SERVER_ERROR
            elif self.deferred.is_done:         # the client left meanwhile
                self._open(False)
                return
            else:
                try:
                    channel.session.agree(channel.session.subprotocol,
                                          with_echo(req, response.headers))
                except (ValueError, TypeError) as e:
                    error_log.error("a hook or middleware gave the 101 of %s a header it "
                                    "cannot have: %s", req.path, e)
                    response = SERVER_ERROR
                else:
                    self.deferred.complete(channel.session)    # the 101, then frames
                    self._open(True)
                    if channel.close_when_open:     # the handler has already ended
                        channel.session.close(channel.close_when_open, "")
                    return
        self.deferred.complete(response)
        self._open(False)

    def _open(self, ok: bool) -> None:
        opened = self.channel.opened if self.channel is not None else None
        if opened is not None and not opened.done():
            opened.set_result(ok)


def layered_websocket(handler: Callable, runner, app) -> Callable:
    """handler(ws, **params), an `async def`, inside app's layers, as the dispatcher calls
    it: req -> a Deferred completed with the session (the 101) or the denial."""
    what = getattr(handler, "__qualname__", repr(handler))
    pending: dict[int, _Handshake] = {}     # id(req) -> its handshake, while the layers run

    async def core(req, **params):
        hs = pending.get(id(req))
        if hs is None or hs.req is not req:
            raise RuntimeError("a middleware called call_next with another request than the "
                               "WebSocket handshake's own")
        if hs.channel is not None or hs.handler is not None:
            raise RuntimeError("a middleware called call_next twice for one WebSocket "
                               "handshake")

        def run(channel: Channel):
            return handler(WebSocket(req, channel, subprotocols(req)), **params)
        started = start_websocket(req, runner, run, what, hs.attach)
        if type(started) is Response:       # refused: 400, 426, 503
            return started
        hs.handler = started
        return await hs.answer
    core.__qualname__ = what
    layers = async_layers(core, app, runner)

    @functools.wraps(handler)
    def start(req, **params):
        req.close_after()       # denied by a layer, the connection closes too (start_websocket)
        aio = runner.aio
        deferred = Deferred()
        hs = _Handshake(req, deferred, aio)
        pending[id(req)] = hs
        loop = runner.loop
        token = REQUEST.set(req)            # the tasks' context, copied now, has its request
        try:
            task = hs.layers = aio.create_task(layers(req, **params))
            task.add_done_callback(functools.partial(_layers_done, hs, pending, loop, what,
                                                     runner.websockets))
        finally:
            REQUEST.reset(token)
        runner.websockets.layered.add(hs)   # a drain refuses it while the layers hold it
        if loop is not None:
            loop.tasks += 1
        deferred.on_cancel = hs.cancel
        timeout = runner.websockets.handshake_timeout
        if timeout:     # for the layers themselves: the handler's own 504 (its Channel's,
            # at the timeout) comes back through them first
            hs.timer = aio.call_later(timeout + LAYERS_GRACE, hs.expired, timeout)
        return deferred
    return start


def _layers_done(hs: _Handshake, pending: dict, loop, what: str, sockets,
                 task: asyncio.Task) -> None:
    pending.pop(id(hs.req), None)
    sockets.layered.discard(hs)
    if hs.timer is not None:
        hs.timer.cancel()
        hs.timer = None
    try:
        if task.cancelled():
            hs.finish(SHUTTING_DOWN)        # only reaches a client still there
            return
        exc = task.exception()
        if exc is not None:
            error_log.error("WebSocket handshake of %s failed", what, exc_info=exc)
            hs.finish(SERVER_ERROR)
            if hs.handler is not None and not (hs.channel and hs.channel.accepted):
                hs.handler.cancel()         # it never answered: it never will be heard
            return
        hs.finish(task.result())
    finally:
        if loop is not None:
            loop.task_done()
