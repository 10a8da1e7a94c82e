"""Attacks on the saturation figures (issue 24): requests in flight by kind that must come back
to 0 however their requests end, saturation values that must stay in [0, 1], busy time that
must follow what the loop does, scrapes that must stay cheap, accept queues filled for real.
Real servers of 2 workers (1 where a case needs it), real sockets; every wait on a condition."""
from __future__ import annotations

import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.holder import Holder, held_servers
from tests.support.metrics import assert_saturation_sane as assert_sane
from tests.support.metrics import by_label, samples
from tests.support.servers import ROOT, children, free_port
from tests.support.sockets import Reader
from tests.support.waiting import wait_until

APP = "tests.apps.saturation_attacks:app"
WSGI = "tests.apps.saturation_attacks:wsgi_app"
ASGI = "tests.apps.saturation_attacks:asgi_app"
NO_POOL = "tests.apps.saturation_attacks:no_pool"
LIMITS = "tests.apps.limits:app"
KINDS = ("inline", "async", "thread", "wsgi", "asgi")
IDLE = {"inline": 1, "async": 0, "thread": 0, "wsgi": 0, "asgi": 0}    # the scrape: inline


# ------------------------------------------------------------------------------ reading figures

def raw_get(port: int, path: str, timeout: float = 10.0, host: str = "127.0.0.1",
            family: int = socket.AF_INET) -> tuple[int, bytes]:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, body = Reader(sock, timeout=timeout).response()
    return status, body


def scrape(server, port: int | None = None, timeout: float = 10.0) -> str:
    """GET /metrics on the server's main port, or on `port` (--metrics-port)."""
    status, body = raw_get(port or server.port, "/metrics", timeout)
    assert status == 200
    return body.decode()


def in_flight(text: str) -> dict[str, float]:
    return by_label(text, "fastsock_requests_in_flight")


def worker_pids(server) -> list[int]:
    return children(server.proc.pid)


def two_workers_serving(server, n: int = 2, port: int | None = None):
    wait_until(lambda: len(by_label(scrape(server, port), "fastsock_worker_saturation")) == n
               and len(worker_pids(server)) == n, timeout=20, what=f"{n} workers serving",
               server=server)


class Scraper:
    """Scrapes over and over in a thread while a storm runs: every figure it saw, checked."""

    def __init__(self, server):
        self.server, self.stop, self.seen, self.errors = server, threading.Event(), 0, []
        self.low = dict.fromkeys(KINDS, math.inf)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                text = scrape(self.server)
                assert_sane(text)
            except AssertionError as e:
                self.errors.append(str(e)[:2000])
                continue
            except OSError:
                continue            # a worker recycling under it: the next scrape
            for kind, n in in_flight(text).items():
                self.low[kind] = min(self.low[kind], n)
            self.seen += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def serve(tmp_path):
    with held_servers(tmp_path, APP) as start:
        yield start


# ------------------------------------------------------------------------- ways a request ends

def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def answered(server, path: str) -> int:
    return raw_get(server.port, path)[0]


def abandoned(server, path: str, rst: bool) -> None:
    """Sent, then the client goes while the handler works: a FIN, or a RST (SO_LINGER 0)."""
    sock = _connect(server)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    sock.settimeout(0.03)               # the handler takes longer: the answer is not here yet
    try:
        sock.recv(1)
    except TimeoutError:
        pass
    if rst:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def pipelined(server, paths: list[str], read: int) -> int | None:
    """Requests pipelined on one connection behind a waiting one; `read` answers read, then
    the connection closed (the rest abandoned). The last status read (a 503 or a 504 may close
    the connection before the rest)."""
    status = None
    with _connect(server) as sock:
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode() for p in paths))
        reader = Reader(sock, timeout=10)
        try:
            for _ in range(read):
                status = reader.response()[0]
        except ConnectionError:
            pass
    return status


def upload(server, how: str) -> int | None:
    """A body streamed in to a stream=True route (max 1000 bytes), ending `how`."""
    with _connect(server) as sock:
        if how == "ok":
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n"
                         + b"x" * 500)
        elif how == "too-large":       # refused mid-body: 413
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"
                         + b"x" * 600)
            sock.sendall(b"x" * 600)
        elif how == "bad-chunk":       # refused mid-body: 400
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"10\r\n0123456789abcdef\r\nzz\r\n")
        elif how == "gone":            # the client leaves mid-body
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 900\r\n\r\n"
                         + b"x" * 100)
            return None
        try:
            return Reader(sock, timeout=10).response()[0]
        except (ConnectionError, OSError):
            return None                 # refused and closed before the answer was read


# a close frame, code 1000 (03 e8), masked with "abcd"
CLOSE_FRAME = b"\x88\x82abcd" + bytes([0x03 ^ ord("a"), 0xe8 ^ ord("b")])
WS_HEAD = ("GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def websocket(server, path: str, wait: bool) -> int | None:
    """A WebSocket handshake: its answer read (101 or a refusal), or the client gone first."""
    with _connect(server) as sock:
        sock.sendall(WS_HEAD.format(path=path).encode())
        if not wait:
            return None
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                return None
            head += data
        if head.startswith(b"HTTP/1.1 101"):
            sock.sendall(CLOSE_FRAME)
        return int(head.split()[1])


def storm(cases: list, rounds: int, threads: int = 8) -> Counter:
    """Every case once on its own (so each way of ending is reached whatever the storm's
    timing: on a busy machine the storm's refusals can crowd out a case's own status), then
    `rounds` times over from `threads` clients at once: how many of each status came back
    (None: none read)."""
    statuses = Counter(case() for case in cases)
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(case) for _ in range(rounds) for case in cases]
        statuses.update(future.result(timeout=60) for future in futures)
    return statuses


def settled_to_idle(server) -> None:
    """Every kind back to exactly 0 (inline: the scrape itself), once the handlers of the
    abandoned requests have ended."""
    last = {}

    def idle():
        last.update(in_flight(scrape(server)))
        return last == IDLE
    try:
        wait_until(idle, timeout=30, what="every kind back to 0")
    except AssertionError:
        raise AssertionError(f"in flight after the storm: {last}\n{server.log()[-3000:]}") \
            from None


# ------------------------------------------------------------------------- 1. counts that drift

def test_native_handlers_ended_every_way_leave_no_count(serve):
    """async, thread, streamed bodies, WebSocket handshakes; answered, raising, timed out, pool
    full, over the concurrency limit, abandoned (FIN, RST), pipelined, refused mid-body,
    workers recycled by --max-requests — 200+ requests of each kind."""
    server = serve("--threads", "2", "--thread-backlog", "2", "--handler-timeout", "0.2",
                   "--limit-concurrency", "6", "--max-requests", "150",
                   "--max-requests-jitter", "50", "--ws-handshake-timeout", "0.25")
    s = server
    cases = [
        lambda: answered(s, "/async?ms=5"),
        lambda: answered(s, "/thread?ms=5"),
        lambda: answered(s, "/async-raise?ms=2"),
        lambda: answered(s, "/thread-raise?ms=2"),
        lambda: answered(s, "/async?ms=400"),           # 504 (or 503: at the limit)
        lambda: answered(s, "/thread?ms=400"),          # 504, its thread busy on: pool full
        lambda: abandoned(s, "/async?ms=150", rst=False),
        lambda: abandoned(s, "/async?ms=150", rst=True),
        lambda: abandoned(s, "/thread?ms=150", rst=False),
        lambda: abandoned(s, "/thread?ms=150", rst=True),
        lambda: pipelined(s, ["/async?ms=5", "/thread?ms=5", "/async?ms=5", "/hello"], read=3),
        lambda: pipelined(s, ["/async?ms=50", "/thread?ms=50", "/async?ms=50"], read=1),
        lambda: upload(s, "ok"),
        lambda: upload(s, "too-large"),
        lambda: upload(s, "bad-chunk"),
        lambda: upload(s, "gone"),
        lambda: websocket(s, "/ws?ms=2", wait=True),
        lambda: websocket(s, "/ws?ms=150", wait=False),
        lambda: websocket(s, "/ws?ms=500", wait=True),  # the handshake timeout
        lambda: websocket(s, "/ws-raise?ms=2", wait=True),
    ]
    with Scraper(server) as scraper:
        statuses = storm(cases, rounds=35)
    assert {200, 101, 500, 503, 504, 413, 400} <= set(statuses), statuses
    assert scraper.seen >= 5 and not scraper.errors, scraper.errors[:3]
    assert min(scraper.low.values()) >= 0, scraper.low
    settled_to_idle(server)
    text = scrape(server)
    assert by_label(text, "fastsock_requests_refused_total")["concurrency"] > 0   # reached
    assert by_label(text, "fastsock_requests_refused_total")["thread_pool"] > 0
    assert samples(text, "fastsock_worker_restarts_total")[""] == 0
    assert "recycled" in server.log() or "--max-requests" in server.log()


@pytest.mark.parametrize("app", [WSGI, ASGI])
def test_wsgi_and_asgi_requests_ended_every_way_leave_no_count(serve, app):
    server = serve("--threads", "2", "--thread-backlog", "2", "--handler-timeout", "0.2",
                   "--limit-concurrency", "6", "--max-requests", "150", app=app)
    s = server
    cases = [
        lambda: answered(s, "/ok?ms=5"),
        lambda: answered(s, "/raise?ms=2"),
        lambda: answered(s, "/ok?ms=400"),
        lambda: abandoned(s, "/ok?ms=150", rst=False),
        lambda: abandoned(s, "/ok?ms=150", rst=True),
        lambda: pipelined(s, ["/ok?ms=5", "/ok?ms=5", "/ok?ms=5"], read=3),
        lambda: pipelined(s, ["/ok?ms=50", "/ok?ms=50", "/ok?ms=50"], read=1),
    ]
    with Scraper(server) as scraper:
        statuses = storm(cases, rounds=35)
    assert {200, 500, 503, 504} <= set(statuses), statuses
    assert scraper.seen >= 5 and not scraper.errors, scraper.errors[:3]
    assert min(scraper.low.values()) >= 0, scraper.low
    settled_to_idle(server)


@pytest.mark.parametrize("signo", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("path, kind", [("/hold-async", "async"), ("/hold-thread", "thread")])
def test_a_worker_gone_with_requests_held_leaves_no_count(serve, tmp_path, signo, path, kind):
    """A worker killed (SIGKILL: the master respawns it into its slot), or drained (SIGTERM to
    the worker: it drains, --graceful-timeout passes with its requests still held, it exits
    and is replaced), while it holds requests: its successor in the slot starts from 0."""
    server = serve("--graceful-timeout", "1", app=LIMITS)
    two_workers_serving(server)
    holder = Holder(server, tmp_path, path)
    holder.fill(4)
    assert in_flight(scrape(server))[kind] == 4
    victim = int((tmp_path / f"entered-{next(iter(holder.held))}").read_text())
    on_victim = sum(int((tmp_path / f"entered-{rid}").read_text()) == victim
                    for rid in holder.held)
    os.kill(victim, signo)
    wait_until(lambda: victim not in worker_pids(server) and len(worker_pids(server)) == 2,
               timeout=30, what="the worker replaced", server=server)
    two_workers_serving(server)
    counts = in_flight(scrape(server))
    assert counts[kind] == 4 - on_victim, (counts, on_victim)
    holder_rest = {rid: r for rid, r in holder.held.items()
                   if int((tmp_path / f"entered-{rid}").read_text()) != victim}
    holder.held = holder_rest
    holder.release_all()
    settled_to_idle(server)


def test_a_worker_killed_with_websockets_open_leaves_no_count(serve):
    """fastsock_websockets_open, the slot's other gauge a SIGKILL cannot count down."""
    server = serve("--timeout", "0")
    two_workers_serving(server)
    socks = []
    for _ in range(6):                  # sessions open on both workers
        sock = _connect(server)
        sock.sendall(WS_HEAD.format(path="/ws?ms=0").encode())
        assert Reader(sock).response(head_only=True)[0] == 101
        socks.append(sock)
    text = scrape(server)
    assert samples(text, "fastsock_websockets_open")[""] == 6
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in worker_pids(server) and len(worker_pids(server)) == 2,
               timeout=30, what="the worker replaced", server=server)
    two_workers_serving(server)
    alive = 0
    for sock in socks:                  # the sessions that did not die with the victim
        sock.sendall(b"\x81\x82abcd" + bytes([ord("h") ^ ord("a"), ord("i") ^ ord("b")]))
        sock.settimeout(5)
        try:
            alive += sock.recv(16).startswith(b"\x81\x02hi")
        except OSError:
            pass
    assert samples(scrape(server), "fastsock_websockets_open")[""] == alive
    for sock in socks:
        sock.close()


# ----------------------------------------------------------------------- 2. values out of range

def spin_on(server, path: str, stop: threading.Event, port: int | None = None) -> threading.Thread:
    """One keep-alive connection asking `path` over and over until stop: one worker kept busy."""
    def run():
        with socket.create_connection(("127.0.0.1", port or server.port), timeout=30) as sock:
            reader = Reader(sock, timeout=30)
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                try:
                    status = reader.response()[0]
                except ConnectionError:
                    return              # its worker killed under it (the test's doing)
                assert status == 200
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def try_scrape(server, port: int | None = None) -> str | None:
    """A scrape on a new connection, or None when it found a stopped worker (try another)."""
    try:
        return scrape(server, port, timeout=1.0)
    except OSError:
        return None


def test_a_stopped_worker_counts_full_then_recovers(serve):
    """SIGSTOP: no tick for 3 s, the worker counts 1.0; SIGCONT: it comes back down, every
    figure in [0, 1] meanwhile. (--accept reuseport: a new connection may reach the running
    worker's own socket; the stopped one's wait until SIGCONT.)"""
    metrics = free_port()
    server = serve("--accept", "reuseport", "--timeout", "0", "--metrics-port", str(metrics))
    two_workers_serving(server, port=metrics)
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGSTOP)
    seen = []
    try:
        def stuck_full():
            text = try_scrape(server, metrics)
            if text is None:
                return False
            assert_sane(text)
            workers = by_label(text, "fastsock_worker_saturation")
            seen.append(workers)
            return len(workers) == 2 and max(workers.values()) == 1.0
        wait_until(stuck_full, timeout=20, what="the stopped worker counted full", server=server)
        text = try_scrape(server, metrics) or try_scrape(server, metrics)
        assert text is not None
        assert 0.5 <= samples(text, "fastsock_saturation")[""] <= 1.0
    finally:
        os.kill(victim, signal.SIGCONT)

    def recovered():
        text = scrape(server, metrics)
        assert_sane(text)
        return max(by_label(text, "fastsock_worker_saturation").values()) < 0.5
    wait_until(recovered, timeout=30, what="the stopped worker back down", server=server)
    assert victim in worker_pids(server)       # not replaced: --timeout 0


def test_a_respawned_worker_does_not_inherit_a_full_slot(serve):
    """A worker kept full by CPU, killed: its successor in the slot starts low."""
    server = serve("--timeout", "0")
    two_workers_serving(server)
    stop = threading.Event()
    spinner = spin_on(server, "/inline-spin?ms=50", stop)
    try:
        def one_full():
            workers = by_label(scrape(server), "fastsock_worker_saturation")
            return len(workers) == 2 and max(workers.values()) > 0.8
        wait_until(one_full, timeout=60, what="a worker full", server=server)
        workers = by_label(scrape(server), "fastsock_worker_saturation")
        full_slot = max(workers, key=workers.get)
        cpu = {}
        for pid in worker_pids(server):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[pid] = int(fields[11]) + int(fields[12])
        victim = max(cpu, key=cpu.get)     # the spinning one
        os.kill(victim, signal.SIGKILL)
    finally:
        stop.set()
    spinner.join(30)
    # reaped and replaced (until the master reaps it, the dead worker's slot still serves)
    wait_until(lambda: victim not in worker_pids(server) and len(worker_pids(server)) == 2,
               timeout=30, what="the worker replaced", server=server)
    firsts = []

    def respawned():            # its slot serving again: the successor's first figure
        text = scrape(server)
        assert_sane(text)
        workers = by_label(text, "fastsock_worker_saturation")
        if len(workers) == 2:
            firsts.append(workers[full_slot])
        return bool(firsts)
    wait_until(respawned, timeout=30, what="the successor serving", server=server)
    assert firsts[0] < 0.3, firsts


def launch(tmp_path, *args: str, app: str = APP, reach=None):
    """A server on an address start_server does not speak (::1, a Unix socket): started,
    and waited for until reach() gets an answer. -> the Popen."""
    err = open(tmp_path / f"launch-{len(list(tmp_path.iterdir()))}.err", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", app, *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=err)

    def up():
        assert proc.poll() is None, (tmp_path / err.name).read_text()
        try:
            return reach() is not None
        except OSError:
            return False
    try:
        wait_until(up, timeout=20, what="the server up")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_over(sock: socket.socket, path: str) -> str:
    with sock:
        sock.settimeout(10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        status, _, body = Reader(sock, timeout=10).response()
    assert status == 200, (status, body)
    return body.decode()


def load_and_check(get, pool: bool = True) -> None:
    """A little of every kind of handler, then scrapes: every figure sane, the gauge there."""
    paths = ["/async?ms=20", "/inline-spin?ms=20"] + (["/thread?ms=20"] if pool else [])
    with ThreadPoolExecutor(6) as clients:
        for future in [clients.submit(get, path) for path in paths * 6]:
            future.result(timeout=30)
    texts = [get("/metrics") for _ in range(5)]
    for text in texts:
        assert_sane(text)
    assert 0.0 <= samples(texts[-1], "fastsock_saturation")[""] <= 1.0
    assert in_flight(texts[-1]) == IDLE


@pytest.mark.parametrize("args", [
    ("--workers", "1"),
    ("--threads", "0"),
    ("--limit-concurrency", "0"),
    ("--accept", "reuseport"),
])
def test_figures_sane_in_every_configuration(serve, args):
    no_pool = args == ("--threads", "0")
    server = serve(*args, app=NO_POOL if no_pool else APP)
    load_and_check(lambda path: http_over(_connect(server), path), pool=not no_pool)


def test_figures_sane_over_ipv6(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()

    def get(path):
        sock = socket.socket(socket.AF_INET6)
        sock.settimeout(5)
        sock.connect(("::1", port))
        return http_over(sock, path)
    proc = launch(tmp_path, "--host", "::1", "--port", str(port), "--workers", "2",
                  reach=lambda: get("/metrics"))
    try:
        load_and_check(get)
        text = get("/metrics")
        assert by_label(text, "fastsock_accept_queue_limit")["main"] > 0   # TCP_INFO over v6
    finally:
        stop(proc)


def test_figures_sane_over_a_unix_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    metrics = free_port()

    def get(target):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(5)
        sock.connect(path)
        return http_over(sock, target)
    def get_or_scrape(target):          # the metrics on their own TCP port
        return scrape(None, metrics) if target == "/metrics" else get(target)
    proc = launch(tmp_path, "--uds", path, "--workers", "2", "--metrics-port", str(metrics),
                  reach=lambda: get("/async"))
    try:
        wait_until(lambda: try_scrape(None, metrics) is not None, what="the metrics port")
        load_and_check(get_or_scrape)
        limits = by_label(scrape(None, metrics), "fastsock_accept_queue_limit")
        assert "main" not in limits         # no TCP_INFO on a Unix socket: not reported
        assert limits.get("metrics", 0) > 0
    finally:
        stop(proc)


def test_figures_sane_on_the_metrics_port_while_draining(serve):
    """SIGTERM with --shutdown-delay: the workers keep serving (readiness 503) while scraped;
    the gauge is absent or in range, never a stale or out-of-range figure."""
    metrics = free_port()
    server = serve("--metrics-port", str(metrics), "--shutdown-delay", "3")
    two_workers_serving(server, port=metrics)
    server.proc.send_signal(signal.SIGTERM)
    scraped = 0
    while server.proc.poll() is None:
        try:
            text = scrape(server, metrics, timeout=2)
        except OSError:
            continue                        # closed: draining past the delay
        assert_sane(text)
        scraped += 1
    assert scraped >= 3
    assert server.proc.returncode == 0


# ---------------------------------------------------------------------------- 3. busy time lies

def busy_rates(server, during) -> tuple[dict, dict, float]:
    """({worker: busy seconds}, {worker: cpu seconds}, wall seconds) over during()."""
    t0, before = time.monotonic(), scrape(server)
    during()
    t1, after = time.monotonic(), scrape(server)
    busy = {w: v - by_label(before, "fastsock_worker_busy_seconds_total").get(w, 0)
            for w, v in by_label(after, "fastsock_worker_busy_seconds_total").items()}
    cpu = {w: v - by_label(before, "fastsock_worker_cpu_seconds_total").get(w, 0)
           for w, v in by_label(after, "fastsock_worker_cpu_seconds_total").items()}
    return busy, cpu, t1 - t0


def a_window(seconds: float):
    """A measuring window: the figures' ticks are a second apart, so several of them."""
    def wait():
        end = time.monotonic() + seconds
        wait_until(lambda: time.monotonic() >= end, timeout=seconds + 5, what="the window")
    return wait


def test_an_idle_asgi_app_reads_idle(serve):
    """asyncio runs the ASGI workers' threads all the time: busy time is their CPU time, near
    0 while nothing comes."""
    server = serve(app=ASGI)
    two_workers_serving(server)
    wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation").values())
               < 0.1, timeout=30, what="the start-up settled", server=server)
    busy, _, wall = busy_rates(server, a_window(6))
    assert len(busy) == 2
    assert max(busy.values()) / wall < 0.1, (busy, wall)
    assert max(by_label(scrape(server), "fastsock_worker_saturation").values()) < 0.1


def test_a_cpu_bound_asgi_app_reads_busy(serve):
    server = serve(app=ASGI)
    two_workers_serving(server)
    stop = threading.Event()
    spinner = spin_on(server, "/spin?ms=50", stop)
    try:
        wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation").values())
                   > 0.8, timeout=60, what="the spinning ASGI worker full", server=server)
        busy, cpu, wall = busy_rates(server, a_window(4))
    finally:
        stop.set()
        spinner.join(30)
    spinning = max(cpu, key=cpu.get)
    # busy time is its thread's CPU time here; the counters move at ticks a second apart
    assert busy[spinning] >= 0.8 * (cpu[spinning] - 1.0), (busy, cpu, wall)
    assert cpu[spinning] / wall > 0.5, (busy, cpu, wall)


def test_a_blocking_async_handler_reads_busy(serve):
    """time.sleep in an async def blocks the worker's loop as much as a CPU-bound handler:
    its steps are timed (_steps), though the thread is off the CPU."""
    server = serve("--timeout", "0")
    two_workers_serving(server)
    stop = threading.Event()
    spinner = spin_on(server, "/async-blocking?ms=100", stop)
    try:
        busy, cpu, wall = busy_rates(server, a_window(6))
        # the gauge is a 5 s average: it passes 0.7 once the blocking has lasted long enough
        wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation")
                               .values()) > 0.7,
                   timeout=30, what="the blocked worker's gauge past 0.7", server=server)
    finally:
        stop.set()
        spinner.join(30)
    assert max(busy.values()) / wall > 0.7, (busy, cpu, wall)     # though off the CPU
    assert max(cpu.values()) / wall < 0.5, (busy, cpu, wall)


def test_a_blocking_background_task_of_the_app_reads_busy(serve):
    """The synchronous sleep in a task the app made itself, after the response: the task is
    made through the worker's factory too, so its steps are timed."""
    server = serve("--timeout", "0", workers="1")
    stop = threading.Event()
    spinner = spin_on(server, "/async-blocking-later?ms=100", stop)
    try:
        busy, cpu, wall = busy_rates(server, a_window(6))
    finally:
        stop.set()
        spinner.join(30)
    (worker_busy,), (worker_cpu,) = busy.values(), cpu.values()
    assert worker_busy / wall > 0.7, (busy, cpu, wall)
    assert worker_cpu / wall < 0.5, (busy, cpu, wall)


def test_an_app_replacing_the_task_factory_is_served_as_before(serve):
    """The app's own factory replaces fastsock's on the worker's loop: async handlers, tasks of
    the app's own and the figures go on as before (blocking steps then read idle: the CPU
    time is all busy time can see, as docs/saturation.md says)."""
    server = serve(workers="1")
    assert raw_get(server.port, "/own-task-factory")[0] == 200
    for path in ("/async?ms=2", "/tasks?n=3", "/tasks-release", "/async-blocking-later?ms=5",
                 "/async-raise?ms=1"):
        status = raw_get(server.port, path)[0]
        assert status == (500 if "raise" in path else 200), (path, status)
    assert_sane(scrape(server))


def test_cpu_bound_thread_pool_handlers_read_busy(serve):
    """Pool threads spinning: the worker's process is on its core all the time (the GIL lets
    one thread run at once), whatever its loop does."""
    server = serve("--timeout", "0", workers="1")
    stop = threading.Event()
    spinners = [spin_on(server, "/thread-spin?ms=50", stop) for _ in range(3)]
    try:
        busy, cpu, wall = busy_rates(server, a_window(6))
        # the gauge is a 5 s average: it passes 0.7 once the spinning has lasted long enough
        wait_until(lambda: samples(scrape(server), "fastsock_saturation")[""] > 0.7,
                   timeout=30, what="the gauge past 0.7", server=server)
    finally:
        stop.set()
        for spinner in spinners:
            spinner.join(30)
    (worker_cpu,) = cpu.values()
    assert worker_cpu / wall > 0.5, (cpu, wall)             # the process was on its core


# ------------------------------------------------------------- 4. scrape cost, hostile scrapes

def listen_overflows() -> int:
    """TcpExt ListenOverflows of this network namespace, as the test reads it itself."""
    lines = open("/proc/net/netstat").read().splitlines()  # noqa: SIM115
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:], strict=False))
                       ["ListenOverflows"])
    raise AssertionError("no TcpExt ListenOverflows")


def test_200_concurrent_scrapes(serve):
    """200 scrapes at once, on 200 connections: every one a whole, valid exposition with sane
    figures, the overflow counter never going back."""
    from prometheus_client.parser import text_string_to_metric_families
    server = serve()
    two_workers_serving(server)
    socks = [_connect(server) for _ in range(200)]
    overflows, first = [], listen_overflows()
    for sock in socks:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
    for sock in socks:
        with sock:
            status, _, body = Reader(sock, timeout=30).response()
        assert status == 200
        text = body.decode()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert {"fastsock_saturation", "fastsock_requests_in_flight"} <= families
        assert_sane(text)
        assert 1 <= in_flight(text)["inline"] <= 200
        overflows.append(samples(text, "fastsock_listen_overflows_total")[""])
    # (answered in any order: each between the namespace's counts before and after)
    assert first <= min(overflows) and max(overflows) <= listen_overflows()
    settled_to_idle(server)


def scrape_seconds(server, n: int = 15) -> float:
    """The median time of n scrapes, one after another."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        scrape(server)
        times.append(time.perf_counter() - t0)
    return sorted(times)[n // 2]


def test_a_scrape_stays_cheap_with_1000_idle_connections_and_1000_tasks(serve):
    """The figures come from the slots (counts kept as things happen; the tasks counted at the
    tick): a scrape does not walk the connections or the tasks."""
    server = serve("--keepalive-timeout", "120")
    two_workers_serving(server)
    scrape_seconds(server, 5)           # warm
    alone = scrape_seconds(server)
    idle = []
    try:
        for _ in range(1000):           # answered, then idle in keep-alive
            sock = _connect(server)
            sock.sendall(b"GET /async?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            idle.append((sock, Reader(sock, timeout=10)))
        for _, reader in idle:
            assert reader.response()[0] == 200
        while samples(scrape(server), "fastsock_async_tasks")[""] < 1000:
            assert raw_get(server.port, "/tasks?n=250")[0] == 200
            wait_until(lambda: True)    # (the count moves at the workers' ticks)
        wait_until(lambda: samples(scrape(server), "fastsock_async_tasks")[""] >= 1000,
                   timeout=10, what="the tasks counted", server=server)
        text = scrape(server)
        assert samples(text, "fastsock_connections_open")[""] >= 1000
        loaded = scrape_seconds(server)
        overflows = [samples(scrape(server), "fastsock_listen_overflows_total")[""]
                     for _ in range(20)]
        assert overflows == sorted(overflows)       # a counter: never back
        assert_sane(scrape(server))
    finally:
        for sock, _ in idle:
            sock.close()
        for _ in range(4):
            raw_get(server.port, "/tasks-release")
    # what grows is linear: fastsock_worker_open_fds lists /proc/<pid>/fd (here 1.6-2.4x the
    # scrape alone; a cost per connection times per task would be far past this)
    assert loaded < 5 * alone, (loaded, alone)


# --------------------------------------------------------------------------- 5. accept queues

REQUEST = b"GET /async?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n"


class Clients:
    """Connections begun at once, each sending its request once its handshake is done (with
    TCP_DEFER_ACCEPT a connection is queued for accept() once its first bytes are in; past a
    full queue the kernel drops SYNs and those bytes, and the clients' kernel tries again)."""

    def __init__(self, port: int, n: int):
        import selectors
        self.sel, self.socks, self.sent = selectors.DefaultSelector(), [], 0
        for _ in range(n):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            self.socks.append(sock)
            self.sel.register(sock, selectors.EVENT_WRITE)

    def send_ready(self, timeout: float = 0.05) -> int:
        """Send on those connected by now: how many have sent so far."""
        if self.sel.get_map():
            for key, _ in self.sel.select(timeout=timeout):
                key.fileobj.send(REQUEST)
                self.sel.unregister(key.fileobj)
                self.sent += 1
        return self.sent

    def answered(self) -> int:
        """Every request sent (those not connected yet once they are), the 200s read."""
        wait_until(lambda: self.send_ready() == len(self.socks), timeout=60,
                   what="every client connected")
        self.sel.close()
        ok = 0
        for sock in self.socks:
            sock.setblocking(True)
            with sock:
                ok += Reader(sock, timeout=30).response()[0] == 200
        return ok


def test_a_full_accept_queue_is_seen_and_overflows_are_counted(serve):
    """Both workers stopped, a tiny backlog, 40 connections: the queue fills and the kernel
    drops the rest (ListenOverflows rises). Woken, the workers report the queue — its length
    at most its limit + 1 — and answer every connection; nothing crashes. A woken worker
    handles its events before its overdue tick, so it may accept the whole queue before the
    tick samples it: up to three rounds, and one of them must see the queue (near) full."""
    metrics = free_port()
    server = serve("--backlog", "8", "--metrics-port", str(metrics), "--timeout", "0")
    two_workers_serving(server, port=metrics)
    text = scrape(server, metrics)
    limit = by_label(text, "fastsock_accept_queue_limit")["main"]
    assert limit == 8
    before = samples(text, "fastsock_listen_overflows_total")[""]
    pids = worker_pids(server)
    lengths, fullest = [], []
    for _ in range(3):
        text = fill_stopped_then_wake(server, metrics, pids, limit, lengths, fullest)
        if max(lengths) >= limit / 2:
            break
    # the fullest report: the woken workers found the queue (nearly) full
    assert max(lengths) >= limit / 2, lengths
    assert max(fullest) > 0.1, fullest          # the accept queue's fraction in the gauge
    assert samples(text, "fastsock_listen_overflows_total")[""] > before
    assert sorted(worker_pids(server)) == sorted(pids)


def fill_stopped_then_wake(server, metrics: int, pids: list, limit: int, lengths: list,
                           fullest: list) -> str:
    """One round: the workers stopped, 40 clients fill the queue past its limit, the workers
    woken once their ticks are overdue; every report sane until the queue is drained, and
    every client answered. The last scrape's text."""
    overflows = listen_overflows()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        clients = Clients(server.port, 40)
        wait_until(lambda: clients.send_ready() > limit + 1 and listen_overflows() > overflows,
                   timeout=20, what="the queue full and the kernel dropping past it")
        # the workers tick once a second: stopped past a tick, they sample the queue as they
        # wake (a queue that fills and drains between two ticks is not seen)
        overdue = time.monotonic() + 1.5
        wait_until(lambda: time.monotonic() > overdue, what="the workers' ticks overdue")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    text = ""

    def reported_then_drained():
        nonlocal text
        text = scrape(server, metrics)
        assert_sane(text)
        length = by_label(text, "fastsock_accept_queue_length")["main"]
        assert by_label(text, "fastsock_accept_queue_limit")["main"] == limit
        assert 0 <= length <= limit + 1, text
        lengths.append(length)
        fullest.append(max(by_label(text, "fastsock_worker_saturation").values()))
        return length == 0
    wait_until(reported_then_drained, timeout=20, what="the queue drained")
    assert clients.answered() == 40
    return text
