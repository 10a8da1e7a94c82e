"""fastsock against uvicorn (httptools + uvloop, raw ASGI) and nginx (`return 200`), in one run.

Each server runs one worker pinned to one core; wrk runs pinned to the other. For each server:
req/s and p99 latency with 64 connections, server CPU microseconds per request (from /proc, the
fair figure once wrk's own core saturates), and req/s with 16-deep pipelining. fastsock-json
and fastsock-text serve the same message as JSON (a dict) and as a str.

    python bench/run.py [--duration 10] [--connections 64] [--only fastsock,nginx] [--repeat 3]
                        [--baseline DIR]

--baseline DIR adds "fastsock-before": the fastsock of another checkout (built in place),
measured in the same run, for a before/after ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVER_CORE, CLIENT_CORE = "0", "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def process_tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            kids = [int(k) for k in task.read_text().split()]
            pids += kids
            frontier += kids
    return pids


def _tree_sum(pid: int, file: str, field: str) -> int:
    """A /proc/PID/FILE field (in KiB) summed over a process tree (gone processes count 0)."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/{file}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def rss_anon_kib(pid: int) -> int:
    """Anonymous resident memory of a process tree: what it allocated itself."""
    return _tree_sum(pid, "status", "RssAnon:")


def pss_kib(pid: int) -> int:
    """Proportional set size of a process tree: shared pages split between their users."""
    return _tree_sum(pid, "smaps_rollup", "Pss:")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process tree."""
    user = system = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def wrk(port: int, duration: int, connections: int, script: str | None = None,
        scheme: str = "http") -> dict:
    cmd = ["taskset", "-c", CLIENT_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
           "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [f"{scheme}://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True, timeout=duration + 30).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "requests": total,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "bad": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(map(int, sockets.groups())) if sockets else 0,
    }


def measure(name: str, start, duration: int, connections: int) -> dict:
    port = free_port()
    proc, cleanup = start(port)
    try:
        wait_port(port)
        wrk(port, 1, connections)                       # warm-up
        user0, sys0 = cpu_split(proc.pid)
        plain = wrk(port, duration, connections)
        user1, sys1 = cpu_split(proc.pid)
        piped = wrk(port, duration, connections, str(HERE / "pipeline.lua"))
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited during the run")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        cleanup()
    return {
        "name": name, "rps": plain["rps"], "p99_ms": plain["p99_ms"],
        "cpu_us": (user1 + sys1 - user0 - sys0) / plain["requests"] * 1e6,
        "user_us": (user1 - user0) / plain["requests"] * 1e6,
        "piped_rps": piped["rps"], "bad": plain["bad"] + piped["bad"],
    }


def pinned(cmd: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", SERVER_CORE] + cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kw)


def start_fastsock(port: int, *extra: str, app: str = "examples.hello:app",
                   root: Path = ROOT):
    return pinned([sys.executable, "-m", "fastsock", app, "--host",
                   "127.0.0.1", "--port", str(port), "--workers", "1", "--log-level",
                   "warning", *extra], cwd=root,
                  env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{HERE}"}), lambda: None


def start_fastsock_json(port: int):
    return start_fastsock(port, app="json_hello:app")


def start_fastsock_text(port: int):
    return start_fastsock(port, app="text_hello:app")


BASELINE: Path | None = None        # --baseline


def start_fastsock_before(port: int):
    return start_fastsock(port, root=BASELINE)


def start_fastsock_no_metrics(port: int):
    """The same without metrics (they are on by default)."""
    return start_fastsock(port, "--no-metrics")


def start_fastsock_logging(port: int):
    """The same, writing a JSON access log line per request (to /dev/null)."""
    return start_fastsock(port, "--access-log", "json")


def start_uvicorn(port: int):
    return pinned([sys.executable, "-m", "uvicorn", "asgi_hello:app", "--host", "127.0.0.1",
                   "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                   "--no-access-log", "--log-level", "warning"], cwd=HERE), lambda: None


NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "hello"; }}
    }}
}}
"""


def start_nginx(port: int, template: str = NGINX_CONF):
    """nginx from a config template (formatted with tmp and port), in a temp dir of its own."""
    tmp = tempfile.mkdtemp(prefix="fastsock-bench-nginx-")
    conf = Path(tmp) / "nginx.conf"
    conf.write_text(template.format(tmp=tmp, port=port))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return pinned([nginx, "-c", str(conf), "-p", tmp]), lambda: shutil.rmtree(tmp, True)


SERVERS = {"fastsock": start_fastsock, "fastsock-nometrics": start_fastsock_no_metrics,
           "fastsock+log": start_fastsock_logging, "fastsock-text": start_fastsock_text,
           "fastsock-json": start_fastsock_json, "uvicorn": start_uvicorn, "nginx": start_nginx}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--only", default=",".join(SERVERS))
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure every server this many times, round robin; report medians")
    ap.add_argument("--baseline", type=Path, help="another checkout's fastsock, built in place")
    args = ap.parse_args()
    only = args.only.split(",")
    if args.baseline:
        global BASELINE
        BASELINE = args.baseline.resolve()
        SERVERS["fastsock-before"] = start_fastsock_before
        only.insert(0, "fastsock-before")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        for name in only:
            r = measure(name, SERVERS[name], args.duration, args.connections)
            runs.setdefault(name, []).append(r)
            print(f"  measured {name}: {r['rps']:.0f} req/s, {r['cpu_us']:.2f} µs/req",
                  file=sys.stderr)
    results = {name: {key: (statistics.median(r[key] for r in rs) if key != "name" else name)
                      for key in rs[0]} for name, rs in runs.items()}
    print(f"# {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}; "
          f"server on core {SERVER_CORE}, wrk -t1 -c{args.connections} on core {CLIENT_CORE}, "
          f"{args.duration}s per run" + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    print("| server             | req/s   | p99 ms | server CPU µs/req | of it user "
          "| pipelined req/s (16 deep) |")
    print("|--------------------|---------|--------|-------------------|------------"
          "|---------------------------|")
    for r in results.values():
        print(f"| {r['name']:<18} | {r['rps']:>7.0f} | {r['p99_ms']:>6.2f} | {r['cpu_us']:>17.2f} "
              f"| {r['user_us']:>10.2f} "
              f"| {r['piped_rps']:>25.0f} |" + (f" {r['bad']} bad responses" if r["bad"] else ""))
    fs = results.get("fastsock")
    if fs:
        print()
        if "nginx" in results:
            ng = results["nginx"]
            print(f"fastsock/nginx: CPU per request {fs['cpu_us'] / ng['cpu_us']:.2f}x "
                  f"(goal <= 0.95), pipelined req/s {fs['piped_rps'] / ng['piped_rps']:.2f}x "
                  f"(goal >= 2), req/s {fs['rps'] / ng['rps']:.2f}x")
        if "fastsock-nometrics" in results:
            nm = results["fastsock-nometrics"]
            print(f"metrics on: req/s {fs['rps'] / nm['rps']:.3f}x and CPU per request "
                  f"{fs['cpu_us'] / nm['cpu_us']:.3f}x of metrics off (goal: >= 0.97x req/s); "
                  f"pipelined {fs['piped_rps'] / nm['piped_rps']:.3f}x")
        if "fastsock+log" in results:
            lg = results["fastsock+log"]
            print(f"JSON access log on: +{lg['cpu_us'] - fs['cpu_us']:.2f} µs CPU per request, "
                  f"req/s {lg['rps'] / fs['rps']:.2f}x of logging off")
        if "fastsock-before" in results:
            b = results["fastsock-before"]
            print(f"fastsock now/before: CPU per request {fs['cpu_us'] / b['cpu_us']:.3f}x, "
                  f"pipelined req/s {fs['piped_rps'] / b['piped_rps']:.3f}x, "
                  f"req/s {fs['rps'] / b['rps']:.3f}x")
        if "fastsock-json" in results and "fastsock-text" in results:
            print(f"JSON route: CPU per request "
                  f"{results['fastsock-json']['cpu_us'] / results['fastsock-text']['cpu_us']:.2f}x "
                  f"of the plain-text route's (goal <= 1.15)")
        if "uvicorn" in results:
            uv = results["uvicorn"]
            print(f"fastsock/uvicorn: req/s {fs['rps'] / uv['rps']:.2f}x (goal >= 2), "
                  f"CPU per request {fs['cpu_us'] / uv['cpu_us']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
