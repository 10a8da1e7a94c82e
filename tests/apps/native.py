"""The app the integration tests serve."""
import os
import time

from fastsock import App, HTTPError, Response
from tests.support.garbage import freed_since_last_call

app = App()


@app.get("/")
def index(req):
    return "hello"


@app.post("/echo")
def echo(req):
    return req.body


@app.get("/n/{i:int}")
def numbered(req, i):
    return f"n={i}"


@app.get("/users/{user_id:int}")
def user(req, user_id):
    return {"id": user_id, "type": type(user_id).__name__}


@app.get("/files/{rest:path}")
def files(req, rest):
    return rest


@app.route("/inspect", methods=["GET", "POST"])
def inspect(req):
    return {
        "method": req.method, "path": req.path, "query": req.query.items(),
        "headers": req.headers.items(), "client": list(req.client),
        "http_version": req.http_version, "path_params": req.path_params,
    }


@app.post("/json")
def post_json(req):
    data = req.json()
    return {"got": data}, 201


@app.get("/boom")
def boom(req):
    raise RuntimeError("handler exploded")


@app.get("/forbidden")
def forbidden(req):
    raise HTTPError(403, "no entry")


@app.get("/inject")
def inject(req):
    return Response("x", headers=[("X-Evil", "a\r\nSet-Cookie: injected=1")])


@app.get("/stream")
def stream(req):
    return (f"chunk {i}\n" for i in range(10))


@app.get("/stream-fails")
def stream_fails(req):
    def gen():
        yield "first\n"
        raise RuntimeError("stream exploded")
    return gen()


@app.get("/big")
def big(req):
    return b"B" * (1 << 20)


@app.get("/nothing")
def nothing(req):
    return None


@app.get("/pid")
def pid(req):
    return str(os.getpid())


@app.get("/sleep")
def sleep(req):
    time.sleep(float(req.query.get("s", "1")))
    return "slept"


@app.get("/stuck")
def stuck(req):
    """Blocks its worker (an inline handler), once it has written its pid to ?note=."""
    note = req.query["note"]
    with open(note + ".part", "w") as f:    # renamed once written: never seen empty
        f.write(str(os.getpid()))
    os.replace(note + ".part", note)
    time.sleep(float(req.query.get("s", "3")))
    return "unstuck"


@app.get("/smuggled")
def smuggled(req):
    return "SMUGGLED"


BAD_CHUNKS = {"float": 1.5, "dict": {"a": 1}, "surrogate": "\ud800", "none": None, "int": 5}


@app.get("/bad-chunk/{kind}")
def bad_chunk(req, kind):
    def gen():
        yield "before\n"
        yield BAD_CHUNKS[kind]
        yield "after\n"
    return gen()


@app.get("/ctype")
def ctype(req):
    return Response("x", content_type=req.query.get("t", "text/plain"))


@app.get("/mb/{n:int}")
def megabytes(req, n):
    return b"M" * (n << 20)


# --- handlers that wait: async ones on the worker's asyncio loop, threaded ones in its pool

import asyncio  # noqa: E402
import threading  # noqa: E402

concurrency = {"now": 0, "max": 0}
_lock = threading.Lock()


class counted:
    """Counts handlers running at once, to see overlap rather than infer it from timing."""

    def __enter__(self):
        with _lock:
            concurrency["now"] += 1
            concurrency["max"] = max(concurrency["max"], concurrency["now"])

    def __exit__(self, *exc):
        with _lock:
            concurrency["now"] -= 1


@app.get("/concurrency")
def get_concurrency(req):
    out = dict(concurrency)
    if req.query.get("reset"):
        concurrency["max"] = 0
    return out


@app.get("/async/sleep")
async def async_sleep(req):
    with counted():
        await asyncio.sleep(float(req.query.get("s", "0.5")))
    return f"slept {req.query.get('s', '0.5')}"


@app.get("/async/wait")
async def async_wait(req):
    """Waits up to a minute; writes what became of it to the file named by ?mark=."""
    mark = req.query["mark"]
    try:
        await asyncio.sleep(60)
        outcome = "finished"
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    finally:
        _mark(mark, outcome)
    return outcome


@app.get("/async/slow", timeout=0.3)
async def async_slow(req):
    await asyncio.sleep(5)
    return "too late"


@app.get("/async/raise")
async def async_raise(req):
    await asyncio.sleep(0)
    raise RuntimeError("async handler exploded")


@app.get("/async/forbidden")
async def async_forbidden(req):
    raise HTTPError(403, "async no entry")


@app.get("/async/json")
async def async_json(req):
    await asyncio.sleep(0.01)
    return {"async": True, "pid": os.getpid()}


@app.get("/garbage")
def garbage(req):
    """How many objects requests left in reference cycles (tests/support/garbage.py)."""
    return str(freed_since_last_call())


@app.get("/threaded/sleep", threaded=True)
def threaded_sleep(req):
    with counted():
        time.sleep(float(req.query.get("s", "0.2")))
    return f"thread slept in {threading.current_thread().name}"


# --- request bodies streamed in (stream=True)

import hashlib  # noqa: E402


async def _digest(req, pause: float = 0.0) -> dict:
    h, n, chunks = hashlib.sha256(), 0, 0
    async for chunk in req.stream():
        h.update(chunk)
        n, chunks = n + len(chunk), chunks + 1
        if pause:
            await asyncio.sleep(pause)
    return {"bytes": n, "sha256": h.hexdigest(), "chunks": chunks, "body": len(req.body)}


@app.post("/upload", stream=True, max_body_size=64 << 20)
async def upload(req):
    return await _digest(req)


@app.post("/upload-small", stream=True, max_body_size=1000)
async def upload_small(req):
    return await _digest(req)


@app.post("/upload-slow", stream=True, max_body_size=64 << 20)
async def upload_slow(req):
    mark = req.query.get("mark")
    try:
        return await _digest(req, pause=0.002)
    except asyncio.CancelledError:
        if mark:
            _mark(mark, "cancelled")
        raise


@app.post("/upload-early", stream=True)
async def upload_early(req):
    return "no thanks"


# --- generators abandoned mid-stream: each records its end in the file named by ?mark=

def _mark(path: str, text: str) -> None:
    before = open(path).read() if os.path.exists(path) else ""     # a second end shows
    with open(path + ".part", "w") as f:    # renamed once written: never seen empty
        f.write(before + text)
    os.replace(path + ".part", path)


def _ticks(mark: str, every: float):
    try:
        yield "tick\n"
        while True:
            time.sleep(every)               # blocks inside next(): where the client leaves
            yield "tick\n"
    finally:
        _mark(mark, f"finally in {threading.current_thread().name}\n")


class _Ticking:
    """A plain iterator with close(): seen even when no chunk was ever pulled (HEAD)."""

    def __init__(self, mark: str):
        self.mark = mark

    def __iter__(self):
        return self

    def __next__(self):
        time.sleep(0.3)
        return "tick\n"

    def close(self):
        _mark(self.mark, f"closed in {threading.current_thread().name}\n")


@app.get("/threaded/ticks", threaded=True)
def threaded_ticks(req):
    if req.query.get("closing"):
        return _Ticking(req.query["mark"])
    return _ticks(req.query["mark"], 0.3)


@app.get("/inline/ticks")
def inline_ticks(req):
    """A plain generator from an inline handler: pulled in the pool."""
    return _ticks(req.query["mark"], 0.02)


@app.get("/pulled-inline/ticks", pull_inline=True)
def pulled_inline_ticks(req):
    """The same, with the route's opt-in: pulled on the loop."""
    return _ticks(req.query["mark"], 0.02)


def _gated_events(gate: str, n: int):
    """Event i > 0 is made once the file gate.i exists: the generator blocks (sleeps) until
    the test says so, so while it waits the stream is provably mid-way."""
    for i in range(n):
        if i:
            deadline = time.monotonic() + 30         # a hang guard, not a timing
            while not os.path.exists(f"{gate}.{i}") and time.monotonic() < deadline:
                time.sleep(0.01)
        yield f"data: event {i} in {threading.current_thread().name}\n\n"


@app.get("/inline/gated")
def inline_gated(req):
    return Response(_gated_events(req.query["gate"], 3), content_type="text/event-stream")


# --- the writer under stress: refused heads after the output slid, bodiless streams

@app.get("/sized/{n:int}")
def sized(req, n):
    """n bytes that name their request (?i=): a byte out of place shows."""
    tag = f"<{req.query.get('i', '')}>".encode()
    return (tag * (n // len(tag) + 1))[:n]


@app.get("/refused")
def refused(req):
    """?pad= bytes of good header, then a Location from the query (?to=), which the writer
    refuses when it holds a CR or LF."""
    return Response("moved", 302, headers=[("X-Pad", "p" * int(req.query.get("pad", "0"))),
                                           ("Location", req.query.get("to", "/"))])


@app.get("/refused-later", threaded=True)
def refused_later(req):
    """/refused, once the test has opened and closed the FIFO at ?fifo=: the test picks the
    moment (when the output before it is stuck in a full socket)."""
    with open(req.query["fifo"], "rb") as f:
        f.read()
    return refused(req)


STREAMS = {}        # name -> what became of a /bodiless stream: "pulled", "closed"


class _NotedStream:
    """An iterator of chunks that notes in STREAMS when it is pulled and when it is closed."""

    def __init__(self, name):
        self.name, self.chunks = name, iter([b"never", b"sent"])
        STREAMS[name] = []

    def __iter__(self):
        return self

    def __next__(self):
        STREAMS[self.name].append("pulled")
        return next(self.chunks)

    def close(self):
        STREAMS[self.name].append("closed")


@app.route("/bodiless/{status:int}", methods=["GET", "HEAD"])
def bodiless(req, status):
    """A streamed body with the status asked for (?name= names it in STREAMS)."""
    return Response(_NotedStream(req.query["name"]), status)


@app.get("/streams")
def streams(req):
    return STREAMS.get(req.query["name"])


# --- JSON encoded on the loop and in pool threads at once

class Yielding(dict):
    """A dict whose items() lets other threads run (time.sleep(0) gives up the GIL): the
    JSON encoder calls it in the middle of a body."""

    def items(self):
        time.sleep(0)
        return super().items()


def json_value(tag: str, size: int) -> dict:
    """A body that names its request all through, with size bytes of padding after a part
    whose encoding lets other threads run."""
    return {"tag": tag, "before": [tag, 1, 2.5, None], "mid": Yielding({"tag": tag}),
            "pad": "p" * size, "after": {"tag": tag, "mid": Yielding(t=[tag])}}


@app.get("/json/loop")
def json_loop(req):
    """Encoded by the writer, on the worker's loop."""
    return json_value(req.query["tag"], int(req.query["size"]))


@app.get("/json/thread", threaded=True)
def json_thread(req):
    """Encoded by Response(), in a pool thread."""
    return Response(json_value(req.query["tag"], int(req.query["size"])))


# --- an event stream that takes time: its access line and duration end at its last byte

@app.get("/events")
def events(req):
    """?n=COUNT&delay=SECONDS: n events, delay apart (an async generator: the loop stays free)."""
    n, delay = int(req.query.get("n", "4")), float(req.query.get("delay", "0.1"))

    async def gen():
        for i in range(n):
            if i:
                await asyncio.sleep(delay)
            yield f"data: {i}\n\n"
    return Response(gen(), content_type="text/event-stream")


@app.get("/events/sync")
def events_sync(req):
    """The same as a plain generator (time.sleep between events)."""
    n, delay = int(req.query.get("n", "4")), float(req.query.get("delay", "0.1"))

    def gen():
        for i in range(n):
            if i:
                time.sleep(delay)
            yield f"data: {i}\n\n"
    return Response(gen(), content_type="text/event-stream")


# --- the app's own loggers, from every kind of handler: their records carry the request

import logging  # noqa: E402

app_log = logging.getLogger("myapp")


def _log_both(where: str) -> str:
    app_log.info("info from %s", where)
    app_log.warning("warning from %s", where)
    return where


@app.get("/logs/inline")
def logs_inline(req):
    return _log_both(req.path)


@app.get("/logs/async")
async def logs_async(req):
    await asyncio.sleep(0)
    return _log_both(req.path)


@app.get("/logs/thread", threaded=True)
def logs_thread(req):
    return _log_both(req.path)


@app.get("/logs/stream")
def logs_stream(req):
    async def gen():
        await asyncio.sleep(0)
        yield _log_both(req.path)
    return gen()


@app.get("/logs/boom/{n:int}", threaded=True)
def logs_boom(req, n):
    raise RuntimeError(f"boom {n}")
