"""fastsock's native WebSocket echo for bench/websocket.py (the ASGI one is bench/ws_apps.py's
starlette_app, served by the same fastsock)."""
from fastsock import App
from fastsock.websocket import WebSocket

app = App()


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    async for message in ws:
        await ws.send(message)
