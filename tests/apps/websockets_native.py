"""A native app with WebSocket routes, for tests/integration/test_websocket*.py."""
import asyncio
import os

from fastsock import App
from fastsock.websocket import WebSocket, WebSocketDisconnect

app = App()
stats = {"slow_sent": 0, "after_close": "", "disconnects": [], "handled": 0}
room: set[WebSocket] = set()


@app.websocket("/echo")
async def echo(ws: WebSocket):
    async for message in ws:
        await ws.send(message)


@app.websocket("/chat")
async def chat(ws: WebSocket):
    """Every message goes to everyone in this worker's room."""
    room.add(ws)
    try:
        async for message in ws:
            for other in list(room):
                try:
                    await other.send(message)
                except WebSocketDisconnect:
                    room.discard(other)
    finally:
        room.discard(ws)


@app.websocket("/proto")
async def proto(ws: WebSocket):
    chosen = "chat.v2" if "chat.v2" in ws.subprotocols else None
    await ws.accept(subprotocol=chosen, headers=[("X-Room", "lobby")])
    await ws.send(f"{ws.subprotocol}|{ws.request.query_string.decode()}|{ws.request.headers.get('origin')}")
    async for message in ws:
        await ws.send(message)


@app.websocket("/item/{name}")
async def item(ws: WebSocket, name: str):
    await ws.send(name)
    await ws.close(4000, "done")


@app.websocket("/deny")
async def deny(ws: WebSocket):
    await ws.close()


@app.websocket("/fail-before")
async def fail_before(ws: WebSocket):
    raise RuntimeError("failed before accepting")


@app.websocket("/fail-after")
async def fail_after(ws: WebSocket):
    await ws.accept()
    await ws.receive()
    raise RuntimeError("failed after accepting")


@app.websocket("/bad-header")
async def bad_header(ws: WebSocket):
    try:
        await ws.accept(headers=[("X-Bad", "a\r\nInjected: yes")])
    except ValueError:
        await ws.accept(headers=[("X-Checked", "refused-the-bad-one")])
    await ws.send("ok")
    await ws.close()


@app.websocket("/never")
async def never(ws: WebSocket):
    await asyncio.sleep(3600)


@app.websocket("/firehose")
async def firehose(ws: WebSocket):
    """Sends until the client stops reading: send() must wait, memory must not grow."""
    chunk = b"x" * 65536
    try:
        for _ in range(10000):
            await ws.send(chunk)
            stats["slow_sent"] += 1
    except WebSocketDisconnect:
        pass


@app.websocket("/deaf")
async def deaf(ws: WebSocket):
    """Accepts and never reads: the client's messages must pause at --ws-max-queue."""
    await ws.accept()
    try:
        await asyncio.sleep(3600)
    finally:
        pass


@app.websocket("/watch")
async def watch(ws: WebSocket):
    """Records how it ended (the drain test reads it through /stats)."""
    await ws.accept()
    try:
        async for message in ws:
            await ws.send(message)
    finally:
        stats["disconnects"].append(ws.close_code)
        stats["handled"] += 1
        if os.environ.get("FASTSOCK_TEST_DIR"):     # the drain test reads it after the exit
            await asyncio.sleep(0.05)               # (an await: the loop must still run)
            with open(os.path.join(os.environ["FASTSOCK_TEST_DIR"], "watch.txt"), "a") as f:
                f.write(f"{ws.close_code}\n")


@app.websocket("/types")
async def types(ws: WebSocket):
    await ws.accept()
    try:
        await ws.send(12345)        # type: ignore[arg-type]
    except TypeError as e:
        await ws.send(f"TypeError: {e}")
    await ws.send(bytearray(b"ba"))
    await ws.send(memoryview(b"mv"))
    await ws.close()


@app.get("/stats")
def get_stats(req):
    return {**stats, "pid": os.getpid()}


@app.get("/hello")
def hello(req):
    return "hello"
