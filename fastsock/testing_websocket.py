"""TestClient's WebSockets: `client.websocket_connect(path)` opens one to the app in this
process, through the same connection, handshake, frame reader and writer, session and handler
code the server runs (fastsock._conn, _wshandshake, _wsframes, _wsconn), fed bytes instead of a
socket. The client's side is wsproto's (a real RFC 6455 client: it masks its frames and checks
the server's), so what passes here passes on the wire.

    with client.websocket_connect("/echo") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"

The app runs while the session waits for something (receive_*, close, the handshake): on the
client's asyncio loop and thread pool. A receive that gets nothing within `timeout` seconds
raises TimeoutError (a test never hangs on it); leaving the `with` block (or closing the
client) closes the WebSocket with 1000 and hangs up what is left of it."""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

import httpx

from fastsock._conn import Connection
from fastsock._context import Context
from fastsock.websocket import WebSocketDisconnect

__all__ = ["WebSocketDenied", "WebSocketTestSession"]

# how long the app has, at the session's end, to answer the Close and end its handler
_END_WAIT = 1.0
# bytes handed to the connection at a time: it takes them while it wants input (a WebSocket
# whose inbox is full reads no more: the rest waits here, as in a socket's buffer)
_CHUNK = 4096


class WebSocketDenied(WebSocketDisconnect):
    """The app answered the opening handshake with something else than 101: `status_code`,
    and the whole `response` (an httpx.Response: headers, body)."""

    def __init__(self, response: httpx.Response):
        super().__init__(1006, f"the handshake was answered {response.status_code}")
        self.response = response
        self.status_code = response.status_code


def _wsproto():
    try:
        import wsproto
        import wsproto.events
    except ImportError as e:        # pragma: no cover  (installed with fastsock[dev])
        raise ImportError("TestClient.websocket_connect needs the wsproto package "
                          "(pip install wsproto)") from e
    return wsproto, wsproto.events


class WebSocketTestSession:
    """One WebSocket to the app under test (see the module's doc). Starlette's TestClient's
    session, method for method."""

    __test__ = False                # not a pytest test class

    def __init__(self, transport, path: str, subprotocols=None, headers=None,
                 timeout: float = 10.0):
        wsproto, events = _wsproto()
        self._events = events
        self._transport = transport
        self.timeout = timeout
        self.accepted_subprotocol: str | None = None
        self.extra_headers: list[tuple[bytes, bytes]] = []
        self._messages: deque = deque()      # str | bytes, in order
        self._incoming: deque = deque()      # wsproto's events, in order, not yet taken
        self._unsent = bytearray()          # bytes the connection has not taken yet
        self._parts: list = []               # a message's fragments as they come
        self._closed: WebSocketDisconnect | None = None    # the server's Close, or the end
        self._failure: BaseException | None = None      # what the app raised meanwhile
        self._ended = False
        transport.start()
        ctx = Context(transport.limits)
        ctx.on_stream = transport.runner.start_feed
        ctx.on_head = transport.on_head
        self._tasks: set[asyncio.Task] = set()  # those the handshake started: its handler's
        self._conn = Connection(ctx, transport._with_client)
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        extra = [(k.encode("latin-1") if isinstance(k, str) else k,
                  v.encode("latin-1") if isinstance(v, str) else v)
                 for k, v in (headers.items() if isinstance(headers, dict) else headers or ())]
        transport.sessions.add(self)
        try:
            self._handshake(path, list(subprotocols or ()), extra)
        except BaseException:
            self._end()
            raise

    # -- the handshake

    def _handshake(self, path: str, subprotocols: list[str], extra: list) -> None:
        events = self._events
        aio = self._transport.runner.aio
        before = asyncio.all_tasks(aio)
        self._to_app(self._ws.send(events.Request(
            host="testserver", target=path, subprotocols=subprotocols, extra_headers=extra)))
        deadline = time.monotonic() + self.timeout
        while True:
            # the tasks started since: the handler's (and the layers' around its handshake)
            self._tasks |= asyncio.all_tasks(aio) - before
            while self._incoming:
                event = self._incoming.popleft()
                if isinstance(event, events.AcceptConnection):
                    self.accepted_subprotocol = event.subprotocol
                    self.extra_headers = list(event.extra_headers)
                    self._take(self._events_in())   # what came with the 101
                    return
                if isinstance(event, events.RejectConnection):
                    self._denied(event, deadline)
            if self._conn.is_finished or time.monotonic() > deadline:
                self._raise_failure()
                raise TimeoutError(f"the app did not answer the handshake of {path} within "
                                   f"{self.timeout} s") if not self._conn.is_finished else \
                    ConnectionError(f"the app closed the connection of {path} without an "
                                    "answer")
            self._pump()

    def _denied(self, event, deadline: float) -> None:
        events = self._events
        body = b""
        finished = not event.has_body
        while not finished:
            for data in self._events_in():
                if isinstance(data, events.RejectData):
                    body += data.data
                    finished = data.body_finished
            if not finished:
                if self._conn.is_finished or time.monotonic() > deadline:
                    break
                self._pump()
        self._raise_failure()           # a 500 for what the app raised: that, as for HTTP
        raise WebSocketDenied(httpx.Response(
            event.status_code, headers=[(k, v) for k, v in event.headers], content=body,
            request=httpx.Request("GET", "http://testserver/")))

    # -- the app's side runs while we wait

    def _to_app(self, data: bytes) -> None:
        """Bytes to the connection as if read from the socket, as far as it takes them; what
        it answers to wsproto."""
        transport, conn, unsent = self._transport, self._conn, self._unsent
        unsent += data
        out = b""
        with transport.errors:
            transport.tasks.run_inbox()
            while unsent and conn.wants_input and not conn.is_finished:
                out += conn.feed(bytes(unsent[:_CHUNK]))
                del unsent[:_CHUNK]
            if not conn.is_finished:
                out += conn.feed(b"")       # what the app wrote meanwhile
            self._note_failure()
        if out:
            self._ws.receive_data(out)
            self._incoming.extend(self._ws.events())
        if self._conn.is_finished and not self._ended:
            self._ended = True
            self._ws.receive_data(None)     # the server's side is gone (after its bytes)
            self._incoming.extend(self._ws.events())

    def _events_in(self) -> list:
        events, self._incoming = list(self._incoming), deque()
        return events

    def _pump(self) -> None:
        """Let the app run a little (its asyncio loop, its pool's results), then take what
        it wrote."""
        transport = self._transport
        with transport.errors:
            transport.runner.aio.run_until_complete(asyncio.sleep(0.001))
            self._note_failure()
        self._to_app(b"")

    def _note_failure(self) -> None:
        if self._failure is None:
            self._failure = self._transport.errors.first_exception()

    def _raise_failure(self) -> None:
        if self._failure is not None and self._transport.raise_server_exceptions:
            failure, self._failure = self._failure, None
            raise failure

    def _take(self, events_) -> None:
        events = self._events
        for event in events_:
            if isinstance(event, events.TextMessage | events.BytesMessage):
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts = self._parts, []
                    self._messages.append(("" if isinstance(event, events.TextMessage)
                                           else b"").join(parts))
            elif isinstance(event, events.Ping):
                self._to_app(self._ws.send(event.response()))
            elif isinstance(event, events.CloseConnection):
                if self._closed is None:
                    self._closed = WebSocketDisconnect(int(event.code), event.reason or "")
                if self._ws.state.name == "REMOTE_CLOSING" and not self._ended:
                    self._to_app(self._ws.send(event.response()))   # answer its Close

    def _wait(self, done, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        self._take(self._events_in())
        while not done():
            if self._closed is not None or self._ended:
                return
            if time.monotonic() > deadline:
                self._raise_failure()
                raise TimeoutError(f"nothing came from the app within {self.timeout} s "
                                   f"({what})")
            self._pump()
            self._take(self._events_in())

    # -- Starlette's TestClient's session API

    def send(self, message: dict) -> None:
        """An ASGI-style message: {"type": "websocket.receive", "text" | "bytes": ...} or
        {"type": "websocket.disconnect", "code": ...}."""
        if message.get("type") == "websocket.disconnect":
            self.close(message.get("code", 1000), message.get("reason") or "")
        elif message.get("text") is not None:
            self.send_text(message["text"])
        else:
            self.send_bytes(message["bytes"])

    def send_text(self, data: str) -> None:
        self._send(self._events.TextMessage(data=data))

    def send_bytes(self, data: bytes) -> None:
        self._send(self._events.BytesMessage(data=bytes(data)))

    def send_json(self, data: Any, mode: str = "text") -> None:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if mode == "text":
            self.send_text(text)
        else:
            self.send_bytes(text.encode("utf-8"))

    def _send(self, event) -> None:
        self._take(self._events_in())
        if self._closed is not None or self._ended or self._ws.state.name != "OPEN":
            self._raise_failure()
            raise self._closed or WebSocketDisconnect(1006, "the connection is gone")
        self._to_app(self._ws.send(event))
        self._take(self._events_in())

    def receive(self) -> dict:
        """The next message as ASGI says it: websocket.send with text or bytes, or
        websocket.close with the server's code once it closed."""
        try:
            message = self._receive()
        except WebSocketDisconnect as e:
            return {"type": "websocket.close", "code": e.code, "reason": e.reason}
        key = "text" if isinstance(message, str) else "bytes"
        return {"type": "websocket.send", key: message}

    def _receive(self) -> str | bytes:
        self._wait(lambda: bool(self._messages), "a message")
        if self._messages:
            return self._messages.popleft()
        self._raise_failure()
        raise self._closed or WebSocketDisconnect(1006, "the connection is gone")

    def receive_text(self) -> str:
        message = self._receive()
        if not isinstance(message, str):
            raise TypeError(f"expected a text message, got {len(message)} bytes")
        return message

    def receive_bytes(self) -> bytes:
        message = self._receive()
        if not isinstance(message, bytes):
            raise TypeError(f"expected a binary message, got text {message[:40]!r}")
        return message

    def receive_json(self, mode: str = "text") -> Any:
        return json.loads(self.receive_text() if mode == "text" else self.receive_bytes())

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with code (reason: up to 123 bytes): waits (at most `timeout`) for the
        server's Close, then the connection ends."""
        self._take(self._events_in())
        if self._ws.state.name == "OPEN":
            self._to_app(self._ws.send(self._events.CloseConnection(code=code,
                                                                    reason=reason)))
        try:
            self._wait(lambda: False, "the server's Close")
        except TimeoutError:
            pass                        # (a server that reads no more): hung up
        self._end()
        self._raise_failure()

    # -- the end

    def _end(self) -> None:
        """The connection ends (hung up if the app has not closed it); its handler gets a
        moment to see it. Once."""
        transport = self._transport
        if self in transport.sessions:
            transport.sessions.discard(self)
            if not self._conn.is_finished:
                self._conn.hang_up()
            deadline = time.monotonic() + _END_WAIT
            while self._app_runs() and time.monotonic() < deadline:
                self._pump()
            self._ended = True

    def _app_runs(self) -> bool:
        """A task the handshake started (its handler, the layers around it) is not done."""
        aio = self._transport.runner._aio
        if aio is None or aio.is_closed():
            return False
        return any(not task.done() for task in self._tasks)

    def __enter__(self) -> WebSocketTestSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._transport.runner._aio is None or self._transport.runner._aio.is_closed():
                return
            if exc_type is None:
                self.close(1000)
            else:
                self._end()
        finally:
            self._transport.sessions.discard(self)
