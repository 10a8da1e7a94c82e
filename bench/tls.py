"""HTTPS: fastsock against nginx, uvicorn and granian, one worker each, the same certificates.

Each server runs one worker pinned to core 0; the load runs pinned to core 1. One CA and two
leaf certificates for localhost/127.0.0.1 (ECDSA P-256 and RSA 2048), made with the openssl CLI
in a temp dir (bench/tls_paths.py's make_certs), serve every server. Three measurements:

    keepalive   wrk over https (-t1, 50 connections, GET / "hello"), ECDSA certificate:
                req/s and the server's CPU µs per request (utime + stime of its process tree
                from /proc over the run)
    handshakes  new connections, ECDSA P-256 and RSA 2048 separately: bench/tls_handshakes.c
                (built here with cc) opens C connections at once, each a full handshake (it
                keeps no session and offers none: nothing resumes, and it counts that nothing
                did), one GET, the answer read, close_notify, close, and again: handshakes/s
                and the server's CPU µs per handshake; "busy" is the server's CPU seconds per
                wall second (near 1.0: the server's core is the limit; lower: the client's is)
    plain       the same hello over cleartext keep-alive (wrk over http), for reference

The servers:
    fastsock  `python -m fastsock examples.hello:app --workers 1 --tls-cert F --tls-key K`
              (metrics on, as in bench/run.py; examples.hello answers "hello" like the others)
    nginx     Debian's, one process, `return 200 "hello"`, access_log off, ssl_protocols TLSv1.2
              TLSv1.3, ssl_session_cache shared:SSL:10m with tickets on (nginx's usual
              production set-up; no client here resumes, so neither saves it work)
    uvicorn   httptools + uvloop, bench/asgi_hello.py, --ssl-certfile/--ssl-keyfile
    granian   --interface asgi, bench/asgi_hello.py (as bench/interfaces.py), --ssl-certificate/
              --ssl-keyfile, --ssl-protocol-min tls1.2

    python bench/tls.py [--duration 10] [--repeat 3] [--connections 50] [--hs-connections 32]
                        [--only fastsock,nginx,uvicorn,granian] [--skip keepalive,handshakes,plain]
                        [--smoke]

--smoke (CI): one-second runs, one repeat. A server that does not start or serve is reported on
its row with why, and the exit status is 1. Every process and temp dir it made is gone when it
returns. Needs wrk, nginx, openssl, a C compiler and libssl-dev.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (pinning, ports, process trees, CPU from /proc, wrk)
from tls_paths import kernel_tls_report, make_certs  # noqa: E402  (certificates; kTLS here?)

SERVERS = ("fastsock", "nginx", "uvicorn", "granian")
MEASUREMENTS = ("keepalive", "handshakes", "plain")
KINDS = ("ecdsa", "rsa")
SATURATED = 0.9         # a server this busy during the handshake run: its core set the pace
TMP: Path = Path()              # this run's temp dir (certificates, logs, the built client)

NGINX_TLS = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate @CERT@;
        ssl_certificate_key @KEY@;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        location / {{ default_type text/plain; return 200 "hello"; }}
    }}
}}
"""


class Unsupported(RuntimeError):
    """A server that cannot serve this measurement (said on its row)."""


# -- the servers: start(port, cert, key) -> (proc, cleanup); cert None: cleartext -----------------

def logged(name: str, cmd: list[str], cwd: Path = HERE, env: dict | None = None):
    """A server pinned to the server core, its output kept in TMP/<name>.log for when it fails."""
    with open(TMP / f"{name}.log", "wb") as log:
        return subprocess.Popen(["taskset", "-c", bench.SERVER_CORE, *cmd], stdout=log,
                                stderr=subprocess.STDOUT, cwd=cwd, env=env)


def fastsock_has_tls() -> bool:
    out = subprocess.run([sys.executable, "-m", "fastsock", "--help"], capture_output=True,
                         text=True, cwd=bench.ROOT, env=fastsock_env())
    return "--tls-cert" in out.stdout


def fastsock_env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{bench.ROOT}{os.pathsep}{HERE}"}


def start_fastsock(port: int, cert: Path | None, key: Path | None, metrics_port: int = 0):
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)] if cert else []
    if cert and not fastsock_has_tls():
        raise Unsupported("fastsock: --tls-cert not supported yet")
    if cert:        # its TLS counters, read after the run (counted either way; served apart)
        tls += ["--metrics-port", str(metrics_port)]
    return logged("fastsock", [sys.executable, "-m", "fastsock", "examples.hello:app",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                               "--log-level", "warning", *tls],
                  cwd=bench.ROOT, env=fastsock_env()), lambda: None


def start_nginx(port: int, cert: Path | None, key: Path | None):
    if not cert:
        return bench.start_nginx(port)
    return bench.start_nginx(port, NGINX_TLS.replace("@CERT@", str(cert))
                             .replace("@KEY@", str(key)))


def start_uvicorn(port: int, cert: Path | None, key: Path | None):
    tls = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)] if cert else []
    return logged("uvicorn", [sys.executable, "-m", "uvicorn", "asgi_hello:app", "--host",
                              "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http",
                              "httptools", "--no-access-log", "--log-level", "warning",
                              *tls]), lambda: None


def start_granian(port: int, cert: Path | None, key: Path | None):
    tls = (["--ssl-certificate", str(cert), "--ssl-keyfile", str(key),
            "--ssl-protocol-min", "tls1.2"] if cert else [])
    return logged("granian", [sys.executable, "-m", "granian", "--interface", "asgi", "--host",
                              "127.0.0.1", "--port", str(port), "--workers", "1",
                              "--log-level", "warning", "--no-ws", *tls,
                              "asgi_hello:app"]), lambda: None


STARTS = {"fastsock": start_fastsock, "nginx": start_nginx, "uvicorn": start_uvicorn,
          "granian": start_granian}


def core_busy(core: str) -> float:
    """CPU seconds one core has spent in processes (user, nice, system) and stolen by the
    hypervisor, by everyone (/proc/stat: on a shared machine, other loads on the server's core
    show as its busy time beyond ours; irq and softirq are left out: loopback traffic's, ours)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(
                int, line.split()[1:9])
            return (user + nice + system + steal) / bench.CLK_TCK
    raise RuntimeError(f"no cpu{core} in /proc/stat")


class Window:
    """The server's CPU, its core's (everyone's) and the wall clock over one measured run."""

    def __init__(self, server: Running):
        self.server = server

    def __enter__(self) -> Window:
        self.cpu0, self.core0 = self.server.cpu(), core_busy(bench.SERVER_CORE)
        self.wall0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.monotonic() - self.wall0
        self.cpu = self.server.cpu() - self.cpu0
        # what else ran on the server's core, as a share of the run (0: it had the core alone)
        self.others = max(0.0, core_busy(bench.SERVER_CORE) - self.core0 - self.cpu) / self.wall


class Running:
    """One server for one measurement: started, waited for, stopped (and why it failed)."""

    def __init__(self, name: str, cert: Path | None = None, key: Path | None = None):
        self.name, self.port = name, bench.free_port()
        self.metrics_port = bench.free_port() if name == "fastsock" and cert else 0
        extra = {"metrics_port": self.metrics_port} if self.metrics_port else {}
        self.proc, self.cleanup = STARTS[name](self.port, cert, key, **extra)

    def __enter__(self) -> Running:
        try:
            bench.wait_port(self.port)
        except RuntimeError as e:
            self.__exit__()
            raise RuntimeError(f"{self.name}: {e}{self.why()}") from None
        return self

    def why(self) -> str:
        log = TMP / f"{self.name}.log"
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        code = self.proc.poll()
        return ((f" (exited with {code})" if code is not None else "")
                + (f": {lines[-1][:200]}" if lines else ""))

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited during the run{self.why()}")

    def cpu(self) -> float:
        return bench.cpu_seconds(self.proc.pid)

    def tls_counters(self) -> str:
        """fastsock's own TLS counters (handshakes by version, cipher and resumed; failures by
        reason; kTLS by direction), non-zero ones, one string; "" for the other servers."""
        if not self.metrics_port:
            return ""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                text = answer.read().decode()
        except OSError as e:
            return f"metrics unreadable: {e}"
        wanted = ("fastsock_tls_handshakes_total", "fastsock_tls_handshake_failures_total",
                  "fastsock_tls_ktls_total")
        found = [line.split("fastsock_tls_", 1)[1] for line in text.splitlines()
                 if line.startswith(wanted) and not line.rstrip().endswith((" 0", " 0.0"))]
        return ", ".join(found) or "no fastsock_tls_ counter above 0"

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.cleanup()


# -- the measurements -----------------------------------------------------------------------------

def keepalive(name: str, args, certs: dict, tls: bool) -> dict:
    """wrk keep-alive over https (or http): req/s, server CPU µs per request."""
    pair = (certs["ecdsa.cert"], certs["ecdsa.key"]) if tls else (None, None)
    scheme = "https" if tls else "http"
    with Running(name, *pair) as server:
        bench.wrk(server.port, 1, args.connections, scheme=scheme)             # warm-up
        with Window(server) as w:
            r = bench.wrk(server.port, args.duration, args.connections, scheme=scheme)
        server.alive()
        counters = server.tls_counters()
    if not r["requests"]:
        raise RuntimeError(f"{name}: no request answered over {scheme}")
    return {"rps": r["rps"], "cpu_us": w.cpu / r["requests"] * 1e6, "others": w.others,
            "bad": r["bad"] + r["socket_errors"], "counters": counters}


def handshake_load(port: int, connections: int, seconds: float) -> dict:
    cmd = ["taskset", "-c", bench.CLIENT_CORE, str(TMP / "tls_handshakes"), str(port),
           str(connections), str(seconds)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def handshakes(name: str, kind: str, args, certs: dict) -> dict:
    """New connections (full handshake + one GET + close) per second, server CPU per each."""
    with Running(name, certs[f"{kind}.cert"], certs[f"{kind}.key"]) as server:
        handshake_load(server.port, args.hs_connections, 1)                     # warm-up
        with Window(server) as w:
            r = handshake_load(server.port, args.hs_connections, args.duration)
        server.alive()
        counters = server.tls_counters()
    if not r["done"]:
        raise RuntimeError(f"{name}: no new connection completed ({r['first_error']})")
    return {"hs_s": r["done"] / r["seconds"], "cpu_us": w.cpu / r["done"] * 1e6,
            "busy": w.cpu / w.wall, "others": w.others,
            "client_busy": r["client_cpu"] / r["seconds"],
            "bad": r["failed"] + r["resumed"], "resumed": r["resumed"],
            "proto": f"{r['version']} {r['cipher']}",
            "error": r["first_error"] if r["failed"] else "", "counters": counters}


def build_client() -> None:
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-O2", "-o", str(TMP / "tls_handshakes"), str(HERE / "tls_handshakes.c"),
                    "-lssl", "-lcrypto"], check=True)


# -- the run and the report -----------------------------------------------------------------------

def median_of(runs: list[dict]) -> dict:
    """Each numeric figure's median over the repeats (round robin over the servers, so a busy
    moment of a shared machine falls on one run of each); counts of bad answers summed."""
    out = dict(runs[-1])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)):
            out[key] = (sum(r[key] for r in runs) if key in ("bad", "resumed")
                        else statistics.median(r[key] for r in runs))
    return out


def cell(row: dict | None, key: str, spec: str) -> str:
    return format(row[key], spec) if row and key in row else "—"


def ratio_line(what: str, a: float, b: float, goal: str, meets) -> str:
    value = a / b
    return f"{what} {value:.2f}x (goal {goal}: {'met' if meets(value) else 'NOT met'})"


def main() -> int:
    global TMP
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    ap.add_argument("--repeat", type=int, default=3,
                    help="measure every server this many times, round robin; report medians")
    ap.add_argument("--connections", type=int, default=50, help="wrk's keep-alive connections")
    ap.add_argument("--hs-connections", type=int, default=32,
                    help="the handshake client's connections at once")
    ap.add_argument("--only", default=",".join(SERVERS), help="servers, comma-separated")
    ap.add_argument("--skip", default="", help="comma list of: " + ", ".join(MEASUREMENTS))
    ap.add_argument("--smoke", action="store_true", help="CI: --duration 1 --repeat 1")
    args = ap.parse_args()
    if args.smoke:
        args.duration, args.repeat = 1, 1
    names = [n for n in args.only.split(",") if n]
    skip = {s for s in args.skip.split(",") if s}
    for bad, known in ((set(names) - set(SERVERS), SERVERS),
                       (skip - set(MEASUREMENTS), MEASUREMENTS)):
        if bad:
            sys.exit(f"unknown: {', '.join(sorted(bad))} (known: {', '.join(known)})")
    for tool in ("wrk", "openssl", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")
    TMP = Path(tempfile.mkdtemp(prefix="fastsock-tls-bench-"))
    try:
        return measure(args, names, skip)
    finally:
        shutil.rmtree(TMP, ignore_errors=True)


def measure(args, names: list[str], skip: set[str]) -> int:
    certs = make_certs(TMP)
    build_client()
    jobs: list[tuple[str, object]] = []
    if "keepalive" not in skip:
        jobs.append(("tls", lambda n: keepalive(n, args, certs, tls=True)))
    if "handshakes" not in skip:
        for kind in KINDS:
            jobs.append((kind, lambda n, kind=kind: handshakes(n, kind, args, certs)))
    if "plain" not in skip:
        jobs.append(("plain", lambda n: keepalive(n, args, certs, tls=False)))
    runs: dict[tuple[str, str], list[dict]] = {}
    failed: dict[tuple[str, str], str] = {}
    for _ in range(args.repeat):
        for name in names:
            for what, job in jobs:
                if (name, what) in failed:
                    continue
                try:
                    r = job(name)
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    failed[name, what] = str(e).splitlines()[0] if str(e) else type(e).__name__
                    print(f"  {name} {what}: FAILED: {failed[name, what]}", file=sys.stderr)
                    continue
                runs.setdefault((name, what), []).append(r)
                figure = (f"{r['hs_s']:.0f} handshakes/s" if "hs_s" in r
                          else f"{r['rps']:.0f} req/s")
                print(f"  {name} {what}: {figure}, {r['cpu_us']:.1f} µs CPU each",
                      file=sys.stderr, flush=True)
    med = {key: median_of(rs) for key, rs in runs.items()}
    report(args, names, skip, med, failed)
    return 1 if failed else 0


def report(args, names: list[str], skip: set[str], med: dict, failed: dict) -> None:
    print(f"# bench/tls.py, {time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} "
          f"cores, Python {platform.python_version()}, {bench_openssl()}; one worker per "
          f"server on core {bench.SERVER_CORE}, load on core {bench.CLIENT_CORE}; "
          f"{args.duration}s per run, median of {args.repeat}")
    print("# " + " ".join(["python", "bench/tls.py", *sys.argv[1:]]))
    for line in kernel_tls_report():
        print(f"# {line}")
    print(f"# keep-alive: wrk -t1 -c{args.connections}, GET / 'hello', ECDSA P-256 certificate; "
          f"handshakes: bench/tls_handshakes.c, {args.hs_connections} connections at once, "
          f"each a full handshake + one GET + close")
    print()
    print("| server | TLS req/s | TLS CPU µs/req | cleartext req/s | cleartext CPU µs/req "
          "| ECDSA hs/s | µs/hs | busy | RSA hs/s | µs/hs | busy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        tls, plain = med.get((name, "tls")), med.get((name, "plain"))
        ec, rsa = med.get((name, "ecdsa")), med.get((name, "rsa"))
        why = sorted({why for (n, _), why in failed.items() if n == name})
        print(f"| {name} | {cell(tls, 'rps', '.0f')} | {cell(tls, 'cpu_us', '.2f')} "
              f"| {cell(plain, 'rps', '.0f')} | {cell(plain, 'cpu_us', '.2f')} "
              f"| {cell(ec, 'hs_s', '.0f')} | {cell(ec, 'cpu_us', '.0f')} "
              f"| {cell(ec, 'busy', '.2f')} | {cell(rsa, 'hs_s', '.0f')} "
              f"| {cell(rsa, 'cpu_us', '.0f')} | {cell(rsa, 'busy', '.2f')} |"
              + "".join(f" FAILED: {w}" for w in why))
    print()
    for (name, what), r in med.items():
        notes = []
        if r.get("others", 0) >= 0.05:
            notes.append(f"other loads took {r['others']:.2f} of the server's core (its rate "
                         "is theirs too; CPU per request or handshake stands)")
        if r.get("bad"):
            notes.append(f"{r['bad']:.0f} bad answers or socket errors")
        if r.get("resumed"):
            notes.append(f"{r['resumed']:.0f} RESUMED handshakes (the figure is not of full "
                         "handshakes)")
        if "proto" in r:
            notes.append(f"{r['proto']}; handshake client busy {r['client_busy']:.2f}")
        if r.get("error"):
            notes.append(f"first failure: {r['error']}")
        if r.get("counters"):
            notes.append(f"its counters (last run, warm-up included; failures 'closed': the "
                         f"readiness probe and the connections the client drops mid-handshake "
                         f"when its time is up): {r['counters']}")
        if notes:
            print(f"# {name} {what}: " + "; ".join(notes))
    fs = lambda what: med.get(("fastsock", what))   # noqa: E731
    lines = []
    for peer, goal, bound in (("nginx", "<= 1.2", 1.2), ("uvicorn", "<= 0.5", 0.5)):
        if "keepalive" in skip or peer not in names:
            continue
        p = med.get((peer, "tls"))
        if fs("tls") and p:
            lines.append(ratio_line(f"fastsock/{peer}: CPU per TLS request", fs("tls")["cpu_us"],
                                    p["cpu_us"], goal, lambda v, b=bound: v <= b)
                         + f", req/s {fs('tls')['rps'] / p['rps']:.2f}x")
        else:
            lines.append(f"fastsock/{peer}: CPU per TLS request: no figure (goal {goal})")
    if "handshakes" not in skip and "nginx" in names:
        for kind in KINDS:
            lines.append(handshake_goal(kind, fs(kind), med.get(("nginx", kind))))
    print("\n".join(lines))
    print("# busy: the server's CPU seconds per wall second during the handshake run; below "
          f"{SATURATED} the client's core (or another load on the server's) set the pace, and "
          "the figure to compare is the server core's capacity, 1e6 / (µs/hs)")


def handshake_goal(kind: str, fs: dict | None, ng: dict | None) -> str:
    """The handshake goal (>= 0.8x nginx's handshakes/s): on the measured rates when nginx's
    core was the limit, else on what each server's core could do (1e6 / its µs per handshake):
    a client that cannot keep nginx busy measures the client, not the servers."""
    label = {"ecdsa": "ECDSA P-256", "rsa": "RSA 2048"}[kind]
    if not (fs and ng):
        return f"fastsock/nginx: handshakes/s {label}: no figure (goal >= 0.8)"
    measured = fs["hs_s"] / ng["hs_s"]
    capacity = ng["cpu_us"] / fs["cpu_us"]
    judged = measured if ng["busy"] >= SATURATED else capacity
    on = ("measured rates" if ng["busy"] >= SATURATED else
          f"per-core figure: nginx was busy {ng['busy']:.2f} of the time, the client or another "
          "load set the pace")
    return (f"fastsock/nginx: handshakes/s {label}: measured {measured:.2f}x, per server core "
            f"{capacity:.2f}x (goal >= 0.8 on the {on}: "
            f"{'met' if judged >= 0.8 else 'NOT met'})")


def bench_openssl() -> str:
    out = subprocess.run(["openssl", "version"], capture_output=True, text=True)
    return out.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
