"""Handlers that wait, one worker each, in one run: req/s and server CPU per request.

- async: a handler awaiting 10 ms under 256 connections — fastsock (`async def`) against
  uvicorn (httptools + uvloop) and granian, both serving a raw ASGI app;
- blocking: a handler sleeping 10 ms in 32 threads under 64 connections — fastsock
  (`threaded=True`, --threads 32) against gunicorn's gthread worker (--threads 32);
- thread hop: the same hello inline and threaded (fastsock), for the price of a hop.

The server runs on core 0, wrk on core 1 (taskset); --repeat N reports medians.

    python bench/waiting.py [--duration 5] [--repeat 1] [--only async,blocking,hop]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402


def fastsock(app: str, *extra: str):
    return lambda port: bench.start_fastsock(port, *extra, app=f"wait_apps:{app}")


def uvicorn(port: int):
    return bench.pinned([sys.executable, "-m", "uvicorn", "asgi_wait:app", "--host", "127.0.0.1",
                         "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                         "--no-access-log", "--log-level", "warning"], cwd=HERE), lambda: None


def granian(port: int):
    return bench.pinned([sys.executable, "-m", "granian", "--interface", "asgi", "--host",
                         "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level",
                         "warning", "--no-ws", "asgi_wait:app"], cwd=HERE), lambda: None


def gunicorn(port: int):
    return bench.pinned([sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", "32",
                         "-w", "1", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                         "wsgi_wait:app"], cwd=HERE), lambda: None


GROUPS = {
    "async": (256, {"fastsock": fastsock("async_app"), "uvicorn": uvicorn, "granian": granian}),
    "blocking": (64, {"fastsock": fastsock("thread_app", "--threads", "32"),
                      "gunicorn-gthread": gunicorn}),
    "hop": (64, {"fastsock-inline": fastsock("inline_hello"),
                 "fastsock-threaded": fastsock("thread_hello", "--threads", "32")}),
}


def measure(start, duration: int, connections: int) -> dict:
    port = bench.free_port()
    proc, cleanup = start(port)
    try:
        bench.wait_port(port)
        bench.wrk(port, 1, connections)                 # warm-up
        user0, sys0 = bench.cpu_split(proc.pid)
        result = bench.wrk(port, duration, connections)
        user1, sys1 = bench.cpu_split(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        cleanup()
    return {"rps": result["rps"], "p99_ms": result["p99_ms"], "bad": result["bad"],
            "cpu_us": (user1 + sys1 - user0 - sys0) / result["requests"] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default="async,blocking,hop")
    args = parser.parse_args()
    print(f"# one worker each; server on core 0, wrk -t1 on core 1, {args.duration}s per run, "
          f"median of {args.repeat}")
    for group in args.only.split(","):
        connections, servers = GROUPS[group]
        print(f"\n{group} ({connections} connections)")
        print(f"| {'server':<18} | {'req/s':>8} | {'p99 ms':>7} | {'CPU µs/req':>10} |")
        print(f"|{'-' * 20}|{'-' * 10}|{'-' * 9}|{'-' * 12}|")
        results = {}
        for name, start in servers.items():
            runs = [measure(start, args.duration, connections) for _ in range(args.repeat)]
            r = results[name] = {k: statistics.median(run[k] for run in runs)
                                 for k in ("rps", "p99_ms", "cpu_us", "bad")}
            print(f"| {name:<18} | {r['rps']:>8.0f} | {r['p99_ms']:>7.2f} | {r['cpu_us']:>10.2f} |"
                  + (f"  ({r['bad']:.0f} non-2xx)" if r["bad"] else ""), flush=True)
        first = next(iter(results))
        for name in list(results)[1:]:
            print(f"{first}/{name}: req/s {results[first]['rps'] / results[name]['rps']:.2f}x, "
                  f"CPU per request {results[first]['cpu_us'] / results[name]['cpu_us']:.2f}x")


if __name__ == "__main__":
    main()
