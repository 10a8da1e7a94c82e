"""WebSocket apps that misbehave on purpose (native and raw ASGI), for
tests/integration/test_websocket_attacks.py: what each tried and what it got is kept in
`seen`, which the tests read through GET /seen."""
import asyncio
import json
import os
import time

from fastsock import App
from fastsock.websocket import WebSocket, WebSocketDisconnect

app = App()
seen: dict[str, object] = {"lingering": 0, "sent": 0}


def _outcome(call) -> str:
    """What a call raised (its type's name), or "ok"."""
    try:
        call()
    except Exception as e:          # the tests assert on the name
        return type(e).__name__
    return "ok"


async def _aoutcome(coro) -> str:
    try:
        await coro
    except Exception as e:
        return type(e).__name__
    return "ok"


@app.websocket("/echo")
async def echo(ws: WebSocket):
    async for message in ws:
        await ws.send(message)


@app.websocket("/whoami")
async def whoami(ws: WebSocket):
    await ws.send(f"{ws.request.client[0]}:{ws.request.client[1]}")
    await ws.close()


@app.websocket("/send-after-close")
async def send_after_close(ws: WebSocket):
    await ws.accept()
    await ws.close(4000, "first")
    seen["send_after_close"] = await _aoutcome(ws.send("late"))
    seen["close_again"] = await _aoutcome(ws.close(4001, "second"))


@app.websocket("/close-bad-code/{code}")
async def close_bad_code(ws: WebSocket, code: str):
    await ws.accept()
    seen["bad_code_" + code] = await _aoutcome(ws.close(int(code)))
    await ws.close(4002, "after the bad one")


@app.websocket("/close-bad-code-uncaught")
async def close_bad_code_uncaught(ws: WebSocket):
    await ws.accept()
    await ws.close(1005)


@app.websocket("/long-reason")
async def long_reason(ws: WebSocket):
    await ws.accept()
    seen["long_reason"] = await _aoutcome(ws.close(1000, "é" * 62))     # 124 bytes
    await ws.close(1000, "é" * 61 + "x")                                # 123 bytes


@app.websocket("/accept-twice")
async def accept_twice(ws: WebSocket):
    await ws.accept()
    seen["accept_twice"] = await _aoutcome(ws.accept())
    await ws.send("still open")
    await ws.close()


@app.websocket("/unoffered-subprotocol")
async def unoffered_subprotocol(ws: WebSocket):
    await ws.accept(subprotocol="never-offered")


@app.websocket("/send-types")
async def send_types(ws: WebSocket):
    await ws.accept()
    for value in (None, 1.5, ["list"], {"a": 1}, "\ud800"):
        seen["send_" + type(value).__name__ + ("_surrogate" if value == "\ud800" else "")] = \
            await _aoutcome(ws.send(value))     # type: ignore[arg-type]
    await ws.send("after the bad ones")
    await ws.close()


@app.websocket("/linger")
async def linger(ws: WebSocket):
    """Ignores the client leaving: its task lives on."""
    await ws.accept()
    try:
        async for _ in ws:
            pass
    finally:
        seen["lingering"] += 1          # type: ignore[operator]
    await asyncio.sleep(3600)


@app.websocket("/block")
async def block(ws: WebSocket):
    """Blocks the worker's loop (a sync sleep inside async) when told to."""
    async for message in ws:
        time.sleep(float(message))
        await ws.send("woke")


@app.websocket("/firehose")
async def firehose(ws: WebSocket):
    chunk = os.urandom(65536)
    try:
        while True:
            await ws.send(chunk)
            seen["sent"] += 1           # type: ignore[operator]
    except WebSocketDisconnect:
        pass


@app.websocket("/silent")
async def silent(ws: WebSocket):
    """Neither accepts nor refuses: --ws-handshake-timeout ends it."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        seen["silent_cancelled"] = seen.get("silent_cancelled", 0) + 1  # type: ignore
        raise


@app.websocket("/deaf")
async def deaf(ws: WebSocket):
    await ws.accept()
    await asyncio.sleep(3600)


@app.websocket("/many-senders")
async def many_senders(ws: WebSocket):
    """Three tasks send to one client at once (as a chat room's handlers do): each must get
    through once the client reads, however the output's bound held them."""
    await ws.accept()
    chunk = b"s" * 65536

    async def sender(n: int):
        for _ in range(40):
            await ws.send(chunk)
        seen["senders_done"] = seen.get("senders_done", 0) + 1  # type: ignore

    await asyncio.gather(*(sender(n) for n in range(3)))
    await ws.send("all sent")
    async for _ in ws:
        pass


@app.websocket("/two-readers")
async def two_readers(ws: WebSocket):
    """Two tasks wait in receive() at once: the second is refused at once with a RuntimeError
    (as the websockets library refuses it), never left asleep; the first gets the message."""
    await ws.accept()

    async def reader(n: int):
        try:
            message = await ws.receive()
        except RuntimeError as e:
            await ws.send(f"reader refused: {e}")
            return
        await ws.send(f"reader got {message}")

    await asyncio.gather(reader(0), reader(1))
    await ws.send("both done")
    async for _ in ws:
        pass


@app.get("/seen")
def get_seen(req):
    return {**seen, "pid": os.getpid()}


@app.get("/hello")
def hello(req):
    return "hello"


async def asgi_app(scope, receive, send):
    """A raw ASGI app whose WebSocket paths each break the protocol one way."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(seen).encode()})
        return
    path = scope["path"]
    assert (await receive())["type"] == "websocket.connect"
    if path == "/accept-twice":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.accept"})
    elif path == "/http-start":
        await send({"type": "http.response.start", "status": 200, "headers": []})
    elif path.startswith("/deny-status/"):
        await send({"type": "websocket.http.response.start", "status": int(path[13:]),
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
    elif path == "/deny-bad-header":
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"x-bad", b"a\r\nInjected: yes")]})
        await send({"type": "websocket.http.response.body", "body": b"denied"})
    elif path == "/accept-bad-header":
        await send({"type": "websocket.accept", "headers": [(b"x-bad", b"a\r\nInjected: yes")]})
    elif path == "/receive-after-disconnect":
        await send({"type": "websocket.accept"})
        kinds = []
        for _ in range(3):
            kinds.append((await receive())["type"])
        seen["asgi_after_disconnect"] = kinds
    elif path == "/close-bad-code":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1005})
    elif path == "/send-after-close":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4005})
        try:
            await send({"type": "websocket.send", "text": "late"})
            seen["asgi_send_after_close"] = "ok"
        except OSError as e:
            seen["asgi_send_after_close"] = type(e).__name__
    elif path == "/receive-before-accept":
        await receive()
    elif path == "/send-both":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "t", "bytes": b"b"})
