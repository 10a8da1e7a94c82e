"""Apps for tests/integration/test_steps_attacks.py: what an app relies on from asyncio, reached
through the worker's timed task factory (fastsock/_steps.pyx), each route answering what it saw
(JSON) so the test compares it with plain asyncio's; apps that replace, chain or break the
factory; handlers that block the loop, await, or do both. ?ms= sets how long a handler takes."""
import asyncio
import contextvars
import inspect
import os
import time
import types
import weakref

from fastsock import App
from fastsock.websocket import WebSocket
from tests.apps.saturation_attacks import async_blocking

app = App()
REQUEST_ID = contextvars.ContextVar("request_id", default=None)
background: set[asyncio.Task] = set()
fastsock_factory: list = []         # the worker's factory, kept when an app replaces it
mix_count = [0]


def _ms(query: dict, default: int = 1) -> float:
    return int(query.get("ms", str(default))) / 1000


def _looked_at(coro) -> dict:
    """What inspecting a task's coroutine tells: plain asyncio's answers are in the test."""
    try:
        weakref.ref(coro)
        weak = True
    except TypeError:
        weak = False
    return {"iscoroutine": inspect.iscoroutine(coro),
            "coroutine_type": isinstance(coro, types.CoroutineType),
            "state": inspect.getcoroutinestate(coro), "weakref": weak,
            "qualname": coro.__qualname__, "code": coro.cr_code.co_name}


# ----------------------------------------------------------------------- 1. asyncio semantics

@app.get("/inspect")
async def inspect_own_task(req):
    task = asyncio.current_task()
    return _looked_at(task.get_coro())


@app.get("/inspect-created")
async def inspect_created(req):
    """create_task(coro): is the task's coroutine the one it was given?"""
    async def child():
        await asyncio.sleep(0)
    coro = child()
    task = asyncio.get_running_loop().create_task(coro)
    same = task.get_coro() is coro
    await task
    return {"same": same}


@app.get("/context")
async def context_across_awaits(req):
    """A contextvar set before awaits and tasks: children see it, their changes stay theirs."""
    REQUEST_ID.set(req.query.get("id"))

    async def child():
        seen = REQUEST_ID.get()
        await asyncio.sleep(0)
        REQUEST_ID.set("child's")
        await asyncio.sleep(0)
        return seen
    await asyncio.sleep(0)
    seen = await asyncio.create_task(child())
    await asyncio.sleep(0.001)
    return {"child": seen, "after": REQUEST_ID.get()}


@app.get("/cancellations")
async def cancellations(req):
    """timeout, wait_for, shield, TaskGroup, a coroutine swallowing CancelledError, cancel
    before the first step: what each ends as."""
    out = {}
    try:
        async with asyncio.timeout(0.005):
            await asyncio.sleep(5)
    except TimeoutError:
        out["timeout"] = "TimeoutError"
    try:
        await asyncio.wait_for(asyncio.sleep(5), 0.005)
    except TimeoutError:
        out["wait_for"] = "TimeoutError"

    async def slow_answer():
        await asyncio.sleep(0.02)
        return "shielded"
    inner = asyncio.ensure_future(slow_answer())
    try:
        await asyncio.wait_for(asyncio.shield(inner), 0.001)
    except TimeoutError:
        out["shield_outer"] = "TimeoutError"
    out["shield_inner"] = await inner

    async def fails():
        await asyncio.sleep(0)
        raise LookupError("one of the group")
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(fails())
            sibling = group.create_task(asyncio.sleep(5))
    except* LookupError as eg:
        out["taskgroup"] = [type(e).__name__ for e in eg.exceptions]
    out["sibling_cancelled"] = sibling.cancelled()

    async def swallows():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            return "swallowed"
    task = asyncio.create_task(swallows())
    await asyncio.sleep(0)
    task.cancel()
    out["swallowed"] = await task
    task = asyncio.create_task(swallows())
    task.cancel()                   # before its first step
    try:
        await task
    except asyncio.CancelledError:
        out["cancelled_before_start"] = True
    return out


@app.get("/stopiteration")
async def raises_stopiteration(req):
    await asyncio.sleep(0)
    raise StopIteration("inside a coroutine: a RuntimeError to asyncio")


@app.get("/stopiteration-task")
async def stopiteration_in_task(req):
    async def child():
        await asyncio.sleep(0)
        raise StopIteration
    try:
        await asyncio.create_task(child())
    except RuntimeError as e:
        return {"raised": type(e).__name__, "message": str(e)}
    return {"raised": None}


@app.get("/not-a-coroutine")
async def not_a_coroutine(req):
    """create_task of what is not a coroutine: TypeError at once, as plain asyncio."""
    loop = asyncio.get_running_loop()
    out = {}

    @types.coroutine
    def generator_based():
        yield
    for name, thing in (("function", lambda: 1), ("none", None), ("future", loop.create_future()),
                        ("generator", generator_based())):
        try:
            loop.create_task(thing)
            out[name] = "accepted"
        except TypeError:
            out[name] = "TypeError"
    return out


@app.get("/returns")
async def returns(req):
    """Return values that a StopIteration carries awkwardly: a tuple, an exception, None."""
    async def give(value):
        await asyncio.sleep(0)
        return value
    tup = await asyncio.create_task(give((1, 2)))
    exc = await asyncio.create_task(give(ValueError("a value")))
    none = await asyncio.create_task(give(None))
    return {"tuple": list(tup), "tuple_type": type(tup).__name__,
            "exception": type(exc).__name__, "none": none is None}


@app.get("/raise")
async def raise_(req):
    await asyncio.sleep(0)
    raise RuntimeError("an async handler failed")


async def _numbers(n: int):
    for i in range(n):
        await asyncio.sleep(0)
        yield f"{i}\n"


@app.get("/agen")
async def async_generator(req):
    """An async generator consumed in the handler and its aclose (finalizer task) after break."""
    got = [x async for x in _numbers(5)]
    async for _ in _numbers(100):
        break
    return {"got": got}


@app.get("/threadsafe", threaded=True)
def threadsafe(req):
    """From a pool thread: run_coroutine_threadsafe onto the worker's loop (kept by /loop)."""
    async def on_loop():
        await asyncio.sleep(0)
        return asyncio.current_task() is not None
    future = asyncio.run_coroutine_threadsafe(on_loop(), LOOP[0])
    return {"on_loop": future.result(10)}


LOOP: list = []


@app.get("/loop")
async def keep_loop(req):
    LOOP[:] = [asyncio.get_running_loop()]
    return "kept\n"


@app.get("/tasks")
async def many_tasks(req):
    """?n= tiny tasks made and gathered: memory must not grow round after round."""
    async def tiny(i):
        await asyncio.sleep(0)
        return i
    loop = asyncio.get_running_loop()
    results = await asyncio.gather(*(loop.create_task(tiny(i)) for i in
                                     range(int(req.query.get("n", "100")))))
    return {"sum": sum(results)}


@app.get("/rss")
def rss(req):
    with open(f"/proc/{os.getpid()}/statm") as f:
        return {"pid": os.getpid(), "rss_pages": int(f.read().split()[1])}


@app.get("/forever")
async def forever(req):
    """Never ends, and shrugs off cancellation: only the drain's deadline ends it."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


@app.get("/forever-background")
async def forever_background(req):
    async def never():
        await asyncio.Event().wait()
    background.add(asyncio.create_task(never()))
    return "started\n"


# ------------------------------------------------------------------------ 2. factories

@app.get("/factory")
async def factory(req):
    """?kind= own (replaces fastsock's), chain (wraps the one there, as tracing SDKs do),
    raising."""
    loop = asyncio.get_running_loop()
    if not fastsock_factory:
        fastsock_factory.append(loop.get_task_factory())
    kind = req.query["kind"]
    if kind == "own":
        loop.set_task_factory(lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))
    elif kind == "chain":
        outer = loop.get_task_factory()

        def chained(loop, coro, **kw):
            return outer(loop, coro, **kw) if outer else asyncio.Task(coro, loop=loop, **kw)
        loop.set_task_factory(chained)
    elif kind == "raising":
        def raising(loop, coro, **kw):
            raise RuntimeError("the app's task factory failed")
        loop.set_task_factory(raising)
    LOOP[:] = [loop]
    return {"factory": kind}


@app.get("/factory-restore")
def factory_restore(req):
    """Inline (no task: an async route cannot run under a raising factory): fastsock's back."""
    LOOP[0].set_task_factory(fastsock_factory[0])
    return {"factory": "restored"}


# --------------------------------------------------------------------------- 3. the figure

# the bug the figure must see, a synchronous sleep in an async def: saturation_attacks' own
app.get("/blocking")(async_blocking)


@app.get("/awaiting")
async def awaiting(req):
    await asyncio.sleep(_ms(req.query, 50))
    return "awaited\n"


@app.get("/mix")
async def mix(req):
    """Every other request blocks, the others await, as long: the loop held half the time."""
    mix_count[0] += 1
    if mix_count[0] % 2:
        time.sleep(_ms(req.query, 50))
    else:
        await asyncio.sleep(_ms(req.query, 50))
    return "mixed\n"


@app.get("/inline-blocking")
def inline_blocking(req):
    """A plain handler, inline on the loop: while asyncio runs the thread, inside its turn."""
    time.sleep(_ms(req.query, 50))
    return "blocked inline\n"


@app.get("/blocking-callback")
async def blocking_callback(req):
    """The same synchronous sleep in a plain callback of the loop (call_soon), not a task."""
    asyncio.get_running_loop().call_soon(time.sleep, _ms(req.query, 50))
    await asyncio.sleep(_ms(req.query, 50) * 1.2)  # the callback runs meanwhile
    return "called back\n"


@app.get("/block-then-await")
async def block_then_await(req):
    """Holds the loop, then waits: a client may leave at either point."""
    time.sleep(_ms(req.query, 20))
    await asyncio.sleep(_ms(req.query, 20))
    return "done\n"


@app.websocket("/ws")
async def ws_echo(ws: WebSocket):
    """Echo, receiving through create_task and wait_for (the session's awaitable is a
    coroutine to asyncio: it goes through the factory)."""
    await ws.accept()
    while True:
        message = await asyncio.wait_for(asyncio.create_task(ws.receive()), 10)
        if message == "inspect":
            await ws.send(str(_looked_at(asyncio.current_task().get_coro())["state"]))
            continue
        await ws.send(message)


# --------------------------------------------------------------------- FastAPI / Starlette

def make_fastapi():
    import anyio
    from fastapi import BackgroundTasks, Depends, FastAPI
    from fastapi import WebSocket as FastWebSocket
    from fastapi.responses import StreamingResponse

    api = FastAPI()
    done: list[str] = []

    async def resource():
        REQUEST_ID.set("dependency's")
        await asyncio.sleep(0)
        try:
            yield "resource"
        finally:
            await asyncio.sleep(0)
            done.append("dependency closed")

    @api.get("/inspect")
    async def inspect_route():
        return _looked_at(asyncio.current_task().get_coro())

    @api.get("/depends")
    async def depends(value: str = Depends(resource)):
        await asyncio.sleep(0)
        return {"value": value, "context": REQUEST_ID.get()}

    @api.get("/background")
    async def with_background(tasks: BackgroundTasks, id: str):
        async def note():
            await asyncio.sleep(0.01)
            done.append(f"background {id}")
        tasks.add_task(note)
        return {"queued": id}

    @api.get("/done")
    async def what_was_done():
        return {"done": done}

    @api.get("/stream")
    async def stream(n: int = 5):
        return StreamingResponse(_numbers(n), media_type="text/plain")

    @api.get("/taskgroup")
    async def task_group():
        results = []

        async def one(i):
            await anyio.sleep(0.001 * i)
            results.append(i)
        async with anyio.create_task_group() as group:
            for i in range(5):
                group.start_soon(one, i)
        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep(5)
        return {"results": sorted(results), "cancelled": scope.cancelled_caught}

    @api.get("/blocking")
    async def api_blocking(ms: int = 50):
        time.sleep(ms / 1000)
        return {"blocked": ms}

    @api.websocket("/ws")
    async def api_ws(ws: FastWebSocket):
        await ws.accept()
        async for message in ws.iter_text():
            await ws.send_text(message.upper())

    return api


fastapi_app = make_fastapi()
