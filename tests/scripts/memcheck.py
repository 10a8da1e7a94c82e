"""valgrind memcheck over a short mixed load: no leak that grows with the number of requests.

A server with one worker runs under memcheck (Python allocating with malloc, so every object is
seen) twice: once with a load of N rounds, once with 4N. Each round is keep-alive GETs,
a POST with a body (Content-Length and chunked), a pipelined burst, a streamed response, a
1 MiB response, a handler that raises, a 404, a refused request, a client that resets. After a
graceful stop, the worker's "definitely" and "indirectly lost" bytes must be the same in both
runs: what CPython leaves at exit is a constant; a leak per request would grow 4x. Memcheck's
invalid read/write errors must be zero.

    python tests/scripts/memcheck.py [--rounds 25]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.support.servers import free_port  # noqa: E402
from tests.support.sockets import Reader, read_until_close  # noqa: E402


def one_round(port: int) -> None:
    def connect():
        return socket.create_connection(("127.0.0.1", port), timeout=30)

    with connect() as s:
        r = Reader(s, timeout=30)
        for path in ("/", "/n/7", "/users/3", "/nothing", "/missing", "/boom", "/stream"):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: m\r\n\r\n".encode())
            r.response()
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: m\r\nContent-Length: 5\r\n\r\nhello")
        assert r.response()[2] == b"hello"
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n0\r\n\r\n")
        assert r.response()[2] == b"abc"
        s.sendall(b"GET / HTTP/1.1\r\nHost: m\r\n\r\n" * 8)
        for _ in range(8):
            r.response()
        s.sendall(b"GET /big HTTP/1.1\r\nHost: m\r\n\r\n")
        assert len(r.response()[2]) == 1 << 20
    with connect() as s:                                # refused: 400, then closed
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        read_until_close(s, timeout=30)
    s = connect()                                       # a client that resets mid-request
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: m\r\nContent-Length: 100\r\n\r\nabc")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def run(rounds: int) -> dict:
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="fastsock-memcheck-"))
    cmd = ["valgrind", "--tool=memcheck", "--leak-check=full", "--errors-for-leak-kinds=none",
           f"--log-file={tmp}/vg.%p", sys.executable, "-m", "fastsock", "tests.apps.native:app",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "error"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONMALLOC": "malloc"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not start under valgrind")
                time.sleep(0.5)
        for _ in range(rounds):
            one_round(port)
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    logs = {p: p.read_text() for p in tmp.glob("vg.*")}
    # the worker's log is the one whose pid is not the master's
    master_log = tmp / f"vg.{proc.pid}"
    worker_logs = [t for p, t in logs.items() if p != master_log]
    if len(worker_logs) != 1:
        raise RuntimeError(f"expected one worker log, found {len(worker_logs)} in {tmp}")
    text = worker_logs[0]

    def lost(kind: str) -> int:
        m = re.search(rf"{kind} lost: ([\d,]+) bytes", text)
        return int(m.group(1).replace(",", "")) if m else 0
    # errors the worker made itself: its ERROR SUMMARY also counts those the master made
    # before the fork (CPython's start-up, known to memcheck without suppressions)
    errors = len(re.findall(r"^==\d+== (Invalid|Conditional jump|Use of uninitialised|"
                            r"Syscall param|Mismatched free|Source and destination overlap)",
                            text, re.M))
    return {"definitely": lost("definitely"), "indirectly": lost("indirectly"),
            "errors": errors, "log": text, "dir": tmp}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    results = {}
    for rounds in (args.rounds, 4 * args.rounds):
        t0 = time.monotonic()
        results[rounds] = r = run(rounds)
        print(f"{rounds:>5} rounds ({rounds * 14} requests): definitely lost {r['definitely']} B, "
              f"indirectly lost {r['indirectly']} B, memcheck errors {r['errors']} "
              f"({time.monotonic() - t0:.0f}s)", flush=True)
    small, large = results[args.rounds], results[4 * args.rounds]
    ok = True
    for r in (small, large):
        if r["errors"] != 0:
            ok = False
            print(f"memcheck errors: see {r['dir']}", file=sys.stderr)
            print(r["log"][-6000:], file=sys.stderr)
    grew = (large["definitely"] + large["indirectly"]) - (small["definitely"] + small["indirectly"])
    if grew > 0:
        ok = False
        print(f"lost memory grew with the load by {grew} B: see {large['dir']}", file=sys.stderr)
        print(large["log"][-8000:], file=sys.stderr)
    print("memcheck: no leak that grows with requests, no errors" if ok else "memcheck: FAILED")
    if ok:
        for r in (small, large):
            shutil.rmtree(r["dir"], ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
