"""Attacks on the saturation gauge's definition (issue 24, docs/saturation.md): a tick's PEAK
requests in the app and pool jobs (they must fall back once the burst is over, however its
requests end), the jump to 1.0 of a worker that refused (its own, at once, not a respawned
successor's), the process's CPU as a part (pool threads spinning read full; an app's thread
ticking, and frequent scrapes, do not). Real servers of 2 workers, real sockets; the gauge
scraped every 100 ms on --metrics-port all along, every figure checked finite and in [0, 1]."""
from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time

import pytest

from tests.support.holder import held_servers
from tests.support.metrics import assert_saturation_sane as assert_sane
from tests.support.metrics import by_label, samples
from tests.support.servers import children, free_port
from tests.support.sockets import Reader
from tests.support.waiting import wait_until

APP = "tests.apps.saturation_peaks:app"
SETTLED = 0.2           # what "fell back" means
FALL_WITHIN = 30.0      # seconds: the 5 s average from 1.0 to 0.2 takes 8 s


# ------------------------------------------------------------------------------ reading figures

def scrape(port: int, timeout: float = 5.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        status, _, body = Reader(sock, timeout=timeout).response()
    assert status == 200
    return body.decode()




class Watcher:
    """Scrapes the metrics port every 100 ms in a thread: each worker's figure over time (by
    slot, and by pid through app_worker_pid), every one of them checked."""

    def __init__(self, port: int):
        self.port, self.stop, self.errors, self.failed = port, threading.Event(), [], []
        self.seen: list[tuple[float, dict[str, float], float | None]] = []
        self.pids: dict[str, int] = {}          # slot -> its worker's pid, as last seen
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.wait(0.1):
            try:
                text = scrape(self.port, timeout=2.0)
            except (OSError, AssertionError) as e:
                self.failed.append(repr(e))     # a worker killed or out of fds (the test's
                continue                        # doing): the next scrape
            try:
                assert_sane(text)
            except AssertionError as e:
                self.errors.append(str(e)[:2000])
                continue
            server = samples(text, "fastsock_saturation").get("")
            self.seen.append((time.monotonic(), by_label(text, "fastsock_worker_saturation"),
                              server))
            self.pids.update({k: int(v) for k, v in by_label(text, "app_worker_pid").items()})

    def slot_of(self, pid: int) -> str:
        wait_until(lambda: pid in self.pids.values(), timeout=10, what=f"worker {pid} seen")
        return next(slot for slot, p in self.pids.items() if p == pid)

    def last(self) -> dict[str, float]:
        return self.seen[-1][1] if self.seen else {}

    def since(self, t: float, slot: str) -> list[float]:
        """A slot's figures scraped after t."""
        return [workers[slot] for at, workers, _ in self.seen if at > t and slot in workers]

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> None:
        """Until predicate({slot: figure}) holds for a scrape made from now on."""
        start = len(self.seen)
        wait_until(lambda: any(predicate(w) for _, w, _ in self.seen[start:]),
                   timeout=timeout, what=what)

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: len(self.last()) == 2 and len(self.pids) == 2, timeout=20,
                   what="both workers scraped")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()
        if exc[0] is None:
            assert len(self.seen) >= 10 and not self.errors, self.errors[:3]


# ------------------------------------------------------------------------ servers, connections

@pytest.fixture
def serve(tmp_path):
    """serve(*args) -> (server, metrics port): 2 workers of APP."""
    with held_servers(tmp_path, APP) as held:
        def start(*args, env=None, preexec_fn=None):
            metrics = free_port()
            server = held("--metrics-port", str(metrics), *args, env=env,
                          preexec_fn=preexec_fn)
            server.metrics = metrics
            wait_until(lambda: len(children(server.proc.pid)) == 2, timeout=20,
                       what="2 workers", server=server)
            return server, metrics
        yield start


class Conn:
    """A keep-alive connection, and the worker (pid) that took it: what is sent on it goes
    to that worker."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.reader = Reader(self.sock, timeout=10)
        self.pid = int(self.get("/pid")[1])

    def send(self, path: str) -> None:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())

    def get(self, path: str) -> tuple[int, bytes]:
        self.send(path)
        status, _, body = self.reader.response()
        return status, body

    def close(self, rst: bool = False) -> None:
        if rst:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def pinned(server, per_worker: int, pids: list[int] | None = None) -> dict[int, list[Conn]]:
    """per_worker keep-alive connections on each worker ({pid: [Conn]}); the extras closed."""
    pids = pids or children(server.proc.pid)
    out: dict[int, list[Conn]] = {pid: [] for pid in pids}
    for _ in range(per_worker * len(pids) * 20):
        if all(len(conns) >= per_worker for conns in out.values()):
            return out
        conn = Conn(server)
        if len(out.get(conn.pid, [None] * per_worker)) < per_worker:
            out[conn.pid].append(conn)
        else:
            conn.close()
    raise AssertionError(f"connections never reached every worker: {out}")


def hold(tmp_path, conn: Conn, kind: str, rid: str) -> None:
    """A request held in the app on conn (by its worker) until release(rid)."""
    conn.send(f"/hold-{kind}?id={rid}")
    wait_until(lambda: (tmp_path / f"entered-{rid}").exists(), timeout=10,
               what=f"{rid} in the app")
    assert int((tmp_path / f"entered-{rid}").read_text()) == conn.pid


def release(tmp_path, rid: str) -> None:
    (tmp_path / f"release-{rid}").write_text("1")


def in_flight(port: int) -> dict[str, float]:
    return by_label(scrape(port), "fastsock_requests_in_flight")


# --------------------------------------------------------------------------- 1. peaks fall back

LIMIT = 8               # --limit-concurrency and --threads: a burst of LIMIT per worker fills


@pytest.mark.parametrize("ending", ["answered", "abandoned"])
@pytest.mark.parametrize("kind", ["async", "thread", "stream"])
def test_a_burst_that_filled_the_limit_falls_back(serve, tmp_path, kind, ending):
    """Every worker full (LIMIT held requests each, one of them lasting), then the burst ends:
    answered (the resume path), or its clients gone mid-wait (RST: the decrement path). The
    gauge falls back below SETTLED with the lasting request still in (1 / LIMIT): no peak is
    stuck at the burst's."""
    server, metrics = serve("--limit-concurrency", str(LIMIT), "--threads", str(LIMIT))
    conns = pinned(server, LIMIT)
    flight = {"async": "async", "thread": "thread"}.get(kind)   # (a stream: in no kind)
    with Watcher(metrics) as watch:
        for pid, mine in conns.items():
            for i, conn in enumerate(mine):
                hold(tmp_path, conn, kind, f"{pid}-{i}")
        if flight:
            assert in_flight(metrics)[flight] == 2 * LIMIT
        # (the limit reached, not past: no refusal, so this is the peaks' own doing)
        watch.wait_for(lambda w: min(w.values()) > 0.5, "every worker filling up")
        burst = time.monotonic()
        ending_ones = [(pid, i, conn) for pid, mine in conns.items()
                       for i, conn in enumerate(mine) if i]      # the first of each lasts
        if ending == "abandoned":
            for _, _, conn in ending_ones:
                conn.close(rst=True)
            if flight:      # counted down as the clients go, not as the handlers end
                wait_until(lambda: in_flight(metrics)[flight] == 2, timeout=10,
                           what="the abandoned requests counted out")
        for pid, i, conn in ending_ones:
            release(tmp_path, f"{pid}-{i}")
            if ending == "answered":
                assert conn.reader.response()[0] == 200
        watch.wait_for(lambda w: max(w.values()) < SETTLED, "the burst's peak forgotten",
                       timeout=FALL_WITHIN)
        fell = time.monotonic() - burst
        if flight:
            assert in_flight(metrics)[flight] == 2        # the lasting ones: still in
        text = scrape(metrics)
        refused = sum(by_label(text, "fastsock_requests_refused_total").values())
        assert refused == 0, text
        lasting = watch.last()
    for pid, mine in conns.items():
        release(tmp_path, f"{pid}-0")
        for conn in mine:
            conn.close()
    print(f"{kind}/{ending}: below {SETTLED} {fell:.1f} s after the burst; "
          f"with one lasting request each: {lasting}")


# ------------------------------------------------------------------------ 2. the refusal jump

def refuse_on(tmp_path, server, full: list[Conn], reason: str, rid: str) -> None:
    """One request refused by full[0]'s worker (its limit or pool taken by full[:-1], held
    by `rid`), answered 503 on full[-1]. (The pool: --threads 1, --thread-backlog 1: the
    second job waits in the queue.)"""
    if reason == "concurrency":
        for i, conn in enumerate(full[:-1]):
            hold(tmp_path, conn, "async", f"{rid}-{i}")
    else:
        hold(tmp_path, full[0], "thread", f"{rid}-0")
        full[1].send(f"/hold-thread?id={rid}-1")
        wait_until(lambda: by_label(scrape(server.metrics), "fastsock_thread_pool_jobs")
                   .get("queued") == 1, timeout=10, what="a job queued")
    status = full[-1].get("/async" if reason == "concurrency" else "/thread")[0]
    assert status == 503


REASONS = {"concurrency": ("--limit-concurrency", "2"),
           "thread_pool": ("--threads", "1", "--thread-backlog", "1")}


@pytest.mark.parametrize("reason", sorted(REASONS))
def test_one_refusal_reads_full_at_once_then_decays(serve, tmp_path, reason):
    """One 503 in worker A: A reads exactly 1.0 at its next tick (its peak alone would read
    1 - e^(-1/5) = 0.18 after a full tick), then falls back; B never moves."""
    server, metrics = serve(*REASONS[reason])
    conns = pinned(server, 3)
    a, b = conns
    with Watcher(metrics) as watch:
        slot_a, slot_b = watch.slot_of(a), watch.slot_of(b)
        start = time.monotonic()
        refuse_on(tmp_path, server, conns[a], reason, "once")
        release(tmp_path, "once-0")
        release(tmp_path, "once-1")
        watch.wait_for(lambda w: w[slot_a] == 1.0, "A full at its next tick", timeout=5)
        watch.wait_for(lambda w: w[slot_a] < SETTLED, "A back down", timeout=FALL_WITHIN)
        after = watch.since(start, slot_a)
        top = after.index(1.0)
        falling = after[top:]
        assert all(x >= y for x, y in zip(falling, falling[1:], strict=False)), falling
        assert max(watch.since(start, slot_b)) < SETTLED, watch.since(start, slot_b)
        text = scrape(metrics)
        assert by_label(text, "fastsock_requests_refused_total")[reason] == 1
    for conn in conns[a] + conns[b]:
        conn.close()
    print(f"{reason}: A {[round(x, 2) for x in falling[::5]]}; B at most "
          f"{max(watch.since(start, slot_b)):.3f}")


def test_a_trickle_of_refusals_keeps_a_worker_full_and_its_successor_starts_low(
        serve, tmp_path):
    """Worker A at its limit, refusing one request every 0.2 s for 6 s: it reads 1.0 at every
    scrape meanwhile, B stays low. Then A is SIGKILLed: its slot's refusal counts live on (a
    counter), and the worker respawned there must not read them as refusals of its own — it
    starts low — while a refusal of its own still makes it read 1.0."""
    server, metrics = serve("--limit-concurrency", "2", "--timeout", "0")
    conns = pinned(server, 3)
    a, b = conns
    with Watcher(metrics) as watch:
        slot_a, slot_b = watch.slot_of(a), watch.slot_of(b)
        held, refusing = conns[a][:2], conns[a][2]
        for i, conn in enumerate(held):
            hold(tmp_path, conn, "async", f"trickle-{i}")
        assert refusing.get("/async")[0] == 503
        watch.wait_for(lambda w: w[slot_a] == 1.0, "A full", timeout=5)
        start, refused = time.monotonic(), 1
        while time.monotonic() < start + 6:
            due = start + 0.2 * refused
            wait_until(lambda due=due: time.monotonic() >= due,
                       what="the next refusal's time")
            assert refusing.get("/async")[0] == 503
            refused += 1
        during_a, during_b = watch.since(start, slot_a), watch.since(start, slot_b)
        assert len(during_a) >= 20 and set(during_a) == {1.0}, during_a
        assert max(during_b) < SETTLED, during_b
        assert by_label(scrape(metrics), "fastsock_requests_refused_total")["concurrency"] \
            == refused

        os.kill(a, signal.SIGKILL)
        wait_until(lambda: a not in children(server.proc.pid)
                   and len(children(server.proc.pid)) == 2, timeout=30,
                   what="A replaced", server=server)
        (successor,) = set(children(server.proc.pid)) - {b}
        wait_until(lambda: watch.pids.get(slot_a) == successor, timeout=20,
                   what="the successor scraped in A's slot")
        born = time.monotonic()
        wait_until(lambda: time.monotonic() > born + 3, timeout=5, what="3 s of its ticks")
        first = watch.since(born, slot_a)
        assert first and max(first) < SETTLED, first
        # its own refusal: 1.0 (its marks start from the slot's counts, not from 0)
        fresh = pinned(server, 3, pids=[successor])[successor]
        refuse_on(tmp_path, server, fresh, "concurrency", "successor")
        watch.wait_for(lambda w: w.get(slot_a) == 1.0, "the successor full on its refusal",
                       timeout=5)
        assert by_label(scrape(metrics), "fastsock_requests_refused_total")["concurrency"] \
            == refused + 1
    for conn in conns[b] + fresh:
        conn.close()
    print(f"trickle: A {len(during_a)} scrapes all 1.0, B at most {max(during_b):.3f}; "
          f"successor's first 3 s at most {max(first):.3f}")


def test_a_worker_shedding_connections_reads_full_then_falls_back(serve):
    """Workers out of file descriptors (RLIMIT_NOFILE 48): connections past it are shed at
    accept. A worker that shed reads 1.0 at its next tick though its loop, pool and app are
    idle; once connections close it falls back."""
    import resource

    def few_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    server, metrics = serve(preexec_fn=few_fds)
    conns, shed = [], 0
    with Watcher(metrics) as watch:
        start = time.monotonic()
        while shed < 3:
            assert len(conns) < 200, "never out of fds"
            try:
                conns.append(Conn(server))
            except (OSError, ValueError, AssertionError):
                shed += 1               # closed as it was accepted (or not read at all)
        for conn in conns[:10]:         # room again for scrapes
            conn.close()

        def counted():
            try:
                return samples(scrape(metrics), "fastsock_connections_shed_total")[
                    '{reason="fds"}'] > 0
            except (OSError, AssertionError):
                return False
        wait_until(counted, timeout=10, what="the sheds counted")
        watch.wait_for(lambda w: max(w.values()) == 1.0, "a worker that shed full", timeout=5)
        top = max(max(w.values()) for at, w, _ in watch.seen if at > start)
        for conn in conns[10:]:
            conn.close()
        watch.wait_for(lambda w: max(w.values()) < SETTLED, "back down", timeout=FALL_WITHIN)
    print(f"shed: {len(conns)} connections held, at most {top}; "
          f"{len(watch.failed)} scrapes failed meanwhile")


# ------------------------------------------------------------------------------ 3. the CPU part

def rates(metrics: int, seconds: float) -> tuple[dict, dict, float]:
    """({slot: busy share}, {slot: CPU share}) of each worker over a window of `seconds`."""
    t0, before = time.monotonic(), scrape(metrics)
    end = t0 + seconds
    wait_until(lambda: time.monotonic() >= end, timeout=seconds + 5, what="the window")
    t1, after = time.monotonic(), scrape(metrics)

    def share(name):
        return {w: (v - by_label(before, name).get(w, 0)) / (t1 - t0)
                for w, v in by_label(after, name).items()}
    return share("fastsock_worker_busy_seconds_total"), \
        share("fastsock_worker_cpu_seconds_total"), t1 - t0


def test_pool_threads_spinning_read_full_in_their_worker_only(serve):
    """3 pool threads of worker A spinning (of --threads 8: the pool's part is 3/8): A's
    process holds its core, A reads high; B, idle, reads low."""
    server, metrics = serve("--threads", "8", "--timeout", "0")
    conns = pinned(server, 3)
    a, b = conns
    stop = threading.Event()

    def spin(conn):
        while not stop.is_set():
            assert conn.get("/thread-spin?ms=50")[0] == 200
    spinners = [threading.Thread(target=spin, args=(c,), daemon=True) for c in conns[a]]
    with Watcher(metrics) as watch:
        slot_a, slot_b = watch.slot_of(a), watch.slot_of(b)
        for t in spinners:
            t.start()
        try:
            watch.wait_for(lambda w: w[slot_a] > 0.7, "A high", timeout=30)
            busy, cpu, _ = rates(metrics, 3)
            high = watch.last()
        finally:
            stop.set()
            for t in spinners:
                t.join(30)
        assert cpu[slot_a] > 0.5, cpu
        assert max(x[slot_b] for _, x, _ in watch.seen) < 0.3, high
    for conn in conns[a] + conns[b]:
        conn.close()
    print(f"spinning pool: gauge {high}, busy {busy}, cpu {cpu}")


def test_an_app_thread_ticking_in_an_idle_worker_reads_low(serve):
    """A thread of the app's own doing 0.5 ms of work every 20 ms (2.5 % of a core): its CPU
    counts in the process's, and must not make an idle worker look busy."""
    server, metrics = serve(env={"FASTSOCK_TEST_BACKGROUND": "1"})
    with Watcher(metrics) as watch:
        wait_until(lambda: time.monotonic() > watch.seen[0][0] + 8, timeout=15,
                   what="the start-up smoothed away")
        busy, cpu, _ = rates(metrics, 5)
        settled = watch.seen[-1][0] - 5
        figures = [v for at, w, _ in watch.seen if at > settled for v in w.values()]
    assert max(figures) < 0.1, (figures, busy, cpu)
    assert min(cpu.values()) > 0.01, cpu       # the thread did run: its CPU is seen
    print(f"app thread: gauge at most {max(figures):.3f}, busy {busy}, cpu {cpu}")


def test_200_scrapes_a_second_do_not_fill_an_idle_server(serve):
    """200 scrapes a second for 10 s (4 keep-alive clients of 50/s each) of an idle server:
    each scrape asks its worker's collectors' thread for a fresh snapshot and waits for it;
    the server's gauge must stay well below full."""
    server, metrics = serve()
    per_client, clients, seconds = 50, 4, 10.0
    done, errors = [0] * clients, []

    def client(i):
        try:
            with socket.create_connection(("127.0.0.1", metrics), timeout=10) as sock:
                reader, start = Reader(sock, timeout=10), time.monotonic()
                while (n := done[i]) < per_client * seconds:
                    due = start + n / per_client
                    if (late := due - time.monotonic()) > 0:
                        time.sleep(late)        # the pace of the load, not a wait for a result
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
                    status, _, body = reader.response()
                    assert status == 200
                    assert_sane(body.decode())
                    done[i] += 1
        except Exception as e:      # noqa: BLE001  (reported by the test)
            errors.append(repr(e))
    with Watcher(metrics) as watch:
        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        busy, cpu, wall = rates(metrics, seconds)
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        during = [s for at, _, s in watch.seen if t0 < at < t0 + elapsed]
        workers = [v for at, w, _ in watch.seen if t0 < at < t0 + elapsed for v in w.values()]
    assert not errors, errors
    rate = sum(done) / elapsed
    assert rate > 50, rate              # a storm, whatever else the machine runs
    print(f"{rate:.0f} scrapes/s for {elapsed:.1f} s: server gauge at most {max(during):.3f} "
          f"(last {during[-1]:.3f}), a worker at most {max(workers):.3f}; busy {busy}, "
          f"cpu {cpu}")
    # each scrape holds the loop for the collectors' snapshot (~2.4 ms, counted busy): a
    # storm reads ~0.25 here, never a full server
    assert max(during) < 0.5, (during, busy, cpu)
