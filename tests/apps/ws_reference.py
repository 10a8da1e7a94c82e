"""The reference WebSocket echo app (Starlette), served by uvicorn with its `websockets` or
`wsproto` implementation in tests/integration/test_wsclients_reference.py: the clients of
tests/support/wsclients.py are proven against it before fastsock serves the same app.

    /echo       accepts (with the first subprotocol the client offers), echoes every text and
                binary message until the client closes
    /ws-page    the Chromium page (tests/support/wspage.html), same origin as /echo
    /origin     a WebSocket that sends the Origin header it was opened with, then closes 1000
"""
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.wsclients import page_html


async def echo(ws: WebSocket) -> None:
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=offered[0] if offered else None)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await ws.send_text(message["text"])
            else:
                await ws.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        return


async def origin(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(ws.headers.get("origin", ""))
    await ws.close(1000)


async def page(request) -> Response:
    return Response(page_html(), media_type="text/html")


app = Starlette(routes=[WebSocketRoute("/echo", echo), WebSocketRoute("/origin", origin),
                        Route("/ws-page", page)])
