"""Soak: a bounded mixed load against a real server with several workers, then the checks.

Clients run side by side, each in its own thread, for --duration seconds: keep-alive requests,
a new connection per request, pipelined bursts, bodies (Content-Length and chunked) echoed
back, streamed responses, malformed requests, clients that reset mid-request, clients that
half-close, and slow readers of a large response. Afterwards:

- every valid request got its correct answer (the malformed ones their 4xx);
- no worker restarted (the same worker pids throughout, fastsock_worker_restarts 0);
- the workers' resident memory is flat after warm-up: it grows by at most --rss-bound MiB
  between the end of the first fifth of the run and the end;
- the workers' open sockets are back to their baseline once the clients are gone, and their
  other fds (the asyncio loop's, made by the first async handler or streamed body: a worker's
  once) are those they had after warm-up.

    python tests/scripts/soak.py [--duration 120] [--workers 2] [--rss-bound 8]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.support.servers import free_port  # noqa: E402
from tests.support.sockets import Reader, read_until_close  # noqa: E402
from tests.support.vectors import VECTORS  # noqa: E402


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = Counter()             # requests answered correctly, by client kind
        self.rounds = Counter()         # rounds each kind of client made
        self.failures: list[str] = []

    def good(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.ok[kind] += n
            self.rounds[kind] += 1

    def bad(self, kind: str, why: str) -> None:
        with self.lock:
            self.failures.append(f"{kind}: {why}")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def keep_alive(port, rng):
    with connect(port) as s:
        r = Reader(s, timeout=15)
        for _ in range(50):
            i = rng.randrange(10_000)
            s.sendall(f"GET /n/{i} HTTP/1.1\r\nHost: s\r\n\r\n".encode())
            status, _, body = r.response()
            assert (status, body) == (200, f"n={i}".encode()), (status, body)
    return 50


def short_connection(port, rng):
    with connect(port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        data = read_until_close(s, timeout=15)
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"hello"), data[:100]
    return 1


def pipelined(port, rng):
    n = rng.randint(2, 32)
    with connect(port) as s:
        s.sendall(b"".join(f"GET /n/{i} HTTP/1.1\r\nHost: s\r\n\r\n".encode() for i in range(n)))
        r = Reader(s, timeout=15)
        for i in range(n):
            assert r.response()[2] == f"n={i}".encode()
    return n


def bodies(port, rng):
    body = rng.randbytes(rng.choice([0, 1, 100, 5000, 70_000, 500_000]))
    with connect(port) as s:
        r = Reader(s, timeout=15)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body)
        assert r.response()[2] == body
        chunks = [body[i:i + 7000] for i in range(0, len(body), 7000)]
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n")
        assert r.response()[2] == body
    return 2


def streaming(port, rng):
    with connect(port) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: s\r\n\r\n")
        status, headers, body = Reader(s, timeout=15).response()
    assert status == 200 and body == b"".join(f"chunk {i}\n".encode() for i in range(10))
    return 1


def malformed(port, rng):
    name, raw, status = rng.choice(VECTORS)
    with connect(port) as s:
        s.sendall(raw + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until_close(s, timeout=15)
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), (name, data[:80])
    assert b"SMUGGLED" not in data, name
    return 1                                            # its 4xx is its correct answer


def reset(port, rng):
    s = connect(port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: s\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    return 0                                            # nothing to answer


def half_close(port, rng):
    with connect(port) as s:
        s.sendall(b"GET /n/5 HTTP/1.1\r\nHost: s\r\n\r\nGET /n/6 HTTP/1.1\r\nHost: s\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data = read_until_close(s, timeout=15)
    assert data.count(b"HTTP/1.1 200 ") == 2 and data.endswith(b"n=6"), data[-100:]
    return 2


def slow_reader(port, rng):
    with connect(port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 14)
        s.sendall(b"GET /mb/4 HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        got = 0
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            got += len(chunk)
            time.sleep(0.001)
    assert got > 4 << 20, got
    return 1


CLIENTS = [keep_alive, keep_alive, short_connection, pipelined, bodies, streaming, malformed,
           reset, half_close, slow_reader]


def client_loop(fn, port: int, until: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        try:
            tally.good(fn.__name__, fn(port, rng))
        except Exception as e:                          # noqa: BLE001 (reported at the end)
            tally.bad(fn.__name__, repr(e)[:300])
            time.sleep(0.1)


def workers_of(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").glob("*/children")
            for c in t.read_text().split()]


def rss_kib(pids) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def fds(pids) -> tuple[int, int]:
    """(sockets, other fds) the processes hold."""
    sockets = others = 0
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                is_socket = os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                continue                # closed meanwhile
            sockets += is_socket
            others += not is_socket
    return sockets, others


def scrape(port: int) -> str:
    with connect(port) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        return read_until_close(s, timeout=15).decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rss-bound", type=float, default=8.0,
                        help="MiB the workers' RSS may grow after warm-up")
    args = parser.parse_args()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="fastsock-soak-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastsock", "tests.apps.native:app", "--host", "127.0.0.1", "--port",
         str(port), "--workers", str(args.workers), "--header-timeout", "5"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    failures: list[str] = []
    try:
        deadline = time.monotonic() + 15
        while len(workers_of(proc.pid)) < args.workers or "200 OK" not in scrape_ready(port):
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        pids = sorted(workers_of(proc.pid))
        base_fds = fds(pids)
        tally = Tally()
        start = time.monotonic()
        until = start + args.duration
        threads = [threading.Thread(target=client_loop, args=(fn, port, until, tally, i),
                                    daemon=True) for i, fn in enumerate(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(args.duration / 5)
        warm_rss = rss_kib(pids)
        warm_fds = fds(pids)
        for t in threads:
            t.join(args.duration + 60)
        end_rss = rss_kib(pids)
        time.sleep(1.0)
        end_fds = fds(pids)
        total = sum(tally.ok.values())
        print(f"soak: {args.duration:.0f}s, {args.workers} workers, {total} requests answered "
              f"correctly: " + ", ".join(f"{k} {v}" for k, v in sorted(tally.ok.items()))
              + f"; {tally.rounds['reset']} resets")
        print(f"soak: RSS after warm-up {warm_rss / 1024:.1f} MiB, at the end "
              f"{end_rss / 1024:.1f} MiB (bound +{args.rss_bound} MiB); open sockets "
              f"{base_fds[0]} before, {end_fds[0]} after; other fds {warm_fds[1]} after "
              f"warm-up, {end_fds[1]} at the end")
        failures += tally.failures[:20]
        if tally.failures:
            failures.append(f"{len(tally.failures)} client failures in all")
        if sorted(workers_of(proc.pid)) != pids:
            failures.append(f"workers changed: {pids} -> {sorted(workers_of(proc.pid))}")
        metrics = scrape(port)
        if "fastsock_worker_restarts_total 0.0" not in metrics:
            failures.append("a worker restarted: " + next(
                (l for l in metrics.splitlines() if l.startswith("fastsock_worker_restarts")), "?"))
        if end_rss - warm_rss > args.rss_bound * 1024:
            failures.append(f"RSS grew by {(end_rss - warm_rss) / 1024:.1f} MiB after warm-up")
        if end_fds[0] != base_fds[0]:
            failures.append(f"open sockets {base_fds[0]} before, {end_fds[0]} after")
        if end_fds[1] != warm_fds[1]:
            failures.append(f"other fds {warm_fds[1]} after warm-up, {end_fds[1]} at the end")
        missing = [fn.__name__ for fn in CLIENTS if not tally.rounds[fn.__name__]]
        if missing:
            failures.append(f"no round of {missing} completed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = Path(log.name).read_text(errors="replace")
    if "Traceback" in text.replace("RuntimeError: handler exploded", ""):
        failures.append("a traceback other than the test app's own in the error log")
    for f in failures:
        print("FAIL", f, file=sys.stderr)
    if failures:
        print(f"server log: {log.name}", file=sys.stderr)
        return 1
    os.unlink(log.name)
    print("soak: passed")
    return 0


def scrape_ready(port: int) -> str:
    try:
        with connect(port) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
            return read_until_close(s, timeout=5).decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
