"""Apps for tests/integration/test_attacks2.py: hostile review of polling streams, FIN while streaming,
results completed after their request was dropped."""
import asyncio
import os
import time
from pathlib import Path

from fastsock import App, Response

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
app = App()


def note(name: str, text: str) -> None:
    (OUT / (name + ".tmp")).write_text(text)
    (OUT / (name + ".tmp")).rename(OUT / name)


def flag(name: str) -> bool:
    return (OUT / ("flag-" + name)).exists()


@app.get("/poll")
def poll(req):
    """Yields b"" until flag ?f= is set (bounded), notes ?name= in its finally."""
    f, name = req.query.get("f", "x"), req.query.get("name", "")
    limit = time.monotonic() + float(req.query.get("secs", "20"))

    def gen():
        try:
            while time.monotonic() < limit:
                if flag(f):
                    yield b"seen\n"
                    return
                yield b""
            yield b"gave-up\n"
        finally:
            if name:
                note(name, "closed")
    if req.query.get("cl"):
        return Response(gen(), headers=[("Content-Length", "5")])
    return gen()


@app.get("/set")
def set_flag(req):
    (OUT / ("flag-" + req.query.get("f", "x"))).write_text("1")
    return "set\n"


@app.get("/hello")
def hello(req):
    return b"hello"


@app.get("/await")
async def wait_flag(req):
    """An async route: the loop runs inside asyncio while it waits (bounded)."""
    f = req.query.get("f", "y")
    for _ in range(2000):
        if flag(f):
            return "awaited\n"
        await asyncio.sleep(0.01)
    return "gave-up\n"


class AsyncBody:
    """An async iterator that owns a resource: its aclose() must be called."""

    def __init__(self, name, n=3):
        self.name, self.n = name, n

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.n <= 0:
            raise StopAsyncIteration
        self.n -= 1
        await asyncio.sleep(0.05)
        return b"chunk\n"

    async def aclose(self):
        if self.name:
            note(self.name, "aclosed")


@app.get("/abody")
def abody(req):
    return Response(AsyncBody(req.query.get("name", ""), int(req.query.get("n", "3"))))


@app.get("/abody-late", threaded=True, timeout=0.2)
def abody_late(req):
    """A thread handler that returns an owning async iterator after its 504."""
    time.sleep(0.6)
    return Response(AsyncBody(req.query.get("name", "")))


@app.get("/gen-late", threaded=True, timeout=0.2)
def gen_late(req):
    """A thread handler that returns a generator after its 504."""
    name = req.query.get("name", "")
    time.sleep(0.6)

    def gen():
        try:
            yield b"x"
        finally:
            note(name, "closed")
    g = gen()
    next(g)                     # started: its finally is owed
    return Response(g)


@app.route("/cl", methods=["GET", "HEAD"])
def cl(req):
    """?v=: declared Content-Length (absent: none); ?b=: bytes in ?parts= pieces."""
    q = req.query
    n, parts = int(q.get("b", "5")), int(q.get("parts", "1"))
    hdrs = [("Content-Length", q["v"])] if "v" in q else []
    return Response((b"z" * (n // parts) for _ in range(parts)), headers=hdrs)
