"""How TLS should enter fastsock's loop, measured: the same edge-triggered epoll loop in Cython
(bench/tls_paths_loop.pyx, built by this script with cythonize into a temp dir) serving a fixed
hello response to keep-alive requests over TLS 1.3, by each path, beside nginx:

    plain   no TLS: the loop's own cost
    pyssl   A. Python's ssl: ssl.SSLObject + two ssl.MemoryBIOs, driven per read/write
    ossl    B. OpenSSL called directly: SSL_set_fd, SSL_accept/SSL_read_ex/SSL_write_ex
    ktls    C. B with SSL_OP_ENABLE_KTLS (whether the kernel took the records is reported)
    nginx   Debian's nginx, one process, the same certificate, ssl_protocols TLSv1.3

The server runs pinned to core 0, the client (this process, Python's ssl) to core 1; one
ECDSA P-256 and one RSA 2048 certificate from one CA, made with the openssl CLI. Figures:

    instructions per keep-alive request (valgrind --tool=callgrind on the server, fixed count:
        two runs, FEW and FEW + N requests, the difference / N, as bench/instructions.py)
    server CPU microseconds per request (/proc/PID/schedstat over a fixed count, no valgrind)
    instructions and CPU microseconds per new connection (handshake + one request + close),
        ECDSA P-256 and RSA 2048, and the handshakes per second that CPU gives one core
    memory per idle TLS connection (the server's RssAnon over K open connections, less plain)

    python bench/tls_paths.py [--requests 5000] [--cpu-requests 20000] [--handshakes 300]
                              [--idle 1000] [--depth 1] [--only plain,pyssl,ossl,ktls,nginx]
                              [--skip callgrind]

Everything is bounded by its count, runs on 127.0.0.1, and every process and temp dir it made
is gone when it returns. Needs valgrind, nginx, openssl, libssl-dev, Cython.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER_CORE, CLIENT_CORE = "0", "1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
# fastsock's own answer to examples.hello's GET / (its Date fixed)
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 5\r\nDate: Sat, 05 Dec 2026 03:49:14 GMT\r\n\r\nhello")
PATHS = ("plain", "pyssl", "ossl", "ktls", "nginx")
FEW = 16                    # the start-up run's count, subtracted from the measured one

NGINX_CONF = """
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {tmp};
    proxy_temp_path {tmp};
    fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp};
    scgi_temp_path {tmp};
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        location / {{ default_type "text/plain; charset=utf-8"; return 200 "hello"; }}
    }}
}}
"""


# -- set-up: certificates, the loop's build ----------------------------------------------------

def run(cmd: list[str], **kw) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def make_certs(tmp: Path) -> dict[str, Path]:
    """A CA (P-256) and two leaf certificates for localhost/127.0.0.1 it signs: P-256, RSA 2048."""
    ext = tmp / "leaf.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.pem"), "-days", "2",
         "-subj", "/CN=tls_paths bench CA"])
    files = {"ca": tmp / "ca.pem"}
    for kind, keyopts in (("ecdsa", ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                          ("rsa", ["rsa:2048"])):
        key, csr, cert = tmp / f"{kind}.key", tmp / f"{kind}.csr", tmp / f"{kind}.pem"
        run(["openssl", "req", "-newkey", *keyopts, "-nodes", "-keyout", str(key),
             "-out", str(csr), "-subj", "/CN=localhost"])
        run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(tmp / "ca.pem"),
             "-CAkey", str(tmp / "ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", str(ext), "-out", str(cert)])
        files[f"{kind}.cert"], files[f"{kind}.key"] = cert, key
    return files


def build_loop(tmp: Path) -> Path:
    """bench/tls_paths_loop.pyx compiled (-O2, linked to libssl) into tmp/build."""
    out = tmp / "build"
    out.mkdir()
    shutil.copy(HERE / "tls_paths_loop.pyx", out)
    setup = ("from setuptools import setup, Extension\n"
             "from Cython.Build import cythonize\n"
             "setup(ext_modules=cythonize([Extension('tls_paths_loop', ['tls_paths_loop.pyx'],"
             " libraries=['ssl', 'crypto'], extra_compile_args=['-O2'])], quiet=True),"
             " script_args=['build_ext', '--inplace', '-q'])\n")
    subprocess.run([sys.executable, "-c", setup], cwd=out, check=True,
                   stdout=subprocess.DEVNULL)
    return out


# -- the server (run as `tls_paths.py --serve PATH`) --------------------------------------------

def serve(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(args.modules))
    import tls_paths_loop  # noqa: PLC0415  (built at run time)

    def stop(signum, frame):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(4096)
    listener.setblocking(False)
    loop = tls_paths_loop.Loop(listener.fileno(), args.serve, RESPONSE, args.cert, args.key)
    try:
        loop.run()
    finally:
        stats = {k: getattr(loop, k) for k in ("requests", "handshakes", "failed", "ktls_send",
                                               "ktls_recv", "version", "cipher", "detail")}
        print(json.dumps(stats), flush=True)
    return 0


# -- starting and stopping servers ---------------------------------------------------------------

class Server:
    """One server process, pinned to SERVER_CORE, maybe under callgrind; stopped by SIGTERM."""

    def __init__(self, path: str, cert: Path, key: Path, tmp: Path, modules: Path,
                 callgrind: Path | None = None):
        self.path, self.port = path, free_port()
        prefix = ["taskset", "-c", SERVER_CORE]
        if callgrind:
            prefix += ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}"]
        if path == "nginx":
            conf = tmp / f"nginx-{self.port}.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, port=self.port, cert=cert, key=key))
            cmd = [shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(conf), "-p", str(tmp)]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", path,
                   "--port", str(self.port), "--cert", str(cert), "--key", str(key),
                   "--modules", str(modules)]
        self.proc = subprocess.Popen(prefix + cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.stats: dict = {}
        wait_port(self.port, self.proc, 120 if callgrind else 20)

    def cpu_ns(self) -> int:
        """The server's time on a CPU so far (ns, /proc/PID/schedstat; valgrind runs as PID)."""
        return int(Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()[0])

    def rss_anon_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^RssAnon:\s+(\d+)", status, re.M).group(1))

    def stop(self) -> None:
        # again and again: a signal that lands between nginx's check of its flags and its
        # epoll_wait (no timer: no timeout) is seen only at the next event
        out = err = ""
        for _ in range(60):
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                out, err = self.proc.communicate(timeout=2)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            self.proc.kill()
            out, err = self.proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.stats = json.loads(lines[-1]) if lines else {}
        if self.path != "nginx" and not lines:
            raise RuntimeError(f"{self.path} server ended without its stats:\n{err[-2000:]}")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server ended: {proc.stderr.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"nothing listens on port {port}")


# -- the client (this process, on CLIENT_CORE) ----------------------------------------------------

def client_context(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def connect(port: int, ctx: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(sock, server_hostname="localhost") if ctx else sock


def exchange(sock: socket.socket, depth: int) -> None:
    """depth requests in one write, then read until depth responses have come."""
    sock.sendall(REQUEST * depth)
    buf = b""
    while buf.count(b"\r\n\r\nhello") < depth:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buf += chunk


def keepalive(server: Server, ctx: ssl.SSLContext | None, n: int, depth: int) -> tuple[int, float]:
    """n requests over one connection, depth per write: (server CPU ns, wall s) for them."""
    with connect(server.port, ctx) as sock:
        exchange(sock, 1)               # the handshake and a first request: not counted
        cpu, wall = server.cpu_ns(), time.perf_counter()
        for done in range(0, n, depth):
            exchange(sock, min(depth, n - done))
        return server.cpu_ns() - cpu, time.perf_counter() - wall


def new_connections(server: Server, ctx: ssl.SSLContext | None, n: int,
                    threads: int = 4) -> tuple[int, float]:
    """n new connections (a handshake, one request, close), from `threads` threads (the ssl
    module lets go of the GIL in a handshake): (server CPU ns, wall s) for them."""
    errors: list[Exception] = []

    def worker(count: int) -> None:
        try:
            for _ in range(count):
                with connect(server.port, ctx) as sock:
                    exchange(sock, 1)
        except (OSError, ConnectionError) as e:     # reported by the caller
            errors.append(e)
    cpu, wall = server.cpu_ns(), time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n // threads + (i < n % threads),))
            for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return server.cpu_ns() - cpu, time.perf_counter() - wall


def idle_memory(server: Server, ctx: ssl.SSLContext | None, k: int) -> float:
    """Bytes of the server's RssAnon per connection left open after one request each."""
    warm = [connect(server.port, ctx) for _ in range(16)]   # the loop's own buffers, grown
    for s in warm:
        exchange(s, 1)
    before = server.rss_anon_kib()
    socks = []
    try:
        for _ in range(k):
            socks.append(connect(server.port, ctx))
            exchange(socks[-1], 1)
        time.sleep(0.2)             # (the server has answered all: RssAnon is settled)
        return (server.rss_anon_kib() - before) * 1024 / k
    finally:
        for s in socks + warm:
            s.close()


# -- callgrind -------------------------------------------------------------------------------------

def instructions(path: str, cert: Path, key: Path, tmp: Path, modules: Path, n: int,
                 drive) -> tuple[int, dict]:
    """Instructions the server executes per unit of drive(server, count): two callgrind runs,
    FEW and FEW + n units, the difference / n (start-up and the first handshake cancel)."""
    totals = []
    stats: dict = {}
    for count in (FEW, FEW + n):
        out = tmp / f"cg.{path}.{count}.{time.monotonic_ns()}"
        with Server(path, cert, key, tmp, modules, callgrind=out) as server:
            drive(server, count)
        stats = server.stats
        m = re.search(r"^(?:summary|totals): (\d+)", out.read_text(errors="replace"), re.M)
        totals.append(int(m.group(1)))
    return (totals[1] - totals[0]) // n, stats


# -- the report -----------------------------------------------------------------------------------

def kernel_tls_report() -> list[str]:
    ulp = Path("/proc/sys/net/ipv4/tcp_available_ulp")
    lines = [f"kernel {platform.release()}; tcp_available_ulp: "
             f"{ulp.read_text().strip() if ulp.exists() else '(absent)'}"]
    with socket.socket() as a:
        a.bind(("127.0.0.1", 0))
        a.listen()
        with socket.create_connection(a.getsockname()) as b:
            try:
                b.setsockopt(socket.IPPROTO_TCP, 31, b"tls")   # TCP_ULP: what OpenSSL does
                lines.append("setsockopt(TCP_ULP, \"tls\"): accepted: the kernel offers kTLS")
            except OSError as e:
                lines.append(f"setsockopt(TCP_ULP, \"tls\"): {e.strerror}: no kTLS here "
                             "(CONFIG_TLS off, or the tls module not loaded)")
    conf = Path("/usr/include/x86_64-linux-gnu/openssl/configuration.h")
    if conf.exists():
        built = "OPENSSL_NO_KTLS" not in conf.read_text()
        lines.append(f"{ssl.OPENSSL_VERSION}: built with kTLS support: {built}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=5000, help="callgrind: keep-alive requests")
    ap.add_argument("--cpu-requests", type=int, default=20000, help="/proc: keep-alive requests")
    ap.add_argument("--handshakes", type=int, default=300,
                    help="new connections per figure (callgrind: a fifth of it)")
    ap.add_argument("--idle", type=int, default=1000, help="idle connections for memory")
    ap.add_argument("--depth", type=int, default=1, help="requests per write (pipelining)")
    ap.add_argument("--only", default=",".join(PATHS))
    ap.add_argument("--skip", default="", help="comma list of: callgrind, cpu, handshakes, idle")
    ap.add_argument("--serve", choices=PATHS[:-1], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--modules", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args)
    for tool in ("valgrind", "nginx", "openssl", "taskset"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is not installed")
    only, skip = args.only.split(","), set(args.skip.split(","))
    os.sched_setaffinity(0, {int(CLIENT_CORE)})
    tmp = Path(tempfile.mkdtemp(prefix="fastsock-tls-paths-"))
    try:
        return measure(args, only, skip, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace, only: list[str], skip: set[str], tmp: Path) -> int:
    certs = make_certs(tmp)
    modules = build_loop(tmp)
    ctx = client_context(certs["ca"])
    rows: dict[str, dict] = {p: {} for p in only}
    ecdsa = (certs["ecdsa.cert"], certs["ecdsa.key"])
    rsa = (certs["rsa.cert"], certs["rsa.key"])

    def tls(path: str) -> ssl.SSLContext | None:
        return None if path == "plain" else ctx

    for path in only:
        row = rows[path]
        client = tls(path)

        def say(what: str, path: str = path) -> None:
            print(f"  {path}: {what}", file=sys.stderr, flush=True)

        def requests(server: Server, k: int, client=client) -> None:
            keepalive(server, client, k, args.depth)

        def connections(server: Server, k: int, client=client) -> None:
            new_connections(server, client, k)
        if "callgrind" not in skip:
            row["instr/req"], stats = instructions(
                path, *ecdsa, tmp, modules, args.requests, requests)
            row["stats"] = stats
            say(f"{row['instr/req']} instructions per request")
            if path != "plain" and "handshakes" not in skip:
                for kind, pair in (("ecdsa", ecdsa), ("rsa", rsa)):
                    row[f"instr/hs {kind}"], _ = instructions(
                        path, *pair, tmp, modules, max(args.handshakes // 5, 10), connections)
                    say(f"{row[f'instr/hs {kind}']} instructions per new connection ({kind})")
        if "cpu" not in skip:
            with Server(path, *ecdsa, tmp, modules) as server:
                cpu, wall = keepalive(server, client, args.cpu_requests, args.depth)
            row["us/req"], row["req/s"] = cpu / 1e3 / args.cpu_requests, args.cpu_requests / wall
            row.setdefault("stats", server.stats)
            say(f"{row['us/req']:.2f} µs CPU per request")
        if path != "plain" and "handshakes" not in skip:
            for kind, pair in (("ecdsa", ecdsa), ("rsa", rsa)):
                with Server(path, *pair, tmp, modules) as server:
                    cpu, wall = new_connections(server, ctx, args.handshakes)
                row[f"us/hs {kind}"] = cpu / 1e3 / args.handshakes
                row[f"hs/s {kind}"] = args.handshakes / wall
                row[f"busy {kind}"] = cpu / 1e9 / wall
                say(f"{row[f'us/hs {kind}']:.0f} µs CPU per new connection ({kind})")
        if "idle" not in skip:
            with Server(path, *ecdsa, tmp, modules) as server:
                row["idle B"] = idle_memory(server, client, args.idle)
            say(f"{row['idle B']:.0f} B per idle connection")
    report(args, rows)
    return 0


def report(args: argparse.Namespace, rows: dict[str, dict]) -> None:
    print(f"# bench/tls_paths.py, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores; server on core {SERVER_CORE}, client on {CLIENT_CORE}")
    print("# " + " ".join(sys.argv))
    for line in kernel_tls_report():
        print(f"# {line}")
    print(f"# keep-alive: callgrind {args.requests} requests, /proc {args.cpu_requests} requests, "
          f"{args.depth} per write; new connections (handshake + 1 request + close): "
          f"{args.handshakes} from 4 client threads, callgrind {max(args.handshakes // 5, 10)}; "
          f"idle: {args.idle} connections")
    cols = [("instr/req", "{:.0f}"), ("us/req", "{:.2f}"), ("req/s", "{:.0f}"),
            ("instr/hs ecdsa", "{:.0f}"), ("us/hs ecdsa", "{:.0f}"), ("hs/s ecdsa", "{:.0f}"),
            ("busy ecdsa", "{:.2f}"), ("instr/hs rsa", "{:.0f}"), ("us/hs rsa", "{:.0f}"),
            ("hs/s rsa", "{:.0f}"), ("busy rsa", "{:.2f}"), ("idle B", "{:.0f}")]
    cols = [(c, f) for c, f in cols if any(c in r for r in rows.values())]
    print("| path | " + " | ".join(c for c, _ in cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for path, row in rows.items():
        cells = [f.format(row[c]) if c in row else "—" for c, f in cols]
        print(f"| {path} | " + " | ".join(cells) + " |")
    ref = rows.get("nginx", {})
    for path, row in rows.items():
        if path != "nginx" and ref:
            ratios = [f"{c} {row[c] / ref[c]:.2f}x" for c in ("instr/req", "us/req",
                      "instr/hs ecdsa", "instr/hs rsa", "us/hs ecdsa", "us/hs rsa")
                      if c in row and ref.get(c)]
            print(f"# {path} / nginx: {', '.join(ratios)}")
    for path, row in rows.items():
        stats = row.get("stats") or {}
        if stats:
            print(f"# {path}: {stats.get('version')} {stats.get('cipher')}; "
                  f"kTLS send on {stats.get('ktls_send')} of {stats.get('handshakes')} "
                  f"connections, recv on {stats.get('ktls_recv')}; failed handshakes "
                  f"{stats.get('failed')} (the readiness probe: a connect closed before its "
                  f"ClientHello) {stats.get('detail') or ''}".rstrip())
    print("# busy: server CPU seconds per wall second while handshaking (near 1: the server's "
          "core is the limit; lower: the client is); us/hs: server CPU per new connection")


if __name__ == "__main__":
    sys.exit(main())
