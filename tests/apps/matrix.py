"""The apps of the response matrix (tests/integration/test_matrix.py, issue 19): one route per response kind
and handler kind, for the native App (`app`), WSGI (`wsgi_app`) and ASGI (`asgi_app`).

Every request names its body's size (?n=BYTES) and a marker (?mark=NAME): a producer that
streams writes how it ended to $FASTSOCK_TEST_DIR/NAME, once, as "<how> <bytes handed out>":
  done      it handed out its whole body
  closed    it was closed before the end (generator finally on GeneratorExit, close(), aclose())
  unstarted a generator that never ran was let go (close() on a generator that never started
            runs none of its code, its finally included: being released is all it can see)
  gone      ASGI: send() raised or receive() said http.disconnect (any kind: the app is
            the producer)
  cancelled an async handler cancelled before it answered (any kind: the handler is the
            producer until it returns one)
Bodies are BODY's bytes (hex text, so also a valid str) repeated up to n; ?file=data|huge
reads $FASTSOCK_TEST_DIR/data.bin (BODY, written by the test) or huge.bin (sparse, endless
for a client that leaves); ?delay=SECONDS makes the handler (or app) slow to answer.
"""
import asyncio
import gc
import hashlib
import io
import os
import threading
import time
import weakref
from pathlib import Path
from wsgiref.util import FileWrapper

from fastsock import App

OUT = Path(os.environ.get("FASTSOCK_TEST_DIR", "/tmp"))
SIZE = 3 << 20                      # the body of a cell that is read: larger than the output
BODY = hashlib.shake_256(b"fastsock matrix").hexdigest(SIZE // 2).encode()   # bound (1 MiB)
CHUNK = 64 << 10
BLOCK = 64 << 10


def body(n: int) -> bytes:
    """The first n bytes of BODY repeated: what every kind sends for ?n=."""
    reps, rest = divmod(n, SIZE)
    return BODY * reps + BODY[:rest]


def pieces(n: int):
    """body(n) in CHUNK-sized pieces, made as they are asked for (n may be ~endless)."""
    off = 0
    while off < n:
        start = off % SIZE
        piece = BODY[start:start + min(CHUNK, n - off, SIZE - start)]
        off += len(piece)
        yield piece


def note(name: str, text: str) -> None:
    """The producer's end, written once (renamed into place: never seen half-written)."""
    path = OUT / name
    if path.exists():               # a second end would be a bug of the server: keep both
        text = path.read_text() + "|" + text
    (OUT / (name + ".tmp")).write_text(text)
    (OUT / (name + ".tmp")).rename(path)


def _params(query: str) -> dict:
    return dict(p.split("=", 1) for p in query.split("&") if "=" in p)


def _released_unstarted(mark: str, state: dict) -> None:
    if not state["started"]:
        note(mark, "unstarted 0")


def _watch(gen, mark: str, state: dict):
    """A generator's end when it never ran: its release (weakref.finalize)."""
    weakref.finalize(gen, _released_unstarted, mark, state)
    return gen


def gen_body(mark: str, n: int):
    """A plain generator of body(n); its finally records how it ended."""
    state = {"started": False}

    def gen():
        state["started"] = True
        sent, how = 0, "closed"
        try:
            for piece in pieces(n):
                yield piece
                sent += len(piece)
            how = "done"
        finally:
            note(mark, f"{how} {sent}")
    return _watch(gen(), mark, state)


def agen_body(mark: str, n: int):
    """An async generator of body(n); its finally records how it ended (aclose(), or the
    task pushing it cancelled)."""
    state = {"started": False}

    async def agen():
        state["started"] = True
        sent, how = 0, "closed"
        try:
            for i, piece in enumerate(pieces(n)):
                if i % 8 == 7:
                    await asyncio.sleep(0)      # an async producer, not a loop in disguise
                yield piece
                sent += len(piece)
            how = "done"
        finally:
            note(mark, f"{how} {sent}")
    return _watch(agen(), mark, state)


class FileBlocks:
    """A file read in blocks (what fastsock offers for files: a plain iterator; the server has
    no sendfile path). The file is open from the handler on: close() is the producer told."""

    def __init__(self, path: Path, mark: str):
        self.f, self.mark, self.sent = open(path, "rb"), mark, 0

    def __iter__(self):
        return self

    def __next__(self):
        block = self.f.read(BLOCK)
        if not block:
            self._end("done")
            raise StopIteration
        self.sent += len(block)
        return block

    def close(self):
        self._end("closed")

    def _end(self, how: str) -> None:
        if not self.f.closed:
            self.f.close()
            note(self.mark, f"{how} {self.sent}")


def _file(params: dict) -> Path:
    return OUT / ("huge.bin" if params.get("file") == "huge" else "data.bin")


# ---------------------------------------------------------------------------- resources

def stats(own_task: bool) -> str:
    """'PID TASKS POOL': this worker's pid, its asyncio tasks (over every live loop: a WSGI
    app's pool thread has none of its own; -1 when the worker has no asyncio loop) and its
    pool threads (threading's names for them)."""
    loops = [o for o in gc.get_objects()
             if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed()]
    tasks = sum(len(asyncio.all_tasks(loop)) for loop in loops) - own_task if loops else -1
    pool = sum(t.name == "fastsock-handler" for t in threading.enumerate())
    return f"{os.getpid()} {tasks} {pool}"


# ---------------------------------------------------------------------------- native App

app = App()
RUNNERS = ("inline", "async", "thread")
NATIVE_KINDS = ("bytes", "str", "json", "gen", "agen", "file")


def native_result(kind: str, req):
    params = dict(req.query.items())
    n, mark = int(params.get("n", SIZE)), params.get("mark", "unnamed")
    if kind == "bytes":
        return body(n)
    if kind == "str":
        return body(n).decode("ascii")
    if kind == "json":
        return {"data": body(n).decode("ascii")}
    if kind == "gen":
        return gen_body(mark, n)
    if kind == "agen":
        return agen_body(mark, n)
    if kind == "file":
        return FileBlocks(_file(params), mark)
    raise ValueError(kind)


def _delay(params) -> float:
    """?delay=: seconds the handler takes before it answers (a slow handler, so that what
    the client does meanwhile — a half-close — reaches the server while it works)."""
    return float(params.get("delay", 0))


def _register(runner: str, kind: str) -> None:
    path = f"/{runner}/{kind}"
    if runner == "async":
        async def handler(req):
            try:
                await asyncio.sleep(_delay(req.query))
            except asyncio.CancelledError:      # the handler is the producer, so far
                note(req.query.get("mark", "unnamed"), "cancelled 0")
                raise
            return native_result(kind, req)
        app.get(path)(handler)
    else:
        def handler(req):
            time.sleep(_delay(req.query))   # inline: the worker's loop waits with it
            return native_result(kind, req)
        app.get(path, threaded=runner == "thread")(handler)


for _runner in RUNNERS:
    for _kind in NATIVE_KINDS:
        _register(_runner, _kind)


@app.get("/pid")
def pid(req):
    return str(os.getpid())


@app.get("/stats")
def native_stats(req):
    return stats(own_task=False)


@app.get("/hold", threaded=True)
def hold(req):
    """Keeps a pool thread busy for ?s= seconds: the warm-up that starts every pool thread."""
    threading.Event().wait(float(req.query.get("s", "0.2")))
    return stats(own_task=False)


# ---------------------------------------------------------------------------- WSGI

WSGI_KINDS = ("list", "gen", "file")


class MarkedFile(io.FileIO):
    """A file whose close() records the producer's end (wsgiref's FileWrapper calls it)."""

    def __init__(self, path, mark: str):
        super().__init__(path, "rb")
        self.mark, self.sent, self.eof = mark, 0, False

    def read(self, size=-1):
        data = super().read(size)
        self.sent += len(data)
        self.eof = self.eof or not data
        return data

    def close(self):
        if not self.closed:
            super().close()
            note(self.mark, f"{'done' if self.eof else 'closed'} {self.sent}")


def wsgi_app(environ, start_response):
    path, params = environ["PATH_INFO"], _params(environ["QUERY_STRING"])
    n, mark = int(params.get("n", SIZE)), params.get("mark", "unnamed")
    time.sleep(_delay(params))
    if path == "/pid":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/stats":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [stats(own_task=False).encode()]
    if path == "/hold":
        threading.Event().wait(float(params.get("s", "0.2")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [stats(own_task=False).encode()]
    if path == "/wsgi/list":            # a list: the server knows it whole
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return list(pieces(n))
    if path == "/wsgi/gen":             # a generator: its own close() is the iterable's
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return gen_body(mark, n)
    if path == "/wsgi/file":            # no wsgi.file_wrapper in fastsock's environ: wsgiref's
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        wrapper = environ.get("wsgi.file_wrapper", FileWrapper)
        return wrapper(MarkedFile(_file(params), mark), BLOCK)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


# ---------------------------------------------------------------------------- ASGI

ASGI_KINDS = ("bytes", "stream", "file")


async def _asgi_text(send, data: bytes, content_type=b"text/plain") -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": data})


async def _asgi_stream(send, chunks, mark: str) -> None:
    """Each chunk in its own http.response.body (more_body); the end noted: done, or gone
    when send() raised (the client left, or HEAD: no body goes out)."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    sent, how = 0, "closed"
    try:
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
        await send({"type": "http.response.body", "body": b""})
        how = "done"
    except OSError:
        how = "gone"
        raise
    finally:
        note(mark, f"{how} {sent}")


def _blocks(f):
    while True:
        block = f.read(BLOCK)
        if not block:
            return
        yield block


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path, params = scope["path"], _params(scope["query_string"].decode())
    n, mark = int(params.get("n", SIZE)), params.get("mark", "unnamed")
    await asyncio.sleep(_delay(params))
    if path == "/pid":
        return await _asgi_text(send, str(os.getpid()).encode())
    if path == "/stats":
        return await _asgi_text(send, stats(own_task=True).encode())
    if path == "/asgi/bytes":           # one message: the server sends it whole
        try:
            return await _asgi_text(send, body(n), b"application/octet-stream")
        except OSError:                 # send() raised: the client is gone
            note(mark, "gone 0")
            raise
    if path == "/asgi/stream":
        return await _asgi_stream(send, pieces(n), mark)
    if path == "/asgi/file":
        with open(_file(params), "rb") as f:
            return await _asgi_stream(send, _blocks(f), mark)
    await _asgi_text(send, b"not found")
