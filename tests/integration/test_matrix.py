"""Issue 19, "Must hold 3": every response kind x method x handler kind x client behaviour, over
real sockets, against one server per interface (native App, WSGI, ASGI; --workers 2
--threads 4). Apps: tests/apps/matrix.py.

  native  handler inline | async | thread  x  bytes, str, json (whole), iterator (generator),
          asynciter (async generator), file (a plain iterator reading a file in blocks, with
          close(): fastsock has no sendfile path nor file response)
  WSGI    list (whole), closinggen (a generator: its close()), file (wsgiref's FileWrapper:
          fastsock's environ has no wsgi.file_wrapper)
  ASGI    bytes (one message), stream (a body message per chunk, more_body), file (blocks)
  each x GET, HEAD x reads, slow (16 KiB / 2 ms), leaves (mid-body), halfclose, pipeline
  = 180 + 30 + 30 cells.

A cell either completes correctly (status, content type, framing, exact body; HEAD: GET's
Content-Length or chunked framing, no body byte, and the request after it parses), or is
abandoned with its producer told: every streamed producer writes how it ended to a marker
file named per request (apps_matrix's docstring), and the cell waits for it — for a body
wholly sent too ("done", its file closed), so every streamed cell ends with its producer's end
seen. A half-close may also abandon a handler that does not run inline before it answers
(the server's policy: Run.halfclose).

One test per server runs that server's cells in order and collects every failing cell into
one assertion (a cell names itself: "thread-iterator-HEAD-leaves"); its last step checks that
the workers' threads, fds, asyncio tasks and RSS are back at their baseline, and that nothing
was logged at ERROR. One test, not parametrised tests plus a last one: the baseline is taken
before the first cell and checked after the last whatever -k, -x or the order of collection
say, and a failing cell does not hide the others. FASTSOCK_MATRIX=GLOB runs only the cells
whose id matches (to debug one).
"""
from __future__ import annotations

import fnmatch
import itertools
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps import matrix as apps
from tests.support.servers import start_server
from tests.support.sockets import Reader, read_until_close

WORKERS, THREADS = 2, 4
SIZE = apps.SIZE                    # 3 MiB: three times the output's high water mark
LEAVE_WHOLE = 8 << 20               # a whole body the client leaves: more than the kernel's
                                    # send buffer can hold (tcp_wmem's 4 MiB), so the server
                                    # still holds output when the client goes
ENDLESS = 1 << 30                   # a streamed body the client leaves: it never ends first
SMALL_RCVBUF = 64 << 10             # the client's receive window (slow, leaving clients)
SLOW_BYTES, SLOW_PAUSE = 16 << 10, 0.002    # the paced reader: 16 KiB per 2 ms (~8 MB/s)
LEAVE_AFTER = 256 << 10             # body bytes a leaving client reads before it closes
MARK_TIMEOUT = 5.0
HALFCLOSE_DELAY = 0.05              # the handler's time to answer a half-closing client
RSS_SLACK = 8 << 20                 # see check_baseline
FOLLOW = b"GET /pid HTTP/1.1\r\nHost: t\r\n\r\n"
CLIENTS = ("reads", "slow", "leaves", "halfclose", "pipeline")
METHODS = ("GET", "HEAD")
ENDS_ABANDONED = ("closed", "unstarted", "gone", "cancelled")


# ---------------------------------------------------------------------------- cells

@dataclass(frozen=True)
class Kind:
    name: str
    path: str
    streamed: bool                  # a producer that hands out chunks (and records its end)
    content_type: str
    expected: object                # n -> the exact body
    file: bool = False


def _raw(n: int) -> bytes:
    return apps.body(n)


def _json(n: int) -> bytes:
    return json.dumps({"data": apps.body(n).decode("ascii")}, separators=(",", ":")).encode()


OCTETS = "application/octet-stream"


def native_kinds(runner: str) -> list[Kind]:
    p = f"/{runner}/"
    return [Kind("bytes", p + "bytes", False, OCTETS, _raw),
            Kind("str", p + "str", False, "text/plain; charset=utf-8", _raw),
            Kind("json", p + "json", False, "application/json", _json),
            Kind("iterator", p + "gen", True, OCTETS, _raw),
            Kind("asynciter", p + "agen", True, OCTETS, _raw),
            Kind("file", p + "file", True, OCTETS, _raw, file=True)]


WSGI_KINDS = [Kind("list", "/wsgi/list", False, OCTETS, _raw),
              Kind("closinggen", "/wsgi/gen", True, OCTETS, _raw),
              Kind("file", "/wsgi/file", True, OCTETS, _raw, file=True)]
ASGI_KINDS = [Kind("bytes", "/asgi/bytes", False, OCTETS, _raw),
              Kind("stream", "/asgi/stream", True, OCTETS, _raw),
              Kind("file", "/asgi/file", True, OCTETS, _raw, file=True)]


@dataclass(frozen=True)
class Cell:
    handler: str
    kind: Kind
    method: str
    client: str

    @property
    def id(self) -> str:
        return f"{self.handler}-{self.kind.name}-{self.method}-{self.client}"


def cells_of(handlers_kinds: list[tuple[str, list[Kind]]]) -> list[Cell]:
    cells = [Cell(h, k, m, c) for h, kinds in handlers_kinds
             for k, m, c in itertools.product(kinds, METHODS, CLIENTS)]
    only = os.environ.get("FASTSOCK_MATRIX")
    return [c for c in cells if not only or fnmatch.fnmatch(c.id, only)]


SERVERS = {
    "native": ("tests.apps.matrix:app",
               [(r, native_kinds(r)) for r in ("inline", "async", "thread")]),
    "wsgi": ("tests.apps.matrix:wsgi_app", [("wsgi", WSGI_KINDS)]),
    "asgi": ("tests.apps.matrix:asgi_app", [("asgi", ASGI_KINDS)]),
}


# ---------------------------------------------------------------------------- clients

class CountingReader(Reader):
    """A Reader that remembers whether anything at all arrived (response() takes the head
    out of its buffer, so an empty buffer does not mean nothing came)."""

    received = 0

    def _more(self) -> None:
        before = len(self.buf)
        try:
            super()._more()
        finally:
            self.received += len(self.buf) - before


class SlowReader(Reader):
    """A client on a slow link: 16 KiB every 2 ms. The pause paces the client (its
    behaviour); it waits for no condition."""

    def _more(self) -> None:
        time.sleep(SLOW_PAUSE)
        data = self.sock.recv(SLOW_BYTES)
        if not data:
            raise ConnectionError(f"closed with {self.buf[:200]!r} unread")
        self.buf += data


def connect(port: int, rcvbuf: int | None = None, timeout: float = 10.0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:                      # before connect: the window the handshake announces
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_head(reader: Reader) -> tuple[int, dict]:
    status, headers, _ = reader.response(head_only=True)
    return status, headers


class Run:
    """One server's cells: the marker names, the checks."""

    def __init__(self, server, out: Path):
        self.server, self.out = server, out
        self.counter = itertools.count()

    def wait_mark(self, name: str) -> str:
        path = self.out / name
        deadline = time.monotonic() + MARK_TIMEOUT
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return path.read_text() if path.exists() else "(no end recorded)"

    def request(self, cell: Cell, n: int, mark: str, huge: bool = False,
                delay: float = 0) -> bytes:
        query = (f"n={n}&mark={mark}" + ("&file=huge" if huge else "")
                 + (f"&delay={delay}" if delay else ""))
        return f"{cell.method} {cell.kind.path}?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode()

    def check_response(self, cell: Cell, n: int, status: int, headers: dict, body: bytes):
        kind = cell.kind
        expected = kind.expected(n)
        assert status == 200, (status, headers, body[:200])
        assert headers.get("content-type") == kind.content_type, headers
        if kind.streamed:
            assert headers.get("transfer-encoding") == "chunked", headers
            assert "content-length" not in headers, headers
        else:
            assert headers.get("content-length") == str(len(expected)), headers
        if cell.method == "HEAD":
            assert body == b""
        else:
            assert len(body) == len(expected), (len(body), len(expected))
            assert body == expected, "the body differs from what the producer made"

    def check_follow(self, reader: Reader) -> None:
        """The request after it parses: the next bytes are its response, nothing between."""
        while len(reader.buf) < 9:
            reader._more()
        assert reader.buf.startswith(b"HTTP/1.1 "), reader.buf[:100]
        status, _, body = reader.response()
        assert status == 200 and body.isdigit(), (status, body)

    def check_mark(self, cell: Cell, mark: str, completed: bool, n: int,
                   producer: bool = False) -> None:
        """A streamed producer's end: done with all of it when the body was wholly sent,
        else abandoned (closed, released unstarted, the ASGI app's send raising, the async
        handler cancelled). producer: a whole kind's handler was abandoned (it is the
        producer)."""
        if not (cell.kind.streamed or producer):
            return
        end = self.wait_mark(mark)
        assert "|" not in end, f"the producer ended twice: {end!r}"
        if completed:
            assert end == f"done {n}", f"sent whole, but the producer's end was {end!r}"
        else:
            assert end.split()[0] in ENDS_ABANDONED, \
                f"abandoned, but the producer's end was {end!r}"

    # -- the client behaviours

    def run(self, cell: Cell) -> None:
        mark = f"{cell.id}-{next(self.counter)}"
        getattr(self, cell.client)(cell, mark)

    def reads(self, cell: Cell, mark: str, slow: bool = False) -> None:
        with connect(self.server.port, SMALL_RCVBUF if slow else None) as s:
            reader = (SlowReader if slow else Reader)(s, timeout=10)
            s.sendall(self.request(cell, SIZE, mark))
            status, headers, body = reader.response(head_only=cell.method == "HEAD")
            self.check_response(cell, SIZE, status, headers, body)
            s.sendall(FOLLOW)
            self.check_follow(reader)
        self.check_mark(cell, mark, cell.method == "GET", SIZE)

    def slow(self, cell: Cell, mark: str) -> None:
        self.reads(cell, mark, slow=True)

    def pipeline(self, cell: Cell, mark: str) -> None:
        with connect(self.server.port) as s:
            reader = Reader(s, timeout=10)
            s.sendall(self.request(cell, SIZE, mark) + FOLLOW)
            status, headers, body = reader.response(head_only=cell.method == "HEAD")
            self.check_response(cell, SIZE, status, headers, body)
            self.check_follow(reader)
        self.check_mark(cell, mark, cell.method == "GET", SIZE)

    def halfclose(self, cell: Cell, mark: str) -> None:
        """The request, then the client's FIN. The handler takes HALFCLOSE_DELAY to answer,
        so the FIN reaches the server while it works (without, whether it does is a race).
        Either the response comes whole and the server then closes; or the server takes
        the FIN for the client gone — while a handler that does not run inline works (no
        answer), or while a response streams (cut mid-body) — its policy, _loop.pyx
        Loop._on_event and _conn_io.pyx ConnIO._on_readable, "as nginx's 499 and uvicorn's
        disconnect". Abandoned, the producer must
        be told: an async handler cancelled, an ASGI app's send() raising, a streamed body
        closed. A thread or WSGI handler's whole body has nobody to tell (a thread cannot
        be stopped; its result is dropped)."""
        with connect(self.server.port) as s:
            reader = CountingReader(s, timeout=10)
            s.sendall(self.request(cell, SIZE, mark, delay=HALFCLOSE_DELAY))
            s.shutdown(socket.SHUT_WR)
            answered = completed = True
            try:
                status, headers, body = reader.response(head_only=cell.method == "HEAD")
            except ConnectionError:
                completed = False
                answered = reader.received > 0
                if answered:                # cut mid-body: a stream abandoned
                    assert cell.kind.streamed and cell.method == "GET", \
                        f"cut short after {reader.received} bytes"
                else:
                    assert cell.handler != "inline", \
                        "the server closed the connection without an answer"
            if completed:
                self.check_response(cell, SIZE, status, headers, body)
                rest = reader.buf + read_until_close(s, timeout=10)
                assert rest == b"", f"after the response: {rest[:100]!r}"
        if answered:
            self.check_mark(cell, mark, completed and cell.method == "GET", SIZE)
        elif cell.kind.streamed or cell.handler in ("async", "asgi"):
            self.check_mark(cell, mark, False, SIZE, producer=True)

    def leaves(self, cell: Cell, mark: str) -> None:
        """The head and part of the body, then the client closes, its window full: a body
        that cannot have been wholly sent (a whole one larger than the kernel's buffers, a
        stream ~endless)."""
        n = ENDLESS if cell.kind.streamed else LEAVE_WHOLE
        with connect(self.server.port, SMALL_RCVBUF) as s:
            reader = Reader(s, timeout=10)
            s.sendall(self.request(cell, n, mark, huge=cell.kind.file))
            status, headers = read_head(reader)
            assert status == 200, (status, headers)
            if cell.method == "GET":
                while len(reader.buf) < LEAVE_AFTER:
                    reader._more()
        if cell.kind.streamed:
            end = self.wait_mark(mark)
            assert "|" not in end, f"the producer ended twice: {end!r}"
            assert end.split()[0] in ENDS_ABANDONED, \
                f"the client left, but the producer's end was {end!r}"


# ---------------------------------------------------------------------------- resources

def worker_pids(master: int) -> set[int]:
    pids = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def proc_counts(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmRSS:")) << 10
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:       # closed meanwhile
            pass
    return {"threads": len(os.listdir(f"/proc/{pid}/task")), "fds": len(fds),
            "fd_targets": sorted(fds), "rss": rss}


def ask_workers(server, path: str, pids: set[int], timeout: float = 10.0) -> dict[int, list[str]]:
    """path's answer from each worker: -> {pid: the answer's words after the pid}.
    Connections go to the worker holding the fewest (the loop's _balance), so while this
    client holds its earlier connections open the next ones go to the other worker; a worker
    still starting (importing the app, its lifespan) answers later: asked again, bounded in
    connections (8 a round) and time."""
    answers: dict[int, list[str]] = {}
    deadline = time.monotonic() + timeout
    while not pids <= answers.keys() and time.monotonic() < deadline:
        held = []
        try:
            for _ in range(8):
                s = server.connect()
                held.append(s)
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                status, _, body = Reader(s).response()
                assert status == 200, (status, body)
                pid, *rest = body.decode().split()
                answers[int(pid)] = rest
                if pids <= answers.keys():
                    break
        finally:
            for s in held:
                s.close()
        if not pids <= answers.keys():
            time.sleep(0.05)
    assert pids <= answers.keys(), f"{path}: no answer from workers {pids - answers.keys()}"
    return answers


def serving_workers(server, timeout: float = 15.0) -> set[int]:
    """The workers' pids once all of them are forked (one at a time) and answer."""
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(server.proc.pid)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) == WORKERS, (pids, server.log())
    ask_workers(server, "/pid", pids, timeout)
    return pids


def snapshot(server, pids: set[int]) -> dict[int, dict]:
    """Each worker's threads, fds and RSS (/proc), and asyncio tasks (its /stats: -1 when
    it has no asyncio loop, as a WSGI worker has not). Its /stats connections are closed
    before /proc is read; one still closing on the server's side is what the polling in
    check_baseline waits out."""
    tasks = {pid: int(words[0]) for pid, words in ask_workers(server, "/stats", pids).items()}
    return {pid: {**proc_counts(pid), "tasks": tasks[pid]} for pid in pids}


def start_pool(server, pids: set[int], rounds: int = 10) -> None:
    """Warm-up: every worker's pool has started all its threads (--threads). The pool keeps
    its threads for the worker's life (handlers.Runner._work never returns until close()), so
    a baseline taken before they all exist would count the ones a cell starts as a leak;
    after this, the thread count is exact: any thread more is one a cell left."""
    started: dict[int, int] = {}
    for _ in range(rounds):
        socks = [server.connect() for _ in range(2 * WORKERS * THREADS)]
        try:
            for s in socks:
                s.sendall(b"GET /hold?s=0.3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            for s in socks:
                status, _, body = Reader(s).response()
                if status == 200:
                    pid, _tasks, pool = body.decode().split()
                    started[int(pid)] = max(started.get(int(pid), 0), int(pool))
        finally:
            for s in socks:
                s.close()
        if all(started.get(p) == THREADS for p in pids):
            return
    raise AssertionError(f"the warm-up did not start every pool thread: {started}")


def _more_in(after: list[str], before: list[str]) -> list[str]:
    left = list(before)
    more = []
    for target in after:
        if target in left:
            left.remove(target)
        else:
            more.append(target)
    return more


def check_baseline(server, pids: set[int], before: dict[int, dict], log_from: int,
                   timeout: float = 15.0) -> list[str]:
    """Threads, fds and tasks back to at most their baseline, RSS within RSS_SLACK of it,
    polled until a deadline; each quantity passes once it is seen back (an fd of the last
    /stats connection, still closing on the server's side, is not a leak). RSS has slack:
    pymalloc keeps an arena with one live object, CPython its caches, the server its
    buffer pool; a leak of bodies (MiBs per cell, ~100 such cells) is far above it. And
    nothing was logged at ERROR meanwhile."""
    deadline = time.monotonic() + timeout
    pending = {(pid, what) for pid in pids for what in ("threads", "fds", "tasks", "rss")}
    last: dict[int, dict] = {}
    while pending and time.monotonic() < deadline:
        now = worker_pids(server.proc.pid)
        if now != pids:
            return [f"the workers changed: {sorted(pids)} -> {sorted(now)}\n{server.log()}"]
        last = snapshot(server, pids)
        for pid, what in list(pending):
            # a leak is growth: fewer than at the baseline (an fd of the warm-up's last
            # connection still closing when it was taken) is not one
            if (last[pid][what] <= before[pid][what] + RSS_SLACK if what == "rss"
                    else last[pid][what] <= before[pid][what]):
                pending.discard((pid, what))
        if pending:
            time.sleep(0.05)
    bad = []
    for pid, what in sorted(pending):
        if what == "rss":
            bad.append(f"worker {pid}: RSS {before[pid]['rss'] >> 20} MiB -> "
                       f"{last[pid]['rss'] >> 20} MiB (more than {RSS_SLACK >> 20} MiB above)")
        else:
            bad.append(f"worker {pid}: {what} {before[pid][what]} -> {last[pid][what]}"
                       + (f" (new: {_more_in(last[pid]['fd_targets'], before[pid]['fd_targets'])})"
                          if what == "fds" else ""))
    errors = [line for line in server.log()[log_from:].splitlines()
              if " ERROR " in line or " CRITICAL " in line]
    bad += [f"logged: {line}" for line in errors[:10]]
    return bad


# ---------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("matrix")
    (out / "data.bin").write_bytes(apps.BODY)       # the file kind's file: BODY, SIZE bytes
    with open(out / "huge.bin", "wb") as f:         # sparse: ~endless for a client leaving
        f.truncate(ENDLESS)
    return out


def serve(out: Path, app: str):
    # MALLOC_MMAP_THRESHOLD_ fixed (at glibc's default start, 128 KiB): glibc otherwise raises
    # the threshold to the size of each large block freed (up to 32 MiB), after which the
    # bodies' MiBs come from its heaps and stay there when freed (tens of MiB per worker
    # without any leak); fixed, each body-sized block is a mapping of its own, unmapped when
    # freed, and RSS says what is still alive. MALLOC_ARENA_MAX=1: under contention (a busy
    # machine) glibc gives pool threads arenas of their own, each keeping what it freed (a CI
    # run saw a WSGI worker at +14 MiB without a leak); in one arena a leak still grows RSS
    return start_server(out, "--workers", str(WORKERS), "--threads", str(THREADS), app=app,
                        env={"FASTSOCK_TEST_DIR": str(out), "MALLOC_MMAP_THRESHOLD_": "131072",
                             "MALLOC_ARENA_MAX": "1"})


@pytest.fixture(scope="module")
def native_server(out_dir):
    s = serve(out_dir, SERVERS["native"][0])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def wsgi_server(out_dir):
    s = serve(out_dir, SERVERS["wsgi"][0])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def asgi_server(out_dir):
    s = serve(out_dir, SERVERS["asgi"][0])
    yield s
    s.stop()


def run_matrix(name: str, server, out: Path) -> None:
    cells = cells_of(SERVERS[name][1])
    if not cells:
        pytest.skip(f"FASTSOCK_MATRIX selects no {name} cell")
    pids = serving_workers(server)
    run = Run(server, out)
    if name != "asgi":                  # an ASGI worker runs no handler in its pool
        start_pool(server, pids)
    # warm-up: every cell once (imports, buffers, caches, and each pool thread's malloc
    # arena grown to what these bodies need: glibc keeps an arena's freed memory, ~14 MiB
    # per WSGI worker on the first pass, the same after the fourth — a plateau, not a leak);
    # the baseline after it, and the same cells again: a leak of bodies grows per pass
    for cell in cells:
        try:
            run.run(cell)
        except (AssertionError, OSError, ValueError):
            pass                        # the measured pass below reports it
    before = snapshot(server, pids)
    log_from = len(server.log())
    failures = []
    t0 = time.monotonic()
    for cell in cells:
        try:
            run.run(cell)
        except (AssertionError, OSError, ValueError) as e:
            failures.append(f"{cell.id}: {type(e).__name__}: {str(e)[:300]}")
    elapsed = time.monotonic() - t0
    failures += [f"baseline: {line}" for line in check_baseline(server, pids, before, log_from)]
    assert not failures, (f"{len(failures)} of {len(cells)} {name} cells failed "
                          f"({elapsed:.1f} s):\n" + "\n".join(failures))


def test_native_matrix(native_server, out_dir):
    run_matrix("native", native_server, out_dir)


def test_wsgi_matrix(wsgi_server, out_dir):
    run_matrix("wsgi", wsgi_server, out_dir)


def test_asgi_matrix(asgi_server, out_dir):
    run_matrix("asgi", asgi_server, out_dir)
