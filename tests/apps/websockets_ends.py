"""WebSockets that end every way there is (native, behind the app's layers, raw ASGI), and a
debug route that reads the worker's registry, for tests/integration/test_websocket_ends.py:
the counts (--ws-max-connections' `open`, the handshakes `waiting` for their handler, the
asyncio tasks) must come back to nothing after each way.

    /accept-close        accepts, closes 1000
    /deny                closes before accepting: 403
    /raise-before        raises before answering: 500
    /raise-after         accepts, raises: 1011
    /silent              never answers: 504 at --ws-handshake-timeout (or the client leaves)
    /echo                echoes until the client closes
    /stubborn            never answers; cancelled (a drain), it tries to accept and send
    /accept-on-signal    accepts as soon as GET /release is called (the drain's own tick)
    /counts              {pid, open, waiting, tasks} of the worker that answers
"""
import asyncio
import json
import os

from fastsock import App
from fastsock._message import Response
from fastsock.websocket import WebSocket, WebSockets


def _registry() -> WebSockets:
    """This worker's WebSockets (the runner's, made after this module is imported: recorded
    as it is made, since the worker freezes what the collector would find)."""
    return _MADE[-1]


_MADE: list[WebSockets] = []
_made_init = WebSockets.__init__


def _recorded_init(self, *args, **kw) -> None:
    _made_init(self, *args, **kw)
    _MADE.append(self)


WebSockets.__init__ = _recorded_init        # type: ignore[method-assign]
seen: dict[str, int] = {}


def counts() -> dict:
    reg = _registry()
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    return {"pid": os.getpid(), "open": reg.open, "waiting": len(reg.waiting),
            "tasks": len(tasks), **seen}


def _note(key: str) -> None:
    seen[key] = seen.get(key, 0) + 1


async def accept_close(ws: WebSocket):
    await ws.accept()
    await ws.close(1000)


async def deny(ws: WebSocket):
    await ws.close()


async def raise_before(ws: WebSocket):
    raise RuntimeError("failed before answering")


async def raise_after(ws: WebSocket):
    await ws.accept()
    raise RuntimeError("failed after accepting")


async def silent(ws: WebSocket):
    await asyncio.sleep(3600)


async def echo(ws: WebSocket):
    async for message in ws:
        await ws.send(message)


async def stubborn(ws: WebSocket):
    """Catches its cancellation (a drain's) and tries to go on as if nothing happened."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _note("stubborn_cancelled")
        try:
            await ws.accept()
            await ws.send("too late")
        except Exception as e:      # the test reads which
            _note("stubborn_" + type(e).__name__)


RELEASE: asyncio.Event | None = None


async def accept_on_signal(ws: WebSocket):
    global RELEASE
    if RELEASE is None:
        RELEASE = asyncio.Event()
    await RELEASE.wait()
    await ws.accept()
    async for message in ws:
        await ws.send(message)


async def release(req):
    if RELEASE is not None:
        RELEASE.set()
    return "released"


def _routes(target: App) -> App:
    for path, handler in (("/accept-close", accept_close), ("/deny", deny),
                          ("/raise-before", raise_before), ("/raise-after", raise_after),
                          ("/silent", silent), ("/echo", echo), ("/stubborn", stubborn),
                          ("/accept-on-signal", accept_on_signal)):
        target.websocket(path)(handler)

    @target.get("/counts")
    async def get_counts(req):
        return counts()

    target.get("/release")(release)
    return target


app = _routes(App())

# the same routes behind a middleware and a before hook (fastsock/wslayers.py)
layered = _routes(App())


@layered.middleware
async def slow_or_deny(req, call_next):
    if req.path == "/mw-slow":              # the layers hold the handshake a while first
        await asyncio.sleep(float(req.query.get("s", "0.5")))
    if req.path == "/mw-stubborn":          # cancelled (a drain) in the middleware, it
        try:                                # hands the handshake on all the same
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _note("mw_stubborn_cancelled")
        return await call_next(req)
    if req.path == "/mw-deny-after":        # the handler accepts, the middleware says no
        await call_next(req)
        return Response(b"changed my mind\n", 409)
    return await call_next(req)


@layered.before_request
def hook_deny(req):
    if req.path == "/hook-deny":
        return Response(b"no\n", 401)
    return None


@layered.websocket("/mw-slow")
async def mw_slow(ws: WebSocket):
    await asyncio.sleep(3600)


@layered.websocket("/mw-stubborn")
async def mw_stubborn(ws: WebSocket):
    await asyncio.sleep(3600)


@layered.websocket("/mw-deny-after")
async def mw_deny_after(ws: WebSocket):
    await ws.accept()
    await ws.send("never seen")


@layered.websocket("/hook-deny")
async def hook_denied(ws: WebSocket):
    await ws.accept()


async def asgi_app(scope, receive, send):
    """Raw ASGI: the same ways to end, and /counts."""
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(counts()).encode()})
        return
    path = scope["path"]
    assert (await receive())["type"] == "websocket.connect"
    if path == "/close-before-accept":
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/accept-close":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/raise-before":
        raise RuntimeError("failed before answering")
    elif path == "/raise-after":
        await send({"type": "websocket.accept"})
        raise RuntimeError("failed after accepting")
    elif path == "/return-unanswered":
        return
    elif path == "/silent":
        await asyncio.sleep(3600)
    elif path == "/echo":
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": event.get("text") or ""})
