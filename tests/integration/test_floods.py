"""Floods against a real server with several workers: out of file descriptors on both the main
and the metrics listener, and a thousand slowloris clients. Existing and normal clients keep
being served, no CPU spins, and the server recovers when the flood is gone."""
import resource
import socket
import threading
import time

import httpx

from tests.support.metrics import samples
from tests.support.servers import children, free_port
from tests.support.sockets import Reader, read_until_close
from tests.support.waiting import wait_for_log, wait_until


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in [pid] + children(pid):
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / 100
    return total


def ask(sock: socket.socket, path: str, reader: Reader) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    status, _, body = reader.response()
    assert status == 200
    return body


def test_out_of_fds_on_both_listeners_no_spin_existing_served_then_recovers(serve):
    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    metrics_port = free_port()
    server = serve("--workers", "2", "--metrics-port", str(metrics_port),
                   preexec_fn=low_fd_limit)
    wait_until(lambda: httpx.get(server.url + "/readyz").status_code == 200, what="ready")
    keepers = []
    for _ in range(4):                              # likely on both workers
        s = server.connect()
        keepers.append((s, Reader(s)))
        assert ask(s, "/", keepers[-1][1]) == b"hello"
    mkeeper = socket.create_connection(("127.0.0.1", metrics_port), timeout=5)
    mreader = Reader(mkeeper)
    assert b"fastsock_requests" in ask(mkeeper, "/metrics", mreader)
    flood = []
    try:
        for port in (server.port, metrics_port) * 80:   # far more than the workers have fds
            flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        wait_for_log(server, "out of file descriptors")
        cpu0, t0 = tree_cpu_seconds(server.proc.pid), time.monotonic()
        time.sleep(2.0)                             # the window the CPU is measured over
        spent, window = tree_cpu_seconds(server.proc.pid) - cpu0, time.monotonic() - t0
        # a share of the window: a busy machine gives the server less CPU, never more
        assert spent < 0.25 * window, f"the server burned {spent:.2f}s of CPU in " \
                                      f"{window:.1f}s on EMFILE"
        for s, reader in keepers:
            assert ask(s, "/n/3", reader) == b"n=3"
        text = ask(mkeeper, "/metrics", mreader).decode()
        assert samples(text, "fastsock_connections_shed_total")['{reason="fds"}'] >= 1
        assert "out of file descriptors" in server.log()
    finally:
        for s in flood:
            s.close()
    for port, path, expect in ((server.port, "/", b"hello"),
                               (metrics_port, "/metrics", b"fastsock_requests")):
        def served():                               # at a tick the listeners are watched again
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                          .encode())
                return expect in read_until_close(s)
        wait_until(served, what=f"a new connection to {port} served", server=server)
    for s, _ in keepers:
        s.close()
    mkeeper.close()
    assert "Traceback" not in server.log()


def test_a_thousand_slowloris_clients_do_not_stop_normal_clients(serve):
    server = serve("--workers", "2", "--header-timeout", "4")
    wait_until(lambda: httpx.get(server.url + "/readyz").status_code == 200, what="ready")
    slow = []
    stop = threading.Event()
    try:
        for _ in range(1000):
            s = server.connect()
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")     # a head that never ends
            slow.append(s)

        def trickle():                      # one more header line each, every half second
            while not stop.is_set():
                for s in slow:
                    try:
                        s.send(b"X-Slow: 1\r\n", socket.MSG_DONTWAIT)
                    except OSError:
                        pass
                stop.wait(0.5)
        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        # normal clients are answered while the slow ones hold their connections: a count,
        # each with a generous timeout as a hang guard (a starved client would hit it)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for _ in range(100):
                r = httpx.get(server.url + "/n/1", timeout=10)    # a new connection each
                assert r.status_code == 200 and r.text == "n=1"
                assert client.get("/").text == "hello"            # and a kept one
        # the trickle (still going) cannot stretch the header deadline: each slow client
        # gets its 408
        answered = 0
        for s in slow[:50]:
            if read_until_close(s, timeout=20).startswith(b"HTTP/1.1 408 "):
                answered += 1
        assert answered == 50
        stop.set()
        trickler.join(5)
    finally:
        stop.set()
        for s in slow:
            s.close()
