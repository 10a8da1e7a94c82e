"""ASGI's websocket scope (ASGI 2.4, with the websocket.http.response extension): one
WebSocket's way through an ASGI app, on fastsock.websocket's Channel. receive() answers
websocket.connect first, then websocket.receive, and websocket.disconnect once closed; send()
takes websocket.accept, websocket.send, websocket.close, or a denial response in place of the
accept. send() on a closed WebSocket raises ClientDisconnected (an OSError), as ASGI says.
"""
from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from fastsock._wsawait import receiving_asgi
from fastsock.adapters.common import ClientDisconnected, app_response
from fastsock.websocket import Channel, WebSocketDisconnect

error_log = logging.getLogger("fastsock.error")


class WebSocketCycle:
    def __init__(self, req, scope: dict, labels, channel: Channel):
        self.req, self.scope, self.labels, self.channel = req, scope, labels, channel
        self.connected = False          # websocket.connect was received
        self.denial: tuple | None = None    # (status, headers) of a denial response begun
        self.denial_body: list[bytes] | None = None     # made by a denial's first body
        self.told_closed = False

    async def run(self, app) -> None:
        """The app's call; its end (or failure) ends the handshake or the WebSocket."""
        channel = self.channel
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as e:
            if self.told_closed and isinstance(e, OSError):
                return                  # its send after the close raised: the app's way out
            raise
        if not channel.answered:
            error_log.error("ASGI app returned without accepting or closing the WebSocket: %s",
                            self.req.path)
            channel.deny(app_response(500, [(b"content-type", b"text/plain")],
                                      b"Internal Server Error\n"))

    def receive(self) -> Coroutine[Any, Any, dict]:
        """await it: the next event. Past websocket.connect, a compiled awaitable (not a
        coroutine: no frame while the app waits, the event's dict made in C)."""
        if not self.connected:
            self.connected = True
            return _event({"type": "websocket.connect"})
        channel = self.channel
        if not channel.accepted:
            raise RuntimeError("ASGI: receive() on a WebSocket before websocket.accept")
        return receiving_asgi(channel.session, self)

    async def send(self, message: dict) -> None:
        kind = message["type"]
        channel = self.channel
        if kind == "websocket.send":
            if not channel.accepted:
                raise RuntimeError("ASGI: websocket.send before websocket.accept")
            text, data = message.get("text"), message.get("bytes")
            if (text is None) == (data is None):
                raise ValueError("ASGI: websocket.send has exactly one of text and bytes")
            try:
                await channel.send(text if text is not None else data)
            except WebSocketDisconnect:
                self.told_closed = True
                raise ClientDisconnected("the WebSocket is closed") from None
        elif kind == "websocket.accept":
            headers = message.get("headers") or []
            channel.accept(message.get("subprotocol"), headers)
            self.req.route_id = self.labels.for_scope(self.scope)
        elif kind == "websocket.close":
            if not channel.answered:    # a refusal: 403, as the spec says
                channel.deny(app_response(403, [(b"content-type", b"text/plain")],
                                          b"WebSocket refused\n"))
            else:
                if channel.session.closed:
                    self.told_closed = True
                    raise ClientDisconnected("the WebSocket is closed")
                channel.close(message.get("code", 1000), message.get("reason") or "")
        elif kind == "websocket.http.response.start":
            if channel.answered or self.denial is not None:
                raise RuntimeError("ASGI: websocket.http.response.start after the handshake "
                                   "was answered")
            self.denial = (message["status"], message.get("headers", []))
        elif kind == "websocket.http.response.body":
            if self.denial is None or channel.answered:
                raise RuntimeError("ASGI: websocket.http.response.body without its start")
            if self.denial_body is None:
                self.denial_body = []
            self.denial_body.append(message.get("body", b""))
            if not message.get("more_body", False):
                status, headers = self.denial
                channel.deny(app_response(status, headers, b"".join(self.denial_body)))
                self.denial_body = None
        else:
            raise ValueError(f"ASGI: unexpected message {kind!r} on a websocket scope")


async def _event(event: dict) -> dict:
    return event
