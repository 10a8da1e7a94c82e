"""Instructions per request, counted by valgrind's callgrind: repeatable on a noisy machine
where timings drift. Compares fastsock with metrics on and off, the access log (JSON and text),
the concurrency cap, and a JSON route against its plain-text twin, and JSON of floats,
datetimes and dataclasses (json_rich), each with orjson when it is installed and with the
built-in encoder, an `async def` route and a FastAPI one (the asyncio path), on the same fixed
workload: N keep-alive requests, 16 pipelined per write (--depth), over one connection.

    python bench/instructions.py [--requests 20000] [--depth 16] [--baseline DIR]
                                 [--asyncio-only [--repeat 3]]

--depth 1 sends each request after the last response: one turn of the loop per request, where
what the loop does per turn weighs most.

--baseline DIR adds "before": the same workload on another checkout's fastsock (built in place).
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
HERE = Path(__file__).resolve().parent
# name -> (flags, app, checkout)
VARIANTS = {"metrics on": ([], "examples.hello:app", ROOT),
            "metrics off": (["--no-metrics"], "examples.hello:app", ROOT),
            "metrics on, JSON access log": (["--access-log", "json"], "examples.hello:app", ROOT),
            "metrics on, concurrency cap": (["--limit-concurrency", "1000"],
                                            "examples.hello:app", ROOT),
            "metrics on, text access log": (["--access-log", "text"], "examples.hello:app", ROOT),
            "text route": ([], "text_hello:app", ROOT),
            "JSON route": ([], "json_hello:app", ROOT),
            "JSON route, built-in encoder": ([], "json_hello_builtin:app", ROOT),
            "rich JSON route": ([], "json_rich:app", ROOT),
            "rich JSON, built-in encoder": ([], "json_rich:builtin_app", ROOT),
            "async route": ([], "async_hello:app", ROOT),
            "FastAPI route": ([], "fastapi_hello:app", ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drive(port: int, n: int, depth: int = 16) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")   # wait for a live worker
        while b"\r\n\r\n" not in sock.recv(4096):
            pass
        sent = 0
        while sent < n:
            batch = min(depth, n - sent)
            sock.sendall(REQUEST * batch)
            got = 0
            buf = b""
            while got < batch:
                buf += sock.recv(65536)
                got = buf.count(b"HTTP/1.1 200")
            sent += batch


def count(flags: list[str], app: str, root: Path, n: int, depth: int) -> int:
    """Instructions the worker process executes to serve n requests (start-up subtracted by
    running the same server for a handful of requests)."""
    totals = []
    for requests in (16, n + 16):
        out = Path(tempfile.mkdtemp(prefix="fastsock-callgrind-"))
        port = free_port()
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--trace-children=yes",
             f"--callgrind-out-file={out}/cg.%p", sys.executable, "-m", "fastsock",
             app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--log-level", "warning", *flags],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONHASHSEED": "0",       # the same dict layouts every run
                 "PYTHONPATH": f"{root}{os.pathsep}{HERE}"})
        try:
            drive(port, requests, depth)
        finally:
            proc.terminate()
            proc.wait(120)
        # valgrind runs python under the pid it was started with: any other profile is the
        # worker's (forked, so it also carries what the master did before the fork)
        worker = [f for f in out.glob("cg.*") if f.name != f"cg.{proc.pid}"]
        assert len(worker) == 1, worker
        m = re.search(r"^(?:summary|totals): (\d+)", worker[0].read_text(errors="replace"),
                      re.M)
        totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) // n


ASYNCIO_ROUTES = {"async route": "async_hello:app", "FastAPI route": "fastapi_hello:app"}


def asyncio_only(args) -> int:
    """The asyncio path alone: each route --repeat times (medians), now and --baseline."""
    roots = {"": ROOT} | ({"before, ": args.baseline.resolve()} if args.baseline else {})
    print(f"# instructions per request (callgrind), {args.requests} requests, "
          f"{args.depth} pipelined, median of {args.repeat}")
    for route, app in ASYNCIO_ROUTES.items():
        medians = {}
        for label, root in roots.items():
            runs = [count([], app, root, args.requests, args.depth) for _ in range(args.repeat)]
            medians[label] = statistics.median(runs)
            print(f"{label}{route:<20} {medians[label]:>9.0f}  runs {runs}")
        if args.baseline:
            print(f"{route}, now / before: {medians[''] / medians['before, ']:.3f}x")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--depth", type=int, default=16, help="requests pipelined per write")
    ap.add_argument("--baseline", type=Path, help="another checkout's fastsock, built in place")
    ap.add_argument("--asyncio-only", action="store_true",
                    help="only the async and FastAPI routes (and their befores), --repeat times")
    ap.add_argument("--repeat", type=int, default=3, help="runs per route, with --asyncio-only "
                    "(the asyncio path's batches follow timing: its counts vary a little)")
    args = ap.parse_args()
    if args.asyncio_only:
        return asyncio_only(args)
    variants = dict(VARIANTS)
    if args.baseline:
        variants["before, metrics on"] = ([], "examples.hello:app", args.baseline.resolve())
        variants["before, JSON route"] = ([], "json_hello:app", args.baseline.resolve())
        variants["before, async route"] = ([], "async_hello:app", args.baseline.resolve())
        variants["before, FastAPI route"] = ([], "fastapi_hello:app", args.baseline.resolve())
    results = {name: count(flags, app, root, args.requests, args.depth)
               for name, (flags, app, root) in variants.items()}
    base = results["metrics off"]
    print(f"# instructions per request (callgrind), {args.requests} requests, "
          f"{args.depth} pipelined")
    for name, value in results.items():
        print(f"{name:<28} {value:>8}  ({value / base:.3f}x of metrics off)")
    print(f"JSON route / text route: {results['JSON route'] / results['text route']:.3f}x")
    builtin = results["JSON route, built-in encoder"]
    print(f"JSON route, orjson (when installed) / built-in encoder: "
          f"{results['JSON route'] / builtin:.3f}x")
    print(f"rich JSON route, orjson (when installed) / built-in encoder: "
          f"{results['rich JSON route'] / results['rich JSON, built-in encoder']:.3f}x")
    for fmt in ("JSON", "text"):
        print(f"{fmt} access log / metrics on: "
              f"{results[f'metrics on, {fmt} access log'] / results['metrics on']:.3f}x")
    if args.baseline:
        print(f"metrics on, now / before: "
              f"{results['metrics on'] / results['before, metrics on']:.3f}x")
        before_json = results["before, JSON route"]
        print(f"JSON route, now / before: {results['JSON route'] / before_json:.3f}x; "
              f"built-in encoder, now / before: {builtin / before_json:.3f}x")
        for route in ("async route", "FastAPI route"):
            print(f"{route}, now / before: "
                  f"{results[route] / results[f'before, {route}']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
