"""Starlette and FastAPI apps with WebSocket routes, and a raw ASGI app for the denial-response
extension, for tests/integration/test_websocket_asgi.py."""
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

disconnects: list[int] = []


async def echo(websocket: WebSocket):
    await websocket.accept(subprotocol="chat" if "chat" in websocket.scope["subprotocols"]
                           else None)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                disconnects.append(message["code"])
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect as e:
        disconnects.append(e.code)


async def refuse(websocket: WebSocket):
    await websocket.close()


async def json_echo(websocket: WebSocket):
    await websocket.accept()
    data = await websocket.receive_json()
    await websocket.send_json({"got": data, "path": websocket.url.path,
                               "query": websocket.query_params.get("q")})
    await websocket.close(code=4001, reason="bye")


starlette_app = Starlette(routes=[
    WebSocketRoute("/echo", echo),
    WebSocketRoute("/refuse", refuse),
    WebSocketRoute("/json", json_echo),
])

fastapi_app = FastAPI()


@fastapi_app.websocket("/ws/{room}")
async def fastapi_room(websocket: FastAPIWebSocket, room: str):
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"{room}: {text}")


@fastapi_app.get("/hello")
async def fastapi_hello():
    return {"hello": "world"}


async def denial_app(scope, receive, send):
    """Denies with its own response (the websocket.http.response extension), or accepts."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    if scope["path"] == "/denied":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b"no ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"token"})
        return
    if scope["path"] == "/silent":
        return                      # neither accepts nor closes: a 500
    await send({"type": "websocket.accept", "headers": [(b"x-asgi", b"yes")]})
    message = await receive()
    await send({"type": "websocket.send", "text": message.get("text") or "?"})
    await send({"type": "websocket.close", "code": 1000})
    try:
        await send({"type": "websocket.send", "text": "after close"})
    except OSError:
        pass
