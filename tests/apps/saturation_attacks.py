"""Apps for tests/integration/test_saturation_attacks.py: every way a request held off the loop
can end (answered, raising, timing out, abandoned by its client), for each kind of handler —
async, thread pool, WSGI (wsgi_app), ASGI (asgi_app), a streamed body, a WebSocket handshake —
and handlers that keep a worker busy in ways its busy time might miss. ?ms= sets how long a
handler takes. /tasks parks ?n= asyncio tasks until /tasks-release."""
import asyncio
import time

from fastsock import App
from fastsock.websocket import WebSocket

app = App()
parked: list[asyncio.Event] = []
background: set[asyncio.Task] = set()


def _ms(query: dict, default: int = 1) -> float:
    return int(query.get("ms", str(default))) / 1000


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@app.get("/async")
async def async_answer(req):
    await asyncio.sleep(_ms(req.query))
    return "async\n"


@app.get("/async-raise")
async def async_raise(req):
    await asyncio.sleep(_ms(req.query))
    raise RuntimeError("an async handler failed")


@app.get("/thread", threaded=True)
def thread_answer(req):
    time.sleep(_ms(req.query))
    return "thread\n"


@app.get("/thread-raise", threaded=True)
def thread_raise(req):
    time.sleep(_ms(req.query))
    raise RuntimeError("a threaded handler failed")


@app.post("/upload", stream=True, max_body_size=1000)
async def upload(req):
    n = 0
    async for chunk in req.stream():
        n += len(chunk)
    return f"{n}\n"


@app.get("/async-blocking")
async def async_blocking(req):
    """A bug the busy time may not see: a synchronous sleep in an async handler."""
    time.sleep(_ms(req.query, 50))
    return "blocked\n"


@app.get("/async-blocking-later")
async def async_blocking_later(req):
    """The same bug in a task of the app's own, after the response: a background job."""
    background.add(asyncio.get_running_loop().create_task(_block_later(_ms(req.query, 50))))
    return "started\n"


async def _block_later(seconds: float) -> None:
    await asyncio.sleep(0)
    time.sleep(seconds)
    background.discard(asyncio.current_task())


@app.get("/own-task-factory")
async def own_task_factory(req):
    """An app that sets a task factory of its own on the worker's loop (replacing fastsock's:
    blocking steps read idle again, docs/saturation.md); its later tasks must run as before."""
    asyncio.get_running_loop().set_task_factory(
        lambda loop, coro, **kwargs: asyncio.Task(coro, loop=loop, **kwargs))
    return "set\n"


@app.get("/thread-spin", threaded=True)
def thread_spin(req):
    """CPU in a pool thread: the loop's thread waits for the GIL meanwhile."""
    _spin(_ms(req.query, 50))
    return "spun\n"


@app.get("/inline-spin")
def inline_spin(req):
    _spin(_ms(req.query, 50))
    return "spun\n"


@app.get("/tasks")
async def park_tasks(req):
    """?n= tasks of the app's own, each waiting on an event of its own until /tasks-release."""
    loop = asyncio.get_running_loop()
    for _ in range(int(req.query.get("n", "1"))):
        event = asyncio.Event()
        parked.append(event)
        loop.create_task(event.wait())
    return f"{len(parked)}\n"


@app.get("/tasks-release")
async def release_tasks(req):
    for event in parked:
        event.set()
    parked.clear()
    return "released\n"


# the same without the thread-pool routes: for --threads 0
no_pool = App()
no_pool.get("/async")(async_answer)
no_pool.get("/inline-spin")(inline_spin)


@app.websocket("/ws")
async def ws_echo(ws: WebSocket):
    await asyncio.sleep(_ms(ws.request.query))     # the handshake held meanwhile
    await ws.accept()
    async for message in ws:
        await ws.send(message)


@app.websocket("/ws-raise")
async def ws_raise(ws: WebSocket):
    await asyncio.sleep(_ms(ws.request.query))
    raise RuntimeError("failed before accepting")


def _wsgi_query(environ) -> dict:
    return dict(p.partition("=")[::2] for p in environ["QUERY_STRING"].split("&") if p)


def wsgi_app(environ, start_response):
    query = _wsgi_query(environ)
    path = environ["PATH_INFO"]
    if path == "/spin":
        _spin(_ms(query, 50))
    else:
        time.sleep(_ms(query))
    if path == "/raise":
        raise RuntimeError("a WSGI app failed")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"wsgi\n"]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return                  # no lifespan
    query = dict(p.partition("=")[::2] for p in scope["query_string"].decode().split("&") if p)
    if scope["path"] == "/spin":
        _spin(_ms(query, 50))
    else:
        await asyncio.sleep(_ms(query))
    if scope["path"] == "/raise":
        raise RuntimeError("an ASGI app failed")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"asgi\n"})
