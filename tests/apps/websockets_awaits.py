"""Native WebSocket routes that use receive() and send() as awaitables in every way asyncio
allows (tests/integration/test_websocket_awaits.py): they are compiled awaitables
(fastsock._wsawait), not coroutines, and must behave as coroutines would."""
import asyncio

from fastsock import App
from fastsock.websocket import WebSocket, WebSocketDisconnect

app = App()
idle: list[asyncio.Task] = []


@app.websocket("/echo")
async def echo(ws: WebSocket):
    async for message in ws:
        await ws.send(message)


@app.websocket("/idle")
async def idle_echo(ws: WebSocket):
    """An echo whose task /waits can look at while it waits for a message."""
    task = asyncio.current_task()
    assert task is not None
    idle.append(task)
    try:
        async for message in ws:
            await ws.send(message)
    finally:
        idle.remove(task)


@app.get("/waits")
def waits(req):
    """What each idle handler's coroutine awaits, by type: one compiled awaitable, no
    coroutine of fastsock's between the handler and its Future."""
    return {"awaits": [type(t.get_coro().cr_await).__name__ for t in idle]}


@app.websocket("/timeout")
async def timeout(ws: WebSocket):
    """A receive cancelled by wait_for's timeout leaves the WebSocket as it was."""
    await ws.accept()
    try:
        await asyncio.wait_for(ws.receive(), 0.05)
        await ws.send("no timeout?")
    except TimeoutError:
        await ws.send("timed out")
    message = await ws.receive()
    await ws.send(f"then got {message}")


@app.websocket("/task")
async def task(ws: WebSocket):
    """receive() as a task of its own, sends gathered: the order they were made in."""
    await ws.accept()
    message = await asyncio.create_task(ws.receive())
    await asyncio.gather(ws.send(f"task got {message}"), ws.send("second"), ws.send("third"))
    await ws.close(4001, "done")


@app.websocket("/twice")
async def twice(ws: WebSocket):
    """Two receives at once: the second is refused, the first still gets the message."""
    await ws.accept()
    first = asyncio.ensure_future(ws.receive())
    await asyncio.sleep(0)
    try:
        await ws.receive()
        await ws.send("two receivers?")
    except RuntimeError as e:
        await ws.send(f"RuntimeError: {e}")
    await ws.send(f"first got {await first}")


@app.websocket("/after-close")
async def after_close(ws: WebSocket):
    """Once the client closed: async for ends, receive() and send() raise its code."""
    await ws.accept()
    async for _ in ws:
        pass
    said = []
    for attempt in (ws.receive(), ws.send("late")):
        try:
            await attempt
        except WebSocketDisconnect as e:
            said.append(e.code)
    results.append(said)


results: list[list[int]] = []


@app.get("/results")
def get_results(req):
    return {"after_close": results}
