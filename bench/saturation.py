"""Does fastsock_saturation say "full" before latency and errors climb? An open-loop ramp.

Each scenario starts its own server (bench/saturation_apps.py) on the server core and offers it
a constant arrival rate per step, from the client core: 10 % to 150 % of the scenario's nominal
capacity, each step --step seconds. Open loop: a request is sent at its arrival time whether or
not earlier ones were answered, and its latency counts from that time, so latency really climbs
past capacity (wrk, closed loop, would slow down instead). Arrivals are Poisson (--arrivals).

  async-limit  `async def` handlers await a dependency of 10-200 ms through a pool of --pool
               connections per worker, with --limit-concurrency equal to the pool: the gauge
               reads requests in the app / limit. Capacity: workers * pool / mean latency.
  async-pool   the same without --limit-concurrency: the requests queue in the app's own pool,
               which fastsock cannot see (the gauge reads the loop's busy share only).
  cpu          an inline handler computing --cpu-ms per request: the gauge reads the loop's
               busy share. Capacity: workers / CPU per request.
  accept       a new connection per request to a handler that blocks the loop --hold-ms, with
               --backlog small: the accept queue fills, then the kernel drops SYNs.

Per step: offered and achieved req/s, p50/p99 of 2xx answers, error fraction (5xx, connect
failures, timeouts past --timeout), server CPU (fraction of a core, /proc), and the metrics
scraped once a second from --metrics-port: fastsock_saturation (the step's last and mean) and
its components (loop busy, pool, app, accept queue; means over the step).

    python bench/saturation.py [--scenarios async-limit,async-pool,cpu,accept] [--step 5]
                               [--workers 1] [--pool 16] [--cpu-ms 1.5] [--hold-ms 5]
                               [--chart FILE] [--json FILE] [--smoke]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import cpu_seconds, free_port, wait_port  # noqa: E402
from scale import machine  # noqa: E402

STEPS = [i / 10 for i in range(1, 16)]          # fractions of the nominal capacity


@dataclass
class Scenario:
    name: str
    app: str
    options: list[str]
    capacity: float         # nominal req/s of the server
    keepalive: bool = True


def scenarios(args) -> dict[str, Scenario]:
    mean_delay = sum(args.delay_ms) / 2 / 1e3
    pool = ["--limit-concurrency", str(args.pool)]
    return {
        "async-limit": Scenario("async-limit", "dependency", pool,
                                args.workers * args.pool / mean_delay),
        "async-pool": Scenario("async-pool", "dependency", [],
                               args.workers * args.pool / mean_delay),
        "cpu": Scenario("cpu", "cpu", [], args.workers / (args.cpu_ms / 1e3)),
        "accept": Scenario("accept", "hold", ["--backlog", str(args.backlog)],
                           args.workers / (args.hold_ms / 1e3), keepalive=False),
    }


# ------------------------------------------------------------------ the server

class Server:
    def __init__(self, sc: Scenario, args):
        self.port, self.metrics_port = free_port(), free_port()
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}",
               "SAT_POOL": str(args.pool), "SAT_DELAY_MS": ",".join(map(str, args.delay_ms)),
               "SAT_CPU_MS": str(args.cpu_ms), "SAT_HOLD_MS": str(args.hold_ms)}
        self.proc = subprocess.Popen(
            ["taskset", "-c", args.server_core, sys.executable, "-m", "fastsock",
             f"saturation_apps:{sc.app}", "--host", "127.0.0.1", "--port", str(self.port),
             "--metrics-port", str(self.metrics_port), "--workers", str(args.workers),
             "--log-level", "error", *sc.options],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
            wait_port(self.metrics_port)
            self.start_s = time.monotonic() - started      # the process to its port: a pod's
        except Exception:                                   # start, less the container's
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def scrape(port: int) -> dict[str, float]:
    """The metrics as {'name{labels}': value}."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        text = (await reader.read(-1)).decode().split("\r\n\r\n", 1)[1]
    finally:
        writer.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def components(m: dict[str, float], before: dict[str, float], dt: float, workers: int,
               limit: int) -> dict[str, float]:
    """The gauge's four fractions from one scrape (and the one before, for the busy rate)."""
    busy = sum(v for k, v in m.items() if k.startswith("fastsock_worker_busy_seconds_total"))
    busy0 = sum(v for k, v in before.items()
                if k.startswith("fastsock_worker_busy_seconds_total"))
    in_app = sum(m.get(f'fastsock_requests_in_flight{{kind="{kind}"}}', 0)
                 for kind in ("async", "thread", "wsgi", "asgi"))
    jobs = sum(m.get(f'fastsock_thread_pool_jobs{{state="{s}"}}', 0)
               for s in ("running", "queued"))
    threads = m.get("fastsock_thread_pool_threads", 0)
    queue = m.get('fastsock_accept_queue_length{listener="main"}', 0)
    qlimit = m.get('fastsock_accept_queue_limit{listener="main"}', 0)
    return {
        "busy": busy,
        "loop": min(1.0, (busy - busy0) / dt / workers) if dt > 0 else 0.0,
        "pool": min(1.0, jobs / threads) if threads else 0.0,
        "app": min(1.0, in_app / (limit * workers)) if limit else 0.0,
        "accept": min(1.0, queue / qlimit) if qlimit else 0.0,
        "in_app": in_app, "queue": queue, "queue_limit": qlimit,
    }


# ------------------------------------------------------------------ the load

@dataclass
class Step:
    index: int
    fraction: float
    rate: float
    t0: float = 0.0
    t1: float = 0.0
    sent: int = 0
    latencies: list = field(default_factory=list)       # s, of 2xx answers
    outcomes: dict = field(default_factory=dict)        # 200, 503, "connect", "timeout", ...
    late: list = field(default_factory=list)            # s the generator sent behind schedule


class Load:
    """Requests at given times on 127.0.0.1: over a pool of keep-alive connections (a new one
    when none is idle), or a new connection each. A request not answered within `timeout` of
    its arrival time is a timeout, its connection closed."""

    def __init__(self, port: int, keepalive: bool, timeout: float, max_conns: int):
        self.port, self.keepalive, self.timeout = port, keepalive, timeout
        self.request = b"GET / HTTP/1.1\r\nHost: sat\r\n" + (
            b"\r\n" if keepalive else b"Connection: close\r\n\r\n")
        self.idle: list = []
        self.slots = asyncio.Semaphore(max_conns)
        self.tasks: set = set()
        self.outstanding = 0
        self.peaks: dict[int, int] = {}     # second -> most requests outstanding in it
        self.completed: list[float] = []    # completion times of 2xx answers

    def send(self, at: float, step: Step) -> None:
        task = asyncio.create_task(self.one(at, step))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def one(self, at: float, step: Step) -> None:
        loop = asyncio.get_running_loop()
        step.late.append(loop.time() - at)
        step.sent += 1
        self.outstanding += 1
        second = int(loop.time())
        self.peaks[second] = max(self.peaks.get(second, 0), self.outstanding)
        outcome, conn, stage = "other", None, "connect"
        try:
            async with asyncio.timeout_at(at + self.timeout), self.slots:
                conn = self.idle.pop(0) if self.idle else None
                if conn is None:
                    conn = await asyncio.open_connection("127.0.0.1", self.port)
                stage = "read"
                reader, writer = conn
                writer.write(self.request)
                head = await reader.readuntil(b"\r\n\r\n")
                outcome = int(head[9:12])
                lower = head.lower()
                if b"content-length:" in lower:
                    length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                    await reader.readexactly(length)
                if self.keepalive and b"connection: close" not in lower:
                    self.idle.append(conn)
                    conn = None
                if 200 <= outcome < 300:
                    now = loop.time()
                    step.latencies.append(now - at)
                    self.completed.append(now)
        except TimeoutError:
            outcome = "timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError):
            outcome = stage             # refused/reset while connecting, or cut mid-answer
        finally:
            self.outstanding -= 1
            if conn is not None:
                conn[1].close()
            step.outcomes[outcome] = step.outcomes.get(outcome, 0) + 1

    async def offer(self, step: Step, duration: float, poisson: bool,
                    rng: random.Random) -> None:
        """step.rate arrivals a second for duration seconds."""
        loop = asyncio.get_running_loop()
        step.t0 = at = loop.time()
        end = at + duration
        while True:
            at += rng.expovariate(step.rate) if poisson else 1 / step.rate
            if at >= end:
                break
            if at > loop.time():
                await asyncio.sleep(at - loop.time())
            self.send(at, step)
        await asyncio.sleep(max(0.0, end - loop.time()))
        step.t1 = loop.time()

    async def finish(self) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.timeout + 5)
        for _reader, writer in self.idle:
            writer.close()
        self.idle.clear()


# ------------------------------------------------------------------ one scenario

def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def run_scenario(sc: Scenario, args) -> dict:
    loop = asyncio.get_running_loop()
    server = Server(sc, args)
    load = Load(server.port, sc.keepalive, args.timeout, args.max_conns)
    scrapes: list[tuple[float, dict, dict]] = []
    cpu: list[tuple[float, float]] = []
    limit = args.pool if "--limit-concurrency" in sc.options else 0

    async def scraper():
        before, t_before = None, None
        while True:
            t = loop.time()
            cpu.append((t, cpu_seconds(server.proc.pid)))
            try:
                m = await asyncio.wait_for(scrape(server.metrics_port), 5)
            except (OSError, TimeoutError, IndexError):
                await asyncio.sleep(args.scrape)
                continue
            answered = loop.time()          # (a loaded server answers late)
            if before is not None:
                scrapes.append((answered, m, components(m, before, answered - t_before,
                                                        args.workers, limit)))
            before, t_before = m, answered
            await asyncio.sleep(max(0.0, t + args.scrape - loop.time()))

    rng = random.Random(args.seed)
    steps = [Step(i, f, f * sc.capacity) for i, f in enumerate(args.steps)]
    scraping = asyncio.create_task(scraper())
    try:
        while len(scrapes) < 2:             # the server answers; the gauge has a baseline
            if server.proc.poll() is not None:
                raise RuntimeError(f"{sc.name}: the server exited")
            await asyncio.sleep(0.2)
        for step in steps:
            await load.offer(step, args.step, args.arrivals == "poisson", rng)
            print(f"  {sc.name} {step.fraction:.0%}: {step.sent} sent", file=sys.stderr)
        await load.finish()
        if server.proc.poll() is not None:
            raise RuntimeError(f"{sc.name}: the server exited during the run")
    finally:
        scraping.cancel()
        server.stop()
    return {"scenario": sc.name, "capacity": sc.capacity, "options": sc.options,
            "limit": limit, "start_s": server.start_s,
            "rows": [summarize(step, scrapes, cpu, load, args, limit) for step in steps]}


def summarize(step: Step, scrapes, cpu, load: Load, args, limit: int) -> dict:
    duration = step.t1 - step.t0
    inside = [(t, m, c) for t, m, c in scrapes if step.t0 < t <= step.t1]
    cpus = [(t, s) for t, s in cpu if step.t0 - 1 < t <= step.t1]
    ok = sum(n for k, n in step.outcomes.items() if isinstance(k, int) and 200 <= k < 300)
    errors = step.sent - ok
    first, last = (inside[0][1], inside[-1][1]) if inside else ({}, {})

    def mean(key):
        return statistics.fmean(c[key] for _, _, c in inside) if inside else float("nan")

    def grew(name):
        return last.get(name, 0) - first.get(name, 0)

    peaks = [n for s, n in load.peaks.items() if step.t0 <= s < step.t1]
    return {
        "fraction": step.fraction, "offered_rps": step.sent / duration,
        "achieved_rps": sum(step.t0 <= t < step.t1 for t in load.completed) / duration,
        "p50_ms": percentile(step.latencies, 0.5) * 1e3,
        "p99_ms": percentile(step.latencies, 0.99) * 1e3,
        "error_fraction": errors / step.sent if step.sent else 0.0,
        "outcomes": {str(k): n for k, n in step.outcomes.items()},
        "cpu": ((cpus[-1][1] - cpus[0][1]) / (cpus[-1][0] - cpus[0][0])
                if len(cpus) > 1 else float("nan")),
        "saturation_last": last.get("fastsock_saturation", float("nan")),
        "saturation_mean": (statistics.fmean(m["fastsock_saturation"] for _, m, _ in inside)
                            if inside else float("nan")),
        # the loop's share over the step, not a mean of 1 s ones: the counter moves once a
        # tick (a second or more), so a 1 s window holds 0, 1 or 2 of them
        "loop": (min(1.0, (inside[-1][2]["busy"] - inside[0][2]["busy"])
                     / (inside[-1][0] - inside[0][0]) / args.workers)
                 if len(inside) > 1 else float("nan")),
        "pool": mean("pool"), "app": mean("app"),
        "accept": mean("accept"),
        "accept_queue_max": max((c["queue"] for _, _, c in inside), default=0),
        "accept_queue_limit": max((c["queue_limit"] for _, _, c in inside), default=0),
        "overflows": grew("fastsock_listen_overflows_total"),
        "refused": grew('fastsock_requests_refused_total{reason="concurrency"}'),
        # the per-second peak of requests outstanding (client side) over the limit: what a
        # gauge built on the tick's peak in_app, not its last sample, would read
        "peak_over_limit": (statistics.fmean(peaks) / (limit * args.workers)
                            if peaks and limit else float("nan")),
        "late_p99_ms": percentile(step.late, 0.99) * 1e3,
    }


# ------------------------------------------------------------------ report

def first_at(rows: list[dict], test) -> float | None:
    """The offered req/s of the first step where test(row) holds."""
    return next((r["offered_rps"] for r in rows if test(r)), None)


def verdict(result: dict) -> dict:
    rows = result["rows"]
    base = rows[0]["p99_ms"]
    return {
        "gauge_0.8": first_at(rows, lambda r: r["saturation_last"] >= 0.8),
        "gauge_1.0": first_at(rows, lambda r: r["saturation_last"] >= 0.995),
        "p99_2x": first_at(rows, lambda r: r["p99_ms"] > 2 * base
                           or r["error_fraction"] >= 0.5),
        "errors_1pct": first_at(rows, lambda r: r["error_fraction"] > 0.01),
        "queue_full": first_at(rows, lambda r: r["accept_queue_limit"] > 0
                               and r["accept_queue_max"] >= r["accept_queue_limit"]),
        "overflows": first_at(rows, lambda r: r["overflows"] > 0),
        "cpu_max": max((r["cpu"] for r in rows if r["cpu"] == r["cpu"]), default=float("nan")),
        "p99_low_ms": base,
    }


def table(result: dict) -> str:
    out = [f"\n{result['scenario']} (nominal capacity {result['capacity']:.0f} req/s; "
           f"{' '.join(result['options']) or 'no options'})",
           "| offered | req/s | achieved | p50 ms | p99 ms | errors | CPU | gauge last/mean "
           "| loop | pool | app | accept | queue/limit | overflows | peak/limit |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        out.append(
            f"| {r['fraction']:.0%} | {r['offered_rps']:.0f} | {r['achieved_rps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['error_fraction']:.1%} "
            f"| {r['cpu']:.2f} | {r['saturation_last']:.2f}/{r['saturation_mean']:.2f} "
            f"| {r['loop']:.2f} | {r['pool']:.2f} | {r['app']:.2f} | {r['accept']:.2f} "
            f"| {r['accept_queue_max']:.0f}/{r['accept_queue_limit']:.0f} "
            f"| {r['overflows']:.0f} | {r['peak_over_limit']:.2f} |")
    return "\n".join(out)


def summary_line(result: dict) -> str:
    v = verdict(result)

    def rate(key):
        return "never" if v[key] is None else f"{v[key]:.0f} req/s"
    line = (f"{result['scenario']}: gauge >= 0.8 at {rate('gauge_0.8')}, 1.0 at "
            f"{rate('gauge_1.0')}; p99 > 2x its low-load {v['p99_low_ms']:.1f} ms at "
            f"{rate('p99_2x')}, errors > 1 % at {rate('errors_1pct')}; CPU at most "
            f"{v['cpu_max']:.2f} core")
    if result["scenario"] == "accept":
        line += (f"; accept queue at its limit at {rate('queue_full')}, overflows from "
                 f"{rate('overflows')}")
    return line


def chart(results: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("saturation", "fastsock_saturation (step's last)"), ("p99_ms", "p99 ms (2xx)"),
              ("errors", "errors %"), ("cpu", "server CPU (cores)")]
    fig, grid = plt.subplots(len(panels), len(results), figsize=(3.4 * len(results), 10),
                             squeeze=False, sharex="col")
    for col, result in enumerate(results):
        rows = result["rows"]
        xs = [r["offered_rps"] for r in rows]
        for row, (key, label) in enumerate(panels):
            ax = grid[row][col]
            if key == "saturation":
                ax.plot(xs, [r["saturation_last"] for r in rows], marker="o", color="k",
                        label="gauge")
                for comp, style in (("loop", "--"), ("app", ":"), ("accept", "-.")):
                    ys = [r[comp] for r in rows]
                    if max(ys) > 0.02:
                        ax.plot(xs, ys, style, label=comp)
                ax.set_ylim(-0.05, 1.1)
                ax.axhline(0.8, color="grey", lw=0.5)
                ax.legend(fontsize=7)
                ax.set_title(result["scenario"], fontsize=10)
            elif key == "p99_ms":
                ys = [r["p99_ms"] for r in rows]
                ax.plot(xs, ys, marker="o")
                ax.set_yscale("log")
                ax.set_ylim(min(ys) / 2, max(ys) * 2)      # a flat line looks flat
            elif key == "errors":
                ax.plot(xs, [100 * r["error_fraction"] for r in rows], marker="o", color="C3")
            else:
                ax.plot(xs, [r["cpu"] for r in rows], marker="o", color="C2")
                ax.set_ylim(0, 1.1)
                ax.set_xlabel("offered req/s")
            ax.axvline(result["capacity"], color="grey", ls="--", lw=0.8)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
    fig.suptitle(title + "\n(dashed vertical: nominal capacity)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="async-limit,async-pool,cpu,accept")
    ap.add_argument("--step", type=float, default=5.0, help="seconds per offered rate")
    ap.add_argument("--steps", default=",".join(map(str, STEPS)),
                    help="offered rates, as fractions of the nominal capacity")
    ap.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--pool", type=int, default=16, help="dependency connections per worker")
    ap.add_argument("--delay-ms", default="10,200", help="the dependency's latency, MIN,MAX")
    ap.add_argument("--cpu-ms", type=float, default=1.5)
    ap.add_argument("--hold-ms", type=float, default=5.0)
    ap.add_argument("--backlog", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds before a request "
                    "(counted from its arrival time) is a timeout")
    ap.add_argument("--max-conns", type=int, default=2000)
    ap.add_argument("--cores", default="0:1", help="SERVER:CLIENT cores")
    ap.add_argument("--scrape", type=float, default=1.0, help="seconds between scrapes")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--json", type=Path, help="write every figure here (bench/scale_model.py)")
    ap.add_argument("--chart", type=Path, help="write the chart (PNG) here")
    ap.add_argument("--smoke", action="store_true",
                    help="every scenario, two short steps: a check that it runs, not a figure")
    args = ap.parse_args()
    args.delay_ms = [float(x) for x in args.delay_ms.split(",")]
    args.steps = [float(x) for x in args.steps.split(",")]
    if args.smoke:
        args.steps, args.step, args.timeout, args.scrape = [0.3, 1.2], 0.6, 1.0, 0.25
    args.server_core, client_core = args.cores.split(":")
    os.sched_setaffinity(0, {int(client_core)})     # the load generator on the client core
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    known = scenarios(args)
    results = [asyncio.run(run_scenario(known[name], args))
               for name in args.scenarios.split(",")]
    title = (f"{time.strftime('%Y-%m-%d')}, {machine()}; {args.workers} worker(s) on core "
             f"{args.server_core}, load on core {client_core}; {args.arrivals} arrivals, "
             f"{args.step:g} s per step; pool {args.pool}, dependency {args.delay_ms[0]:g}-"
             f"{args.delay_ms[1]:g} ms, {args.cpu_ms:g} ms CPU, {args.hold_ms:g} ms hold, "
             f"backlog {args.backlog}")
    print(f"# {title}")
    for result in results:
        print(table(result))
    print()
    for result in results:
        result["verdict"] = verdict(result)
        print(summary_line(result))
    if args.json:
        args.json.write_text(json.dumps({
            "title": title, "workers": args.workers, "pool": args.pool,
            "delay_ms": args.delay_ms, "cpu_ms": args.cpu_ms, "hold_ms": args.hold_ms,
            "backlog": args.backlog, "step_s": args.step, "arrivals": args.arrivals,
            "results": results}, indent=1))
        print(f"json: {args.json}")
    if args.chart:
        chart(results, args.chart, title)
        print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
