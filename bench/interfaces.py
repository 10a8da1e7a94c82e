"""The apps people already have, one worker each, in one run: req/s and server CPU per request.

- wsgi: a Flask hello on fastsock, gunicorn (gthread) and granian (WSGI);
- fastapi: a FastAPI hello on fastsock, uvicorn (httptools + uvloop) and granian (ASGI);
- asgi: a raw ASGI hello on the same three.

Every server runs one worker with the same number of threads for WSGI (--threads), pinned to
core 0; wrk runs on core 1. --repeat N reports medians.

    python bench/interfaces.py [--duration 5] [--repeat 1] [--only wsgi,fastapi,asgi]
                               [--threads 8] [--connections 64]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402
from waiting import measure  # noqa: E402

THREADS = 8


def fastsock(app: str, *extra: str):
    return lambda port: bench.start_fastsock(port, "--threads", str(THREADS), *extra, app=app)


def uvicorn(app: str):
    return lambda port: (bench.pinned(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level",
         "warning"], cwd=HERE), lambda: None)


def granian(app: str, interface: str):
    def start(port):
        extra = ["--blocking-threads", str(THREADS)] if interface == "wsgi" else []
        return bench.pinned([sys.executable, "-m", "granian", "--interface", interface,
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             *extra, "--log-level", "warning", "--no-ws", app],
                            cwd=HERE), lambda: None
    return start


def gunicorn(app: str):
    return lambda port: (bench.pinned(
        [sys.executable, "-m", "gunicorn", "-k", "gthread", "--threads", str(THREADS), "-w", "1",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", app], cwd=HERE), lambda: None)


GROUPS = {
    "wsgi": {"fastsock": fastsock("flask_hello:app"),
             "gunicorn-gthread": gunicorn("flask_hello:app"),
             "granian": granian("flask_hello:app", "wsgi")},
    "fastapi": {"fastsock": fastsock("fastapi_hello:app"), "uvicorn": uvicorn("fastapi_hello:app"),
                "granian": granian("fastapi_hello:app", "asgi")},
    "asgi": {"fastsock": fastsock("asgi_hello:app"), "uvicorn": uvicorn("asgi_hello:app"),
             "granian": granian("asgi_hello:app", "asgi")},
}


def main() -> int:
    global THREADS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--only", default=",".join(GROUPS))
    args = ap.parse_args()
    THREADS = args.threads
    import os
    import platform
    import time
    print(f"# {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; one worker on core {bench.SERVER_CORE}, "
          f"{THREADS} threads for WSGI; wrk -t1 -c{args.connections} on core "
          f"{bench.CLIENT_CORE}, {args.duration}s per run"
          + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    print("| app | server | req/s | p99 ms | server CPU µs/req | vs fastsock (CPU) |")
    print("|-----|--------|-------|--------|-------------------|-------------------|")
    summary = []
    for group in args.only.split(","):
        servers = GROUPS[group]
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for name, start in servers.items():
                r = measure(start, args.duration, args.connections)
                runs.setdefault(name, []).append(r)
                print(f"  {group} {name}: {r['rps']:.0f} req/s, {r['cpu_us']:.1f} µs/req",
                      file=sys.stderr)
        med = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
               for name, rs in runs.items()}
        fs = med["fastsock"]
        for name, r in med.items():
            print(f"| {group} | {name} | {r['rps']:.0f} | {r['p99_ms']:.2f} | {r['cpu_us']:.1f} "
                  f"| {r['cpu_us'] / fs['cpu_us']:.2f}x |"
                  + (f" {r['bad']:.0f} bad" if r["bad"] else ""))
        for name, r in med.items():
            if name != "fastsock":
                summary.append(f"{group}: fastsock/{name} req/s {fs['rps'] / r['rps']:.2f}x, "
                               f"CPU per request {fs['cpu_us'] / r['cpu_us']:.2f}x")
    print()
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
