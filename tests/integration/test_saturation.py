"""How full the server is (issue 24, point 1): requests in flight by where their handler runs,
the thread pool's jobs, asyncio tasks, each worker's busy time, the accept queues, and
fastsock_saturation — real servers of 2 workers, real sockets. Held handlers wait on a file the
test creates (tests/apps/limits.py); every wait is on a condition."""
import socket
import threading
import time

import pytest

from tests.support.holder import Holder, held_servers, send
from tests.support.metrics import by_label, samples
from tests.support.servers import free_port
from tests.support.sockets import Reader
from tests.support.waiting import wait_until

LIMITS = "tests.apps.limits:app"


def scrape(server) -> str:
    return server.get("/metrics").text


def one(text: str, name: str) -> float:
    return samples(text, name)[""]


@pytest.fixture
def serve(tmp_path):
    with held_servers(tmp_path, LIMITS) as start:
        yield start


@pytest.mark.parametrize("app, path, kind", [
    (LIMITS, "/hold-async", "async"),
    (LIMITS, "/hold-thread", "thread"),
    ("tests.apps.limits:wsgi_app", "/hold", "wsgi"),
    ("tests.apps.limits:asgi_app", "/hold", "asgi"),
])
def test_requests_in_flight_by_kind(serve, tmp_path, app, path, kind):
    server = serve(app=app)
    holder = Holder(server, tmp_path, path)
    holder.fill(3)
    in_flight = by_label(scrape(server), "fastsock_requests_in_flight")
    # the scrape itself is the one inline request
    assert in_flight == {"inline": 1, "async": 0, "thread": 0, "wsgi": 0, "asgi": 0} | {kind: 3}
    if kind in ("async", "asgi"):       # their tasks, at the workers' next tick
        wait_until(lambda: one(scrape(server), "fastsock_async_tasks") == 3,
                   what="the tasks counted", server=server)
    holder.release_all()
    in_flight = by_label(scrape(server), "fastsock_requests_in_flight")
    assert in_flight == {"inline": 1, "async": 0, "thread": 0, "wsgi": 0, "asgi": 0}


def test_a_worker_held_by_an_inline_handler_counts_as_full(serve, tmp_path):
    server = serve()
    holder = Holder(server, tmp_path, "/hold-inline")
    holder.fill(1)                      # one worker's loop is held; the other answers
    text = scrape(server)
    assert by_label(text, "fastsock_requests_in_flight")["inline"] == 2    # held + the scrape

    def one_full():
        workers = by_label(scrape(server), "fastsock_worker_saturation")
        return len(workers) == 2 and max(workers.values()) == 1.0
    wait_until(one_full, timeout=20, what="the held worker counted full", server=server)
    text = scrape(server)
    workers = by_label(text, "fastsock_worker_saturation")
    assert min(workers.values()) < 0.5          # the other is idle
    assert one(text, "fastsock_saturation") == pytest.approx(sum(workers.values()) / 2)
    holder.release_all()
    wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation").values())
               < 0.5, timeout=30, what="the released worker no longer full", server=server)


def test_busy_time_follows_a_cpu_bound_handler_and_drives_the_gauge(serve):
    server = serve()
    stop = threading.Event()

    def spin():                         # one keep-alive connection: one worker, kept busy
        with server.connect(timeout=30) as sock:
            reader = Reader(sock, timeout=30)
            deadline = time.monotonic() + 90
            while not stop.is_set() and time.monotonic() < deadline:
                sock.sendall(b"GET /spin?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n")
                assert reader.response()[0] == 200
    thread = threading.Thread(target=spin, daemon=True)
    before = scrape(server)
    thread.start()
    try:
        wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation").values())
                   > 0.8, timeout=60, what="the spinning worker's gauge up", server=server)
    finally:
        stop.set()
        thread.join(30)
    after = scrape(server)
    busy0, busy1 = (by_label(t, "fastsock_worker_busy_seconds_total") for t in (before, after))
    cpu0, cpu1 = (by_label(t, "fastsock_worker_cpu_seconds_total") for t in (before, after))
    spent = {w: busy1[w] - busy0.get(w, 0) for w in busy1}
    cpu = {w: cpu1[w] - cpu0[w] for w in cpu1}
    spinner = max(cpu, key=cpu.get)
    idle = next(w for w in cpu if w != spinner)
    # wall time busy covers the CPU the loop spent (and time waiting for a core); ticks
    # are a second apart, so the last second may not be in yet
    assert spent[spinner] >= 0.8 * (cpu[spinner] - 1.0)
    assert spent[idle] < 0.2 * spent[spinner]
    assert one(after, "fastsock_saturation") >= 0.4     # one of two workers nearly full
    wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation").values())
               < 0.3, timeout=60, what="the gauge down once the load stops", server=server)


def test_the_thread_pool_figures_and_its_refusals(serve, tmp_path):
    server = serve("--threads", "1", "--thread-backlog", "1")
    socks = [send(server, f"/hold-thread?id=p{i}") for i in range(6)]
    refused = 0

    def settled():
        """Every request is in a pool (running or queued) or was refused: counted."""
        nonlocal refused
        for sock in socks:
            sock.settimeout(0.01)
            try:
                if sock.recv(65536).startswith(b"HTTP/1.1 503"):
                    refused += 1
            except (TimeoutError, BlockingIOError):
                pass
        text = scrape(server)
        jobs = by_label(text, "fastsock_thread_pool_jobs")
        return jobs["running"] + jobs["queued"] + refused == 6
    wait_until(settled, timeout=20, what="every request in a pool or refused", server=server)
    text = scrape(server)
    jobs = by_label(text, "fastsock_thread_pool_jobs")
    assert one(text, "fastsock_thread_pool_threads") == 2          # 1 per worker
    assert 1 <= jobs["running"] <= 2 and jobs["queued"] <= 2
    assert refused >= 2                 # at most 2 per worker: one running, one queued
    assert by_label(text, "fastsock_requests_refused_total")["thread_pool"] == refused
    wait_until(lambda: max(by_label(scrape(server), "fastsock_worker_saturation").values())
               > 0.9, timeout=30, what="a worker with a full pool counted full", server=server)
    (tmp_path / "release").write_text("1")
    wait_until(lambda: sum(by_label(scrape(server), "fastsock_thread_pool_jobs").values()) == 0,
               what="the pool empty again", server=server)
    for sock in socks:
        sock.close()


def test_requests_at_the_concurrency_limit_fill_the_gauge_with_an_idle_loop(serve, tmp_path):
    server = serve("--limit-concurrency", "2")
    holder = Holder(server, tmp_path, "/hold-async")
    holder.fill(4)                      # both workers hold their 2
    t0, before = time.monotonic(), scrape(server)
    wait_until(lambda: one(scrape(server), "fastsock_saturation") > 0.9, timeout=30,
               what="both workers counted full", server=server)
    elapsed, after = time.monotonic() - t0, scrape(server)
    busy0, busy1 = (by_label(t, "fastsock_worker_busy_seconds_total") for t in (before, after))
    # full, yet the loops wait: their busy time is a small share of the time it took
    assert sum(busy1.values()) - sum(busy0.values()) < 0.5 * elapsed
    holder.release_all()


@pytest.mark.parametrize("accept, sockets", [("exclusive", 1), ("reuseport", 2)])
def test_the_accept_queue_and_its_limit_per_listener(serve, accept, sockets):
    metrics_port = free_port()
    server = serve("--backlog", "64", "--accept", accept, "--metrics-port", str(metrics_port))

    def figures():
        with socket.create_connection(("127.0.0.1", metrics_port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
            text = Reader(sock).response()[2].decode()
        return (by_label(text, "fastsock_accept_queue_length"),
                by_label(text, "fastsock_accept_queue_limit"))
    # each worker reports at its tick; a socket two workers share counts once
    wait_until(lambda: figures()[1] == {"main": 64 * sockets, "metrics": 64}, timeout=20,
               what="both listeners' limits", server=server)
    # nothing waits but, at most, the scrape's own connection as a worker looked
    assert set(figures()[0]) == {"main", "metrics"}
    assert all(0 <= n <= 1 for n in figures()[0].values())


def test_connections_the_kernel_drops_past_the_backlog_are_counted(serve, tmp_path):
    server = serve("--backlog", "1")
    before = one(scrape(server), "fastsock_listen_overflows_total")
    holder = Holder(server, tmp_path, "/hold-inline")
    holder.fill(2)                      # both loops held: no one accepts
    knocking = []
    try:
        for _ in range(12):             # the queue holds 2; the rest overflow it
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", server.port))
            knocking.append(sock)
        (tmp_path / "release").write_text("1")
        wait_until(lambda: one(scrape(server), "fastsock_listen_overflows_total") > before,
                   what="the overflows counted", server=server)
    finally:
        for sock in knocking:
            sock.close()
    holder.release_all()
