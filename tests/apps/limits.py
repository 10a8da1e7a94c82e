"""Apps for tests/integration/test_limit_concurrency.py: one route per kind of handler that holds
its request in the app until the test creates the file `release` in $FASTSOCK_TEST_DIR. Each
notes `entered-<id>` (its worker's pid inside) once it is in the app, ?id= naming it. The
same holds for the WSGI app (wsgi_app) and the ASGI app (asgi_app)."""
import asyncio
import os
import time
from pathlib import Path

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
RELEASE = OUT / "release"
HOLD_AT_MOST = 30.0         # seconds: a test that never releases does not leave handlers behind

app = App()


def entered(query: str) -> None:
    rid = dict(p.partition("=")[::2] for p in query.split("&")).get("id", "x")
    (OUT / f"entered-{rid}.tmp").write_text(str(os.getpid()))
    (OUT / f"entered-{rid}.tmp").rename(OUT / f"entered-{rid}")


def released() -> bool:
    return RELEASE.exists()


def hold() -> None:
    limit = time.monotonic() + HOLD_AT_MOST
    while not released() and time.monotonic() < limit:
        time.sleep(0.01)


async def ahold() -> None:
    limit = time.monotonic() + HOLD_AT_MOST
    while not released() and time.monotonic() < limit:
        await asyncio.sleep(0.01)


@app.get("/hold-async")
async def hold_async(req):
    entered(req.query_string.decode())
    await ahold()
    return "released\n"


@app.get("/hold-thread", threaded=True)
def hold_thread(req):
    entered(req.query_string.decode())
    hold()
    return "released\n"


@app.get("/hold-stream")
def hold_stream(req):
    """Answered at once; its body streams until the release: in the app until the last byte."""
    query = req.query_string.decode()

    async def body():
        entered(query)
        yield b"started\n"
        await ahold()
        yield b"released\n"
    return Response(body())


@app.get("/hold-inline")
def hold_inline(req):
    """Holds the worker's loop itself (a blocking inline handler)."""
    entered(req.query_string.decode())
    hold()
    return "released\n"


@app.get("/spin")
def spin(req):
    """Spends ?ms= milliseconds of CPU on the loop."""
    end = time.thread_time() + int(req.query.get("ms", "100")) / 1000
    while time.thread_time() < end:
        pass
    return "spun\n"


@app.get("/hello")
def hello(req):
    return "hello\n"


def wsgi_app(environ, start_response):
    if environ["PATH_INFO"] == "/hold":
        entered(environ["QUERY_STRING"])
        hold()
        body = b"released\n"
    else:
        body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return                  # no lifespan
    if scope["path"] == "/hold":
        entered(scope["query_string"].decode())
        await ahold()
        body = b"released\n"
    else:
        body = b"hello\n"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
