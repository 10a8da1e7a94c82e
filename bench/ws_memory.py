"""Memory per idle WebSocket in one fastsock worker: N WebSockets open, each having echoed one
32 B message (its handler waits in receive), and the growth of the worker's anonymous resident
memory (RssAnon) and Pss divided by N; with --deflate, permessage-deflate negotiated (one
compressed message each). --trace: the worker traces its allocations (tracemalloc) and the
Python objects' share is printed, largest first (tracing costs memory of its own: the RSS
figures of a traced run are not the ones to report).

    python bench/ws_memory.py [--n 1000] [--deflate [--size 100]] [--trace]
                              [--app apps.ws_echo_fastsock:app]
                              [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (pinning, ports, process trees)
from websocket import echo_once, handshake  # noqa: E402  (bench/websocket.py's raw client)


def started(app: str, port: int, env: dict) -> subprocess.Popen:
    """fastsock serving app, one worker pinned to the server core, once it answers."""
    proc = subprocess.Popen(
        ["taskset", "-c", bench.SERVER_CORE, sys.executable, "-m", "fastsock", app, "--host",
         "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level", "warning"],
        cwd=HERE, env={**os.environ, **env,
                       "PYTHONPATH": f"{HERE}{os.pathsep}{bench.ROOT}", **env})
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# what Linux itself allocates for each accepted TCP socket watched by epoll, whatever the server
KERNEL_SLABS = ("TCP", "sock_inode_cache", "filp", "dentry", "eventpoll_epi", "eventpoll_pwq")


def kernel_bytes_per_socket() -> int | None:
    """The sizes of the kernel's slab objects for one accepted, epoll-watched TCP socket (its
    tcp_sock, socket inode, file, dentry and epoll entries; /proc/slabinfo, root only): the
    floor under every server's figure. None when unreadable."""
    try:
        lines = Path("/proc/slabinfo").read_text().splitlines()
    except OSError:
        return None
    sizes = {f[0]: int(f[3]) for f in (line.split() for line in lines[2:])}
    return sum(sizes.get(name, 0) for name in KERNEL_SLABS)


def one_run(args, trace_dir: str | None) -> tuple[float, float]:
    port = bench.free_port()
    env = {"FASTSOCK_BENCH_TRACE": trace_dir} if trace_dir else {}
    proc = started(args.app, port, env)
    socks = []
    try:
        for _ in range(100):                    # warm: first-connection work done once
            sock, _, rest = handshake(port, args.deflate)
            echo_once(sock, rest, args.deflate, args.size)
            sock.close()
        time.sleep(0.5)
        if trace_dir:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_snapshot?tag=before").read()
        rss0, pss0 = bench.rss_anon_kib(proc.pid), bench.pss_kib(proc.pid)
        for _ in range(args.n):
            sock, head, rest = handshake(port, args.deflate)
            if args.deflate and b"permessage-deflate" not in head.lower():
                raise SystemExit("permessage-deflate was not agreed")
            echo_once(sock, rest, args.deflate, args.size)
            socks.append(sock)
        time.sleep(1.0)                         # the worker settles (its timers run)
        rss1, pss1 = bench.rss_anon_kib(proc.pid), bench.pss_kib(proc.pid)
        if trace_dir:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_snapshot?tag=after").read()
        return (rss1 - rss0) * 1024 / args.n, (pss1 - pss0) * 1024 / args.n
    finally:
        for sock in socks:
            sock.close()
        stop(proc)


def show_trace(trace_dir: str, n: int, top: int) -> None:
    before = tracemalloc.Snapshot.load(os.path.join(trace_dir, "before.snapshot"))
    after = tracemalloc.Snapshot.load(os.path.join(trace_dir, "after.snapshot"))
    stats = after.compare_to(before, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"traced Python allocations: {total / n:.0f} bytes per WebSocket")
    for s in stats[:top]:
        if s.size_diff <= 0:
            continue
        frame = s.traceback[0]
        print(f"  {s.size_diff / n:8.1f} B  {s.count_diff / n:5.2f} blocks  "
              f"{frame.filename.replace(str(bench.ROOT) + '/', '')}:{frame.lineno}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--size", type=int, default=32, help="the message each echoes (< 120 B)")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--app", default="apps.ws_echo_fastsock:app")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.trace:
        with tempfile.TemporaryDirectory() as trace_dir:
            one_run(args, trace_dir)
            show_trace(trace_dir, args.n, args.top)
        return 0
    runs = [one_run(args, None) for _ in range(args.repeat)]
    rss = statistics.median(r[0] for r in runs)
    pss = statistics.median(r[1] for r in runs)
    print(f"{args.app}, {args.n} idle WebSockets{' (permessage-deflate)' if args.deflate else ''}"
          f": {rss:.0f} B RssAnon, {pss:.0f} B Pss per WebSocket (median of {args.repeat}: "
          + ", ".join(f"{r[0]:.0f}" for r in runs) + ")")
    kernel = kernel_bytes_per_socket()
    print("the kernel's own per accepted socket (slab objects: " + ", ".join(KERNEL_SLABS)
          + "): " + (f"{kernel} B" if kernel is not None else "unreadable (not root)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
