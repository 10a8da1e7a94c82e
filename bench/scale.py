"""fastsock with 1 to 16 workers: how new connections find a worker, and what many workers cost.

For each accept design (--accept) and worker count (--workers-list), one server runs pinned to
the server cores and wrk to the client cores (--cores SERVER:CLIENT, taskset lists). Measured:

  keep-alive        req/s and server CPU µs per request, wrk -c64
  new connections   server CPU µs per connection, one request per TCP connection (wrk, with
                    "Connection: close")
  spread            8 long keep-alive connections opened one after another, as a load balancer
                    does: how many land on the busiest worker
  stopped worker    p50/p99 ms of new connections (connect, GET, response) while one worker is
                    stopped with SIGSTOP, as a handler stuck in a call would stop it, and 6
                    keep-alive connections are held open

    python bench/scale.py [--workers-list 1,2,4,8,16] [--cores 0:1] [--duration 5]
                          [--accept exclusive,reuseport] [--baseline DIR] [--chart FILE]

--baseline DIR adds the fastsock of another checkout (built in place) as one more design.
The table goes to stdout; the chart (PNG, needs matplotlib) to --chart.
"""
from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import cpu_seconds, free_port, process_tree, wait_port  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def get(sock: socket.socket) -> None:
    """One request on a keep-alive connection, its whole (small) response read."""
    sock.sendall(REQUEST)
    buf = b""
    while b"\r\n\r\n" not in buf or not buf.endswith(b"hello"):
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed")
        buf += data


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Server:
    def __init__(self, workers: int, accept: str, cores: str, root: Path):
        self.port = free_port()
        extra = [] if accept == "before" else ["--accept", accept]
        self.proc = subprocess.Popen(
            ["taskset", "-c", cores, sys.executable, "-m", "fastsock", "examples.hello:app",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             "--log-level", "error", "--no-metrics", *extra],
            cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        deadline = time.monotonic() + 30
        while len(self.workers()) < workers or not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers did not start")
            time.sleep(0.05)

    def ready(self) -> bool:
        try:
            with connect(self.port) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def workers(self) -> list[int]:
        return process_tree(self.proc.pid)[1:]

    def stop(self) -> None:
        for pid in self.workers():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(port: int, cores: str, duration: int, connections: int, *extra: str) -> int:
    out = subprocess.run(
        ["taskset", "-c", cores, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", *extra,
         f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True,
        timeout=duration + 30).stdout
    return int(out.split(" requests in ")[0].split()[-1])


def cpu_per(server: Server, run) -> float:
    """Server CPU µs per unit of what run() did (it returns how many units)."""
    c0 = cpu_seconds(server.proc.pid)
    n = run()
    return (cpu_seconds(server.proc.pid) - c0) / max(n, 1) * 1e6


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def spread(server: Server, n: int = 8) -> list[int]:
    """Open n keep-alive connections one after another (each answered before the next), as a
    load balancer warming its pool does; -> how many each worker took, busiest first."""
    pids = server.workers()
    before = {pid: open_fds(pid) for pid in pids}
    socks = []
    try:
        for _ in range(n):
            socks.append(connect(server.port))
            get(socks[-1])
            time.sleep(0.01)
        return sorted((open_fds(pid) - before[pid] for pid in pids), reverse=True)
    finally:
        for s in socks:
            s.close()


def stopped_worker_latency(server: Server, samples: int = 400,
                           timeout: float = 1.0) -> tuple[float, float]:
    """p50/p99 ms of new connections while one worker is stopped and 6 keep-alive
    connections are held. The stopped worker is the one holding the fewest: the one a design
    that balances by connection counts would wait for."""
    held = []
    victim = None
    try:
        for _ in range(6):
            held.append(connect(server.port))
            get(held[-1])
        victim = min(server.workers(), key=open_fds)
        os.kill(victim, signal.SIGSTOP)
        while open(f"/proc/{victim}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.01)                # stopped for sure before the first sample
        times = []
        deadline = time.monotonic() + 15
        for _ in range(samples):
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            try:
                with connect(server.port, timeout) as s:
                    get(s)
                times.append((time.perf_counter() - t0) * 1e3)
            except OSError:
                times.append(timeout * 1e3)     # no answer within the timeout: counted as it
        times.sort()
        return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]
    finally:
        if victim is not None:
            os.kill(victim, signal.SIGCONT)
        for s in held:
            s.close()


def measure(workers: int, accept: str, args, root: Path) -> dict:
    server = Server(workers, accept, args.server_cores, root)
    try:
        wrk(server.port, args.client_cores, 1, 64)                   # warm-up
        rps_box = {}

        def keepalive():
            n = wrk(server.port, args.client_cores, args.duration, 64)
            rps_box["rps"] = n / args.duration
            return n
        cpu_req = cpu_per(server, keepalive)
        cpu_conn = cpu_per(server, lambda: wrk(server.port, args.client_cores, args.duration,
                                               16, "-H", "Connection: close"))
        spread_counts = spread(server) if workers > 1 else [8]
        p50, p99 = stopped_worker_latency(server) if workers > 1 else (float("nan"),) * 2
        if server.proc.poll() is not None:
            raise RuntimeError("the server exited during the run")
    finally:
        server.stop()
    return {"accept": accept, "workers": workers, "rps": rps_box["rps"], "cpu_req": cpu_req,
            "cpu_conn": cpu_conn, "spread": spread_counts, "p50": p50, "p99": p99}


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key in ("rps", "cpu_req", "cpu_conn", "p50", "p99"):
        out[key] = statistics.median(r[key] for r in runs)
    out["spread"] = max((r["spread"] for r in runs), key=lambda s: s[0])   # the worst run
    return out


def chart(results: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("rps", "keep-alive req/s"), ("cpu_req", "CPU µs per request (keep-alive)"),
              ("cpu_conn", "CPU µs per new connection"),
              ("busiest", "most of 8 LB connections on one worker"),
              ("p99", "p99 ms, new connections, one worker stopped")]
    fig, grid = plt.subplots(2, 3, figsize=(12, 7))
    axes = list(grid.flat)
    axes[-1].axis("off")
    for ax, (key, label) in zip(axes, panels, strict=False):   # one axis more: left blank
        for accept in dict.fromkeys(r["accept"] for r in results):
            rows = [r for r in results if r["accept"] == accept]
            xs = [r["workers"] for r in rows]
            ys = [r["spread"][0] if key == "busiest" else r[key] for r in rows]
            ax.plot(xs, ys, marker="o", label=accept)
        ax.set_xscale("log", base=2)
        ax.set_xticks([r["workers"] for r in results])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("workers")
        ax.set_title(label, fontsize=9)
        if key == "p99":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, title="--accept")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine() -> str:
    """The CPU model and core count, for the table and the chart."""
    model = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers-list", default="1,2,4,8,16")
    ap.add_argument("--cores", default="0:1", help="SERVER:CLIENT taskset core lists")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1, help="runs per point; medians reported")
    ap.add_argument("--accept", default="exclusive,reuseport")
    ap.add_argument("--baseline", type=Path, help="another checkout's fastsock, built in place")
    ap.add_argument("--chart", type=Path, help="write the chart (PNG) here")
    args = ap.parse_args()
    args.server_cores, args.client_cores = args.cores.split(":")
    designs = [(accept, ROOT) for accept in args.accept.split(",") if accept]
    if args.baseline:
        designs.append(("before", args.baseline.resolve()))
    results = []
    for accept, root in designs:
        for workers in (int(w) for w in args.workers_list.split(",")):
            runs = [measure(workers, accept, args, root) for _ in range(args.repeat)]
            r = median_of(runs)
            print(f"  {accept} x{workers}: {r['rps']:.0f} req/s, {r['cpu_conn']:.1f} µs/conn, "
                  f"spread {r['spread']}, p99 {r['p99']:.2f} ms", file=sys.stderr)
            results.append(r)
    title = (f"{time.strftime('%Y-%m-%d')}, {machine()}, "
             f"server on cores {args.server_cores}, wrk on {args.client_cores}, "
             f"{args.duration}s runs" + (f", median of {args.repeat}" if args.repeat > 1 else ""))
    print(f"# {title}")
    print("| accept | workers | keep-alive req/s | CPU µs/req | CPU µs/new conn "
          "| 8 LB conns per worker | stopped worker: p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['accept']} | {r['workers']} | {r['rps']:.0f} | {r['cpu_req']:.2f} "
              f"| {r['cpu_conn']:.1f} | {'-'.join(map(str, r['spread']))} "
              f"| {r['p50']:.2f} / {r['p99']:.2f} |")
    print()
    for accept in dict.fromkeys(r["accept"] for r in results):
        rows = {r["workers"]: r for r in results if r["accept"] == accept}
        if 1 in rows and 8 in rows:
            print(f"{accept}: CPU per new connection, 8 workers / 1 worker: "
                  f"{rows[8]['cpu_conn'] / rows[1]['cpu_conn']:.2f}x (goal <= 1.1)")
        if 4 in rows:
            print(f"{accept}: 8 long connections over 4 workers, busiest has "
                  f"{rows[4]['spread'][0]} (goal <= 3)")
        worst = max((r["p99"] for r in rows.values() if r["workers"] > 1), default=None)
        if worst is not None:
            print(f"{accept}: worst p99 of new connections with a stopped worker: "
                  f"{worst:.2f} ms (goal < 1)")
    if args.chart:
        chart(results, args.chart, title)
        print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
