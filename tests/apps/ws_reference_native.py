"""tests/apps/ws_reference.py's routes as a native fastsock app (@app.websocket), for the
clients' tests in tests/integration/test_wsclients_reference.py:

    /echo       accepts (with the first subprotocol the client offers), echoes every message
    /ws-page    the Chromium page (tests/support/wspage.html), same origin as /echo
    /origin     a WebSocket that sends the Origin header it was opened with, then closes 1000
"""
from fastsock import App, Response
from fastsock.websocket import WebSocket

from tests.support.wsclients import page_html

app = App()


@app.websocket("/echo")
async def echo(ws: WebSocket):
    await ws.accept(subprotocol=ws.subprotocols[0] if ws.subprotocols else None)
    async for message in ws:
        await ws.send(message)


@app.websocket("/origin")
async def origin(ws: WebSocket):
    await ws.send(ws.request.headers.get("origin") or "")
    await ws.close(1000)


@app.get("/ws-page")
def page(req):
    return Response(page_html(), content_type="text/html; charset=utf-8")
