"""WebSocket echo: fastsock against uvicorn (websockets, wsproto), granian and picows' own server,
in one run, one worker each.

Each server runs pinned to core 0; the load generator (bench/ws_load.py: picows' client on
uvloop, C connections with W messages in flight each) runs pinned to core 1. For each server and
message size (32 B and 4 KiB, binary unless --text): messages per second and the server's CPU
time per message (its process tree's utime + stime from /proc over the measured window: the fair
figure on a shared or saturated machine). Then, on a fresh start of each server, memory per idle
WebSocket: N connections open, each having echoed one 32 B message, and the growth of the
server's anonymous resident memory (RssAnon) and of its Pss (smaps_rollup) divided by N; again
with permessage-deflate negotiated (one compressed message each), where the server has it.

    python bench/websocket.py [--duration 10] [--connections 100] [--inflight 8]
                              [--idle 1000] [--only uvicorn-websockets,picows] [--text]
                              [--repeat 3] [--json FILE]

The generator's own ceiling: its CPU per message is printed beside each row (it has a core of
its own; a row where it nears a whole core is the generator's figure, not the server's).

fastsock's rows: "fastsock" serves bench/ws_echo_fastsock.py (the native
`@app.websocket("/echo")`), "fastsock-asgi" the Starlette echo of bench/ws_apps.py; a server
that does not complete the handshake is reported as skipped, with why.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (pinning, ports, process trees, CPU from /proc)

SIZES = (32, 4096)
PATH = "/echo"
# the servers' output, this run's only (emptied as it starts)
LOG = Path(os.environ.get("TMPDIR", "/tmp")) / "fastsock-ws-bench.log"


def quiet(cmd: list[str], **kw) -> subprocess.Popen:
    """A server pinned to the server core, its output kept for when it fails."""
    with open(LOG, "ab") as log:
        return subprocess.Popen(["taskset", "-c", bench.SERVER_CORE, *cmd], stdout=log,
                                stderr=subprocess.STDOUT, cwd=HERE, env={
                                    **os.environ,
                                    "PYTHONPATH": f"{HERE}{os.pathsep}{bench.ROOT}"}, **kw)


def start_uvicorn(ws: str):
    def start(port: int) -> subprocess.Popen:
        return quiet([sys.executable, "-m", "uvicorn", "ws_apps:app", "--host", "127.0.0.1",
                      "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                      "--ws", ws, "--lifespan", "off", "--no-access-log",
                      "--log-level", "warning", "--backlog", "4096"])
    return start


def start_granian(port: int) -> subprocess.Popen:
    return quiet([sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                  "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                  "--loop", "uvloop", "--no-access-log", "--log-level", "warning",
                  "--backlog", "4096", "ws_apps:app"])


def start_picows(port: int) -> subprocess.Popen:
    return quiet([sys.executable, str(HERE / "ws_echo_picows.py"), str(port)])


def start_fastsock_app(app: str):
    def start(port: int) -> subprocess.Popen:
        return quiet([sys.executable, "-m", "fastsock", app, "--host", "127.0.0.1",
                      "--port", str(port), "--workers", "1", "--log-level", "warning"])
    return start


SERVERS = {
    # the native echo (bench/ws_echo_fastsock.py) and the Starlette one, both on fastsock
    "fastsock": start_fastsock_app("ws_echo_fastsock:app"),
    "fastsock-asgi": start_fastsock_app("ws_apps:starlette_app"),
    "uvicorn-websockets": start_uvicorn("websockets"),
    "uvicorn-wsproto": start_uvicorn("wsproto"),
    "granian": start_granian,
    "picows": start_picows,
}
PEERS = ["uvicorn-websockets", "uvicorn-wsproto", "granian", "picows"]


# ------------------------------------------------------------------ a raw client, for idle sockets


def handshake(port: int, deflate: bool = False, timeout: float = 10.0) -> tuple[socket.socket,
                                                                                 bytes, bytes]:
    """An upgraded socket, the response head and what came after it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    extension = ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                 if deflate else "")
    sock.sendall((f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n{extension}\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise ConnectionError(f"closed during the handshake: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(f"no upgrade: {head.splitlines()[0]!r}")
    return sock, head, rest


def client_frame(payload: bytes, opcode: int = 2, rsv1: bool = False) -> bytes:
    """One masked, final frame (payload under 64 KiB)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def deflated(payload: bytes) -> bytes:
    """A permessage-deflate message body: raw deflate, the final empty block's tail cut off."""
    c = zlib.compressobj(wbits=-15)
    return (c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def echo_once(sock: socket.socket, rest: bytes, deflate: bool, size: int = 32) -> None:
    """Send one binary message of `size` bytes (< 120; compressed with deflate) and read the
    whole reply frame (unmasked, under 126 bytes; compressed back from the server's 64 bytes
    on: both zlib streams then live on)."""
    payload = b"y" * size
    sock.sendall(client_frame(deflated(payload), rsv1=True) if deflate else client_frame(payload))
    data = rest
    while len(data) < 2 or len(data) < 2 + (data[1] & 0x7F):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed instead of echoing")
        data += chunk




# ---------------------------------------------------------------------------------- the runs


def started(start, port: int) -> subprocess.Popen:
    """A server that completes a WebSocket handshake on /echo (else: stopped, and why)."""
    proc = start(port)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode} (its output: {LOG})")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        sock, _, rest = handshake(port)
        echo_once(sock, rest, deflate=False)
        sock.close()
        return proc
    except Exception:
        stop(proc)
        raise


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(port: int, pid: int, size: int, args) -> dict:
    cmd = ["taskset", "-c", bench.CLIENT_CORE, sys.executable, str(HERE / "ws_load.py"),
           f"ws://127.0.0.1:{port}{PATH}", "--pid", str(pid), "--connections",
           str(args.connections), "--inflight", str(args.inflight), "--size", str(size),
           "--duration", str(args.duration)] + (["--text"] if args.text else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 120)
    if out.returncode:
        raise RuntimeError(f"the load generator failed: {out.stderr.strip()[-2000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    n = max(r["messages"], 1)
    return {"msgs_per_s": r["messages"] / r["seconds"], "cpu_us": r["server_cpu"] / n * 1e6,
            "server_core": r["server_cpu"] / r["seconds"],
            "gen_cpu_us": r["client_cpu"] / n * 1e6, "gen_core": r["client_cpu"] / r["seconds"],
            "wrong": r["wrong_size"] + r["lost"]}


def idle(start, n: int, deflate: bool) -> dict:
    port = bench.free_port()
    proc = started(start, port)
    socks: list[socket.socket] = []
    try:
        for _ in range(100):                        # warm: first-connection work done once
            sock, _, rest = handshake(port, deflate)
            echo_once(sock, rest, deflate)
            sock.close()
        time.sleep(0.5)
        rss0, pss0 = bench.rss_anon_kib(proc.pid), bench.pss_kib(proc.pid)
        for _ in range(n):
            sock, head, rest = handshake(port, deflate)
            if deflate and b"permessage-deflate" not in head.lower():
                sock.close()
                return {"kib": None, "pss_kib": None, "note": "no permessage-deflate"}
            echo_once(sock, rest, deflate)
            socks.append(sock)
        time.sleep(1.0)                             # the server settles (its own timers run)
        rss1, pss1 = bench.rss_anon_kib(proc.pid), bench.pss_kib(proc.pid)
        return {"kib": (rss1 - rss0) / n, "pss_kib": (pss1 - pss0) / n}
    finally:
        for sock in socks:
            sock.close()
        stop(proc)


def measure(name: str, args) -> dict:
    start = SERVERS[name]
    port = bench.free_port()
    proc = started(start, port)
    try:
        result: dict = {"name": name}
        for size in SIZES:
            result[size] = load(port, proc.pid, size, args)
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited during the run")
    finally:
        stop(proc)
    return result


def measure_idle(name: str, result: dict, args) -> None:
    start = SERVERS[name]
    if args.idle:
        result["idle"] = idle(start, args.idle, deflate=False)
        result["idle_deflate"] = idle(start, args.idle, deflate=True)


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over the runs (round robin over the servers, so a busy moment of a
    shared machine falls on one run of each, not on one server)."""
    out: dict = {"name": runs[0]["name"]}
    for size in SIZES:
        out[size] = {k: statistics.median(r[size][k] for r in runs) for k in runs[0][size]}
        out[size]["wrong"] = sum(r[size]["wrong"] for r in runs)
    return out


def fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def main() -> int:
    LOG.write_bytes(b"")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--inflight", type=int, default=8, help="messages in flight per connection")
    ap.add_argument("--idle", type=int, default=1000, help="idle WebSockets (0: no idle run)")
    ap.add_argument("--only", default=",".join(SERVERS))
    ap.add_argument("--text", action="store_true", help="text messages (default: binary)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure every server this many times, round robin; report medians")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 200:
        sys.exit(f"the open-file limit ({hard}) is below {args.idle} idle sockets")
    runs: dict[str, list[dict]] = {}
    skipped: dict[str, str] = {}
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        sys.exit(f"no such server: {', '.join(unknown)} (these are: {', '.join(SERVERS)})")
    for _ in range(args.repeat):
        for name in names:
            if name in skipped:
                continue
            try:
                r = measure(name, args)
            except (OSError, RuntimeError) as e:
                skipped[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
                print(f"  skipped {name}: {skipped[name]}", file=sys.stderr)
                continue
            runs.setdefault(name, []).append(r)
            print(f"  measured {name}: " + ", ".join(
                f"{s} B {r[s]['msgs_per_s']:.0f} msg/s {r[s]['cpu_us']:.2f} µs/msg"
                for s in SIZES), file=sys.stderr)
    results = {name: median_of(rs) for name, rs in runs.items()}
    for name, result in results.items():
        try:
            measure_idle(name, result, args)
        except (OSError, RuntimeError) as e:
            print(f"  no idle figure for {name}: {e}", file=sys.stderr)
    kind = "text" if args.text else "binary"
    print(f"# {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.python_implementation()} {platform.python_version()}; server on core "
          f"{bench.SERVER_CORE}, bench/ws_load.py on core {bench.CLIENT_CORE}: "
          f"{args.connections} connections x {args.inflight} {kind} messages in flight, "
          f"{args.duration:g}s per size" + (f", median of {args.repeat}" if args.repeat > 1
                                             else "") + f"; idle: {args.idle} sockets")
    print("| server             |  32 B msg/s | CPU µs/msg | 4 KiB msg/s | CPU µs/msg "
          "| idle KiB/ws (Pss) | deflate KiB/ws (Pss) | generator µs/msg 32 B / 4 KiB |")
    print("|--------------------|-------------|------------|-------------|------------"
          "|-------------------|----------------------|-------------------------------|")
    for r in results.values():
        small, big = r[SIZES[0]], r[SIZES[1]]
        plain, dfl = r.get("idle", {}), r.get("idle_deflate", {})
        print(f"| {r['name']:<18} | {small['msgs_per_s']:>11.0f} | {small['cpu_us']:>10.2f} "
              f"| {big['msgs_per_s']:>11.0f} | {big['cpu_us']:>10.2f} "
              f"| {fmt(plain.get('kib'), '.2f'):>7} ({fmt(plain.get('pss_kib'), '.2f'):>7}) "
              f"| {fmt(dfl.get('kib'), '.2f'):>8} ({fmt(dfl.get('pss_kib'), '.2f'):>9}) "
              f"| {small['gen_cpu_us']:>14.2f} / {big['gen_cpu_us']:>6.2f} |"
              + (f" {small['wrong'] + big['wrong']} wrong echoes" if
                 small["wrong"] + big["wrong"] else ""))
    for name, why in skipped.items():
        print(f"| {name:<18} | skipped: {why}")
    for name in ("fastsock", "fastsock-asgi"):
        if name not in results:
            continue
        fs = results[name]
        print()
        for peer in PEERS:
            if peer not in results:
                continue
            p = results[peer]
            print(f"{name}/{peer}: CPU per message " + ", ".join(
                f"{s} B {fs[s]['cpu_us'] / p[s]['cpu_us']:.2f}x" for s in SIZES)
                + ", msg/s " + ", ".join(
                f"{s} B {fs[s]['msgs_per_s'] / p[s]['msgs_per_s']:.2f}x" for s in SIZES))
    if len(results) > 1 and "picows" in results:
        print()
        pw = results["picows"]
        for name, r in results.items():
            if name != "picows" and not name.startswith("fastsock"):   # those printed above
                print(f"{name}/picows: CPU per message " + ", ".join(
                    f"{s} B {r[s]['cpu_us'] / pw[s]['cpu_us']:.2f}x" for s in SIZES))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results, "skipped": skipped}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
