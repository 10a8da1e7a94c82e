"""How many pods: a pod's capacity, the pods a rate needs at a target saturation, and what a ramp
costs while the autoscaler reacts; its numbers beside bench/saturation.py's measured ones.

A pod is `--workers` workers on `--cores` cores, and a request costs:
  --loop-us        the loop's busy time per request (CPU, or a blocking call made inline)
  --dependency-ms  the mean time it holds one of --limit slots per worker (an async handler's
                   pool of dependency connections, told to fastsock by --limit-concurrency)
  --thread-ms      the time it holds one of --threads pool threads per worker
Each is a resource whose use is one of fastsock_saturation's parts; the pod's capacity is the
rate that fills the first of them (1.0).

    python bench/scale_model.py --loop-us 50 --dependency-ms 105 --limit 16 --rate 5000
    python bench/scale_model.py --from saturation.json     # the experiment's costs; compared

The autoscaler's reaction and the drain take their defaults from k8s/ (the ServiceMonitor's 15 s
scrape, KEDA's 15 s polling, the HPA's 15 s sync and its scale-up policy, the probes, the
shutdown delay and graceful timeout) and docs/autoscaling.md; each is an option.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

# ------------------------------------------------------------------ one pod

@dataclass
class Pod:
    workers: int = 2
    cores: float = 2.0
    loop_us: float = 0.0
    dependency_ms: float = 0.0
    limit: int = 0
    thread_ms: float = 0.0
    threads: int = 0

    def capacities(self) -> dict[str, float]:
        """req/s at which each part of the gauge reaches 1.0."""
        caps = {}
        if self.loop_us > 0:     # each worker is one loop; workers beyond the cores share them
            caps["loop"] = min(self.workers, self.cores) / (self.loop_us * 1e-6)
        if self.limit and self.dependency_ms > 0:
            caps["app"] = self.workers * self.limit / (self.dependency_ms * 1e-3)
        if self.threads and self.thread_ms > 0:
            caps["pool"] = self.workers * self.threads / (self.thread_ms * 1e-3)
        return caps

    def capacity(self) -> float:
        return min(self.capacities().values(), default=math.inf)

    def saturation(self, rate: float, tick_s: float = 1.0, smoothing_s: float = 5.0) -> float:
        """The gauge at a steady rate: the largest part. The loop and the pool read their mean
        use. The app reads each tick's most requests at once over the limit — taken here as
        the occupancy's 90th percentile, A + 1.28 sqrt(A) for A Erlangs per worker — and 1.0
        after a tick with a refusal, decaying over the moving average's time constant: with
        refusals at r per second, a tick has one with p = 1 - exp(-r tick), and the gauge
        reads, on average, peak + (1 - peak) p / (1 - (1 - p) exp(-tick / smoothing))."""
        parts = [min(1.0, rate / cap) for name, cap in self.capacities().items()
                 if name != "app"]
        if "app" in self.capacities():
            offered = rate / self.workers * self.dependency_ms * 1e-3     # Erlangs per worker
            peak = min(1.0, (offered + 1.28 * math.sqrt(offered)) / self.limit)
            refusals = rate / self.workers * erlang_b(self.limit, offered)  # per s, per worker
            p = 1 - math.exp(-refusals * tick_s)
            jump = p / (1 - (1 - p) * math.exp(-tick_s / smoothing_s)) if p > 0 else 0.0
            parts.append(peak + (1 - peak) * jump)
        return max(parts, default=0.0)

    def refused(self, rate: float) -> float:
        """The fraction of requests refused (503 at the limit) or, past the loop's capacity,
        not served: Erlang B per worker for the limit, the overflow for the rest."""
        caps = self.capacities()
        loss = 0.0
        if "app" in caps:
            loss = erlang_b(self.limit, rate / self.workers * self.dependency_ms * 1e-3)
        others = min((c for n, c in caps.items() if n != "app"), default=math.inf)
        carried = rate * (1 - loss)
        return 1 - (1 - loss) * min(1.0, others / carried) if carried > 0 else 0.0


def erlang_b(servers: int, offered: float) -> float:
    """The probability that a request finds all `servers` busy, `offered` Erlangs arriving
    Poisson (M/G/K/K: refused, not queued). B(0) = 1, B(k) = A B(k-1) / (k + A B(k-1))."""
    b = 1.0
    for k in range(1, servers + 1):
        b = offered * b / (k + offered * b)
    return b


def limit_target(servers: int, budget: float) -> float:
    """The highest saturation (offered Erlangs / servers) at which Erlang B stays within
    budget: where a pod behind --limit-concurrency should be kept."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if erlang_b(servers, mid * servers) <= budget else (lo, mid)
    return lo


def loop_target(service_ms: float, p99_ms: float) -> float:
    """The highest loop use at which one loop's p99 stays within p99_ms, queueing as M/M/1
    (sojourn time exponential with mean S / (1 - rho): p99 = ln(100) S / (1 - rho)); service
    times steadier than exponential queue less, so this errs on the safe side."""
    return max(0.0, 1 - math.log(100) * service_ms / p99_ms)


def pods_needed(rate: float, capacity: float, target: float) -> int:
    return max(1, math.ceil(rate / (capacity * target)))


def use_at(pod: Pod, target: float) -> float:
    """The share of its capacity a pod serves when its gauge reads target (the autoscaler keeps
    it there): the target itself for a loop or a pool, less behind a limit, whose gauge reads
    its peaks and refusals."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pod.saturation(mid * pod.capacity()) <= target else (lo, mid)
    return lo


# ------------------------------------------------------------------ the autoscaler in a ramp

@dataclass
class Autoscaler:
    smoothing_s: float = 5.0        # fastsock_saturation's moving average (_saturation.pyx)
    scrape_s: float = 15.0          # the ServiceMonitor's interval
    poll_s: float = 15.0            # KEDA's pollingInterval (prometheus-adapter: 0, it is asked)
    sync_s: float = 15.0            # the HPA controller's sync period
    start_s: float = 10.0           # a new pod scheduled, image there, the process to its port
    readiness_s: float = 2.0        # the readiness probe's period (one success makes it ready)
    endpoints_s: float = 2.0        # the Service's endpoints to the proxies
    tolerance: float = 0.1          # the HPA acts past 10 % off its target
    up_percent: float = 100.0       # scale-up policies: +100 % or +4 pods per 15 s, the larger
    up_pods: int = 4
    up_period_s: float = 15.0
    max_pods: int = 10

    def reaction(self) -> tuple[float, float]:
        """(typical, worst) seconds from a step in load to new pods taking their share: the
        average's lag (its time constant), then half of (all of) each period, then the start."""
        fixed = self.smoothing_s + self.start_s + self.endpoints_s
        periods = self.scrape_s + self.poll_s + self.sync_s + self.readiness_s
        return fixed + periods / 2, fixed + periods


@dataclass
class Ramp:
    start_rate: float
    slope: float                    # req/s added per second
    seconds: float
    pods0: int
    refused: float = 0.0            # requests beyond the ready pods' capacity
    offered: float = 0.0
    backlog_max: float = 0.0        # the same, queued instead (no --limit-concurrency)
    first_new_pod_s: float | None = None
    pods: list = field(default_factory=list)


def ramp(pod: Pod, start_rate: float, slope: float, seconds: float, target: float,
         a: Autoscaler, dt: float = 0.1) -> Ramp:
    """Rate start_rate + slope*t for `seconds`, from the pods the target asks for at the start:
    the gauge (each ready pod's, pod.saturation(), smoothed), scraped, polled, and the HPA's
    proportional step (ceil(sum / target)) limited by its scale-up policy; pods ready
    start_s + readiness + endpoints after they are asked for. Refused: pod.refused() of each
    pod's share (the limit's Erlang B, or what is beyond capacity); without a limit that excess
    is queued instead (backlog_max)."""
    pod_capacity = pod.capacity()
    pods = min(a.max_pods, pods_needed(start_rate, pod_capacity, use_at(pod, target)))
    r = Ramp(start_rate, slope, seconds, pods)
    ready, spec, pending = pods, pods, []           # pending: times new pods take load
    gauge = pod.saturation(start_rate / pods)
    scraped = polled = gauge
    last_up = -math.inf
    backlog = 0.0
    for i in range(int(seconds / dt)):
        t = i * dt
        while pending and pending[0] <= t:
            pending.pop(0)
            ready += 1
            if r.first_new_pod_s is None:
                r.first_new_pod_s = t
        rate = start_rate + slope * t
        capacity = ready * pod_capacity
        gauge += (pod.saturation(rate / ready) - gauge) * (1 - math.exp(-dt / a.smoothing_s))
        if _tick(t, dt, a.scrape_s):
            scraped = gauge
        if a.poll_s <= 0 or _tick(t, dt, a.poll_s):
            polled = scraped
        if _tick(t, dt, a.sync_s) and abs(polled * ready / (spec * target) - 1) > a.tolerance:
            want = math.ceil(polled * ready / target)
            if want > spec and t - last_up >= a.up_period_s - 1e-9:
                step = max(math.ceil(spec * a.up_percent / 100), a.up_pods)
                new = min(want, spec + step, a.max_pods) - spec
                if new > 0:
                    pending += [t + a.start_s + a.readiness_s / 2 + a.endpoints_s] * new
                    pending.sort()
                    spec += new
                    last_up = t
        excess = (rate - capacity) * dt
        r.offered += rate * dt
        r.refused += rate * pod.refused(rate / ready) * dt
        backlog = max(0.0, backlog + excess)
        r.backlog_max = max(r.backlog_max, backlog)
        r.pods.append((t, ready, spec))
    return r


def _tick(t: float, dt: float, period: float) -> bool:
    """Whether a periodic event (phase 0) falls in [t, t + dt)."""
    return period > 0 and math.floor((t + dt) / period - 1e-9) > math.floor(t / period - 1e-9)


def headroom_s(rate: float, target: float, slope: float) -> float:
    """How long a fleet sized at `target` takes `rate` more growing at `slope` req/s²."""
    return rate * (1 - target) / target / slope if slope > 0 else math.inf


def target_for_ramp(rate: float, slope: float, reaction_s: float) -> float:
    """The highest target whose room lasts the reaction: rate (1 - s)/s >= slope * reaction."""
    return rate / (rate + slope * reaction_s)


def drain_checks(shutdown_delay: float, graceful: float, grace_period: float,
                 longest_request: float, readiness_s: float, failures: int,
                 endpoints_s: float) -> list[tuple[str, bool]]:
    """The conditions under which a scale-down cuts no request."""
    return [
        (f"readiness fails and the endpoints drop the pod ({readiness_s:g} s x {failures} + "
         f"{endpoints_s:g} s) within the shutdown delay ({shutdown_delay:g} s): no request "
         f"arrives once it stops accepting", readiness_s * failures + endpoints_s
         <= shutdown_delay),
        (f"the graceful timeout ({graceful:g} s) outlasts the longest request "
         f"({longest_request:g} s)", graceful >= longest_request),
        (f"terminationGracePeriodSeconds ({grace_period:g} s) outlasts shutdown delay + "
         f"graceful timeout ({shutdown_delay + graceful:g} s): no SIGKILL mid-drain",
         grace_period > shutdown_delay + graceful),
    ]


# ------------------------------------------------------------------ the experiment's figures

def measured_pod(result: dict, data: dict) -> Pod:
    """A pod (the experiment's server) from bench/saturation.py's JSON: the loop's busy time
    per request from the low-load steps (the loop part's share over the achieved rate), the
    dependency's mean latency and pool from its settings."""
    low = [r for r in result["rows"] if r["fraction"] <= 0.5 and r["achieved_rps"] > 0
           and r["loop"] == r["loop"]]
    workers = data["workers"]
    loop_us = (sorted(r["loop"] * workers / r["achieved_rps"] for r in low)[len(low) // 2]
               * 1e6 if low else 0.0)
    pod = Pod(workers=workers, cores=1.0, loop_us=loop_us)
    if result["scenario"].startswith("async"):
        pod.dependency_ms = sum(data["delay_ms"]) / 2
        pod.limit = data["pool"]        # the app's pool: fastsock's limit in async-limit
    return pod


def measured_cpu_us(result: dict) -> float:
    low = [r for r in result["rows"] if r["fraction"] <= 0.5 and r["achieved_rps"] > 0]
    return (sorted(r["cpu"] / r["achieved_rps"] for r in low)[len(low) // 2] * 1e6
            if low else float("nan"))


def compare(data: dict, out) -> dict:
    """Predicted against measured, per scenario: capacity, and per step the gauge and the
    errors. -> {scenario: measured pod}."""
    pods = {}
    for result in data["results"]:
        pod = pods[result["scenario"]] = measured_pod(result, data)
        rows = result["rows"]
        measured_cap = max(r["achieved_rps"] for r in rows)
        print(f"\n{result['scenario']}: loop {pod.loop_us:.0f} µs/request busy, CPU "
              f"{measured_cpu_us(result):.0f} µs/request (low-load steps)", file=out)
        parts = ", ".join(f"{n} {c:.0f}" for n, c in pod.capacities().items())
        print(f"capacity: predicted {pod.capacity():.0f} req/s ({parts}), measured "
              f"{measured_cap:.0f} req/s (the most achieved in a step)", file=out)
        print("| offered req/s | gauge predicted | measured (last / mean) | errors predicted "
              "| measured |", file=out)
        print("|---|---|---|---|---|", file=out)
        unseen = result["scenario"] == "async-pool"     # the pool is not told to fastsock
        for r in rows:
            gauge = (Pod(pod.workers, pod.cores, pod.loop_us).saturation(r["offered_rps"])
                     if unseen else pod.saturation(r["offered_rps"]))
            refused = 0.0 if unseen else pod.refused(r["offered_rps"])
            print(f"| {r['offered_rps']:.0f} | {gauge:.2f} | {r['saturation_last']:.2f} / "
                  f"{r['saturation_mean']:.2f} | {refused:.1%} | {r['error_fraction']:.1%} |",
                  file=out)
    return pods


# ------------------------------------------------------------------ the report

def plan(pod: Pod, args, a: Autoscaler, out, name: str = "") -> None:
    cap = pod.capacity()
    caps = ", ".join(f"{n} {c:.0f}" for n, c in pod.capacities().items())
    print(f"\n## {name or 'the pod'}: {pod.workers} workers on {pod.cores:g} cores", file=out)
    print(f"capacity at saturation 1.0: {cap:.0f} req/s ({caps})", file=out)
    targets = {}
    if "app" in pod.capacities():
        use = limit_target(pod.limit, args.error_budget)
        targets["limit"] = pod.saturation(use * pod.capacities()["app"])
        print(f"target from the limit: Erlang B with {pod.limit} slots per worker stays within "
              f"{args.error_budget:.0%} refused up to {use:.2f} of the slots in use on average, "
              f"where the gauge reads {targets['limit']:.2f}", file=out)
    if "loop" in pod.capacities() and args.p99_ms:
        targets["loop"] = loop_target(pod.loop_us / 1e3, args.p99_ms)
        print(f"target from the loop: p99 within {args.p99_ms:g} ms (M/M/1, {pod.loop_us:.0f} "
              f"µs a request) up to loop use {targets['loop']:.2f}", file=out)
    typical, worst = a.reaction()
    print(f"reaction: {typical:.0f} s typical, {worst:.0f} s worst (average {a.smoothing_s:g} s "
          f"+ scrape {a.scrape_s:g} + poll {a.poll_s:g} + HPA sync {a.sync_s:g} + pod start "
          f"{a.start_s:g} + readiness {a.readiness_s:g} + endpoints {a.endpoints_s:g})", file=out)
    ramp_target = target_for_ramp(args.rate, args.ramp, worst)
    print(f"a ramp of {args.ramp:g} req/s per second at {args.rate:g} req/s: a target up to "
          f"{ramp_target:.2f} leaves room for the worst reaction", file=out)
    target = args.target
    use = use_at(pod, target)
    need = pods_needed(args.rate, cap, use)
    print(f"{args.rate:g} req/s at target {target:g} (the gauge; {use:.2f} of the capacity in "
          f"use): {need} pods (each at {args.rate / need / cap:.2f} of its capacity)", file=out)
    r = ramp(pod, args.rate, args.ramp, args.ramp_seconds, target, a)
    head = (need * cap - args.rate) / args.ramp if args.ramp > 0 else math.inf
    last = r.pods[-1]
    print(f"ramp {args.rate:g} -> {args.rate + args.ramp * args.ramp_seconds:g} req/s over "
          f"{args.ramp_seconds:g} s from {r.pods0} pods: their room lasts {head:.0f} s; "
          f"new pods take load after "
          f"{'never' if r.first_new_pod_s is None else f'{r.first_new_pod_s:.0f} s'}; "
          f"{last[1]} pods ready at the end (max {a.max_pods}); refused "
          f"{r.refused:.0f} requests ({r.refused / r.offered:.2%} of the ramp's); without a "
          f"limit, at most {r.backlog_max:.0f} queued beyond capacity", file=out)
    checks = drain_checks(args.shutdown_delay, args.graceful_timeout, args.grace_period,
                          args.longest_request, a.readiness_s, args.readiness_failures,
                          a.endpoints_s)
    print("scale-down cuts nothing: " + ("yes" if all(ok for _, ok in checks) else "NO"),
          file=out)
    for text, ok in checks:
        print(f"  {'ok' if ok else 'FAILS'}: {text}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--from", dest="source", type=Path,
                    help="bench/saturation.py --json FILE: its costs, and the comparison")
    pod = ap.add_argument_group("the pod")
    pod.add_argument("--workers", type=int, default=2, help="workers per pod")
    pod.add_argument("--cores", type=float, default=2.0, help="cores per pod (CPU limit)")
    pod.add_argument("--loop-us", type=float, default=0.0)
    pod.add_argument("--dependency-ms", type=float, default=0.0)
    pod.add_argument("--limit", type=int, default=0, help="--limit-concurrency per worker")
    pod.add_argument("--thread-ms", type=float, default=0.0)
    pod.add_argument("--threads", type=int, default=0)
    goal = ap.add_argument_group("the goal")
    goal.add_argument("--rate", type=float, default=2000.0, help="req/s to serve")
    goal.add_argument("--target", type=float, default=0.7, help="saturation to scale at")
    goal.add_argument("--p99-ms", type=float, default=0.0, help="latency target")
    goal.add_argument("--error-budget", type=float, default=0.01)
    goal.add_argument("--ramp", type=float, default=10.0, help="req/s added per second")
    goal.add_argument("--ramp-seconds", type=float, default=120.0)
    auto = ap.add_argument_group("the autoscaler (k8s/, docs/autoscaling.md)")
    for name, default in vars(Autoscaler()).items():
        auto.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    drain = ap.add_argument_group("the drain (k8s/base)")
    drain.add_argument("--shutdown-delay", type=float, default=5.0)
    drain.add_argument("--graceful-timeout", type=float, default=30.0)
    drain.add_argument("--grace-period", type=float, default=45.0)
    drain.add_argument("--readiness-failures", type=int, default=1)
    drain.add_argument("--longest-request", type=float, default=0.2, help="seconds")
    args = ap.parse_args(argv)
    a = Autoscaler(**{name: getattr(args, name) for name in vars(Autoscaler())})
    out = sys.stdout
    if args.source:
        data = json.loads(args.source.read_text())
        print(f"# the experiment: {data['title']}", file=out)
        pods = compare(data, out)
        for name, measured in pods.items():
            if name == "async-pool":
                continue        # the same pod as async-limit, the limit unset
            scaled = Pod(args.workers, args.cores, measured.loop_us, measured.dependency_ms,
                         measured.limit)
            plan(scaled, args, a, out, f"{name}, its measured costs")
    else:
        plan(Pod(args.workers, args.cores, args.loop_us, args.dependency_ms, args.limit,
                 args.thread_ms, args.threads), args, a, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
