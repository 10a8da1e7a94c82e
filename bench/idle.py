"""Memory per idle keep-alive connection, fastsock against nginx in the same run, and the latency
of new requests while one worker holds them all.

For each server (one worker, pinned to one core): open N connections, send one request on each
and read its answer, so each is an idle keep-alive connection the server has served; then the
growth of the server's anonymous resident memory (RssAnon, the whole process tree) divided by N,
and the latency of M requests on new connections and on idle ones chosen at random while all N
are held (p50 / p99).

    python bench/idle.py [--connections 10000] [--requests 2000] [--only fastsock,nginx]
                         [--baseline DIR]
"""
from __future__ import annotations

import argparse
import random
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (the servers and helpers of bench/run.py)

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"

NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
worker_rlimit_nofile 65536;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 65536; }}
http {{
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "hello"; }}
    }}
}}
"""


def start_nginx(port: int):
    return bench.start_nginx(port, NGINX_CONF)


def start_fastsock(port: int, root: Path = bench.ROOT):
    return bench.start_fastsock(port, "--keepalive-timeout", "600", root=root)


BASELINE: Path | None = None


def start_fastsock_before(port: int):
    return start_fastsock(port, root=BASELINE)



def ask(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    data = b""
    while not data.endswith(b"hello"):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def measure(start, n: int, m: int) -> dict:
    port = bench.free_port()
    proc, cleanup = start(port)
    conns: list[socket.socket] = []
    try:
        bench.wait_port(port)
        warm = socket.create_connection(("127.0.0.1", port))
        for _ in range(100):
            ask(warm)
        warm.close()
        time.sleep(0.5)
        before = bench.rss_anon_kib(proc.pid)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            ask(s)
            conns.append(s)
        time.sleep(1.0)
        after = bench.rss_anon_kib(proc.pid)

        def new_connection():
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                ask(s)
        fresh = sorted(timed(new_connection) for _ in range(m))
        idle = sorted(timed(lambda: ask(random.choice(conns))) for _ in range(m))
        return {"kib_per_conn": (after - before) / n, "rss_kib": after,
                "new_p50": statistics.median(fresh), "new_p99": fresh[int(0.99 * m)],
                "idle_p50": statistics.median(idle), "idle_p99": idle[int(0.99 * m)]}
    finally:
        for s in conns:
            s.close()
        proc.terminate()
        proc.wait(10)
        cleanup()


def main() -> None:
    global BASELINE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--only", default="fastsock,nginx")
    parser.add_argument("--baseline", type=Path)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        sys.exit(f"the open-file limit ({hard}) is below {args.connections} connections")
    servers = {"fastsock": start_fastsock, "nginx": start_nginx}
    if args.baseline:
        BASELINE = args.baseline.resolve()
        servers["fastsock-before"] = start_fastsock_before
    names = [s for s in args.only.split(",") if s] + (["fastsock-before"] if args.baseline else [])
    print(f"# {args.connections} idle keep-alive connections on one worker; "
          f"{args.requests} requests each way while they are held (ms)")
    print(f"{'server':<18}{'KiB/conn':>10}{'RSS MiB':>10}{'new p50':>10}{'new p99':>10}"
          f"{'idle p50':>10}{'idle p99':>10}")
    results = {}
    for name in names:
        r = results[name] = measure(servers[name], args.connections, args.requests)
        print(f"{name:<18}{r['kib_per_conn']:>10.2f}{r['rss_kib'] / 1024:>10.1f}"
              f"{r['new_p50']:>10.2f}{r['new_p99']:>10.2f}{r['idle_p50']:>10.2f}"
              f"{r['idle_p99']:>10.2f}", flush=True)
    if "fastsock" in results and "nginx" in results:
        ratio = results["fastsock"]["kib_per_conn"] / max(results["nginx"]["kib_per_conn"], 0.01)
        print(f"fastsock/nginx: KiB per idle connection {ratio:.2f}x")


if __name__ == "__main__":
    main()
