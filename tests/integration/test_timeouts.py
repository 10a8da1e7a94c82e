"""Each timeout, shortened by config, against a real server; and running out of fds."""
import resource
import socket
import time

from tests.support.sockets import Reader, read_until_close
from tests.support.waiting import wait_for_log, wait_until


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def trickle(sock: socket.socket, data: bytes, every: float) -> int:
    """Send data a byte at a time until the server answers or closes; -> bytes sent. The
    client's pace is the scenario: a deadline the trickle could extend would let all of it in."""
    sock.setblocking(False)
    sent = 0
    for b in data:
        try:
            sock.send(bytes([b]))
            sent += 1
            if sock.recv(1, socket.MSG_PEEK):
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        time.sleep(every)
    sock.setblocking(True)
    return sent


def test_header_deadline_cannot_be_extended_by_trickling(serve):
    server = serve("--header-timeout", "1")
    head = b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 400      # 20 s at this pace
    with server.connect() as s:
        t0 = time.monotonic()
        sent = trickle(s, head, every=0.05)
        data = read_until_close(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert sent < len(head), "the trickle got all of its head in"
    assert elapsed >= 0.9                   # not before the deadline


def test_header_deadline_runs_from_first_byte_of_a_later_request(serve):
    server = serve("--header-timeout", "1", "--keepalive-timeout", "10")
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Reader(s).response()[2] == b"hello"
        time.sleep(1.5)                     # the scenario: idle longer than the header timeout
        head = b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 400
        t0 = time.monotonic()
        sent = trickle(s, head, every=0.05)
        data = read_until_close(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data      # still open after the idle time
    assert sent < len(head), "the trickle got all of its head in"
    assert elapsed >= 0.9                   # the deadline ran from the first byte, not before


def test_silent_connection_is_closed_without_a_response(serve):
    server = serve("--header-timeout", "1", "--keepalive-timeout", "60")
    with server.connect() as s:
        t0 = time.monotonic()
        assert read_until_close(s, timeout=20) == b""      # closed (it raises if not)
        assert time.monotonic() - t0 >= 0.9                 # by the header deadline
    assert 'reason="header_timeout"} 1.0' in server.get("/metrics").text


def test_idle_keep_alive_timeout(serve):
    server = serve("--keepalive-timeout", "1", "--header-timeout", "60")
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(s)
        assert reader.response()[2] == b"hello"
        t0 = time.monotonic()
        assert read_until_close(s, timeout=20) == b""   # closed quietly: no 408 when idle
        assert time.monotonic() - t0 >= 0.9
    assert 'reason="keepalive_timeout"} 1.0' in server.get("/metrics").text


def test_body_timeout(serve):
    server = serve("--body-timeout", "1", "--header-timeout", "10")
    with server.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 400\r\n\r\nabc")
        t0 = time.monotonic()
        sent = trickle(s, b"d" * 397, every=0.05)         # 20 s at this pace
        data = read_until_close(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert sent < 397, "the trickle got all of its body in"
    assert elapsed >= 0.7


def test_out_of_file_descriptors_never_spins_and_keeps_serving(serve):
    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    server = serve(preexec_fn=low_fd_limit)
    keeper = server.connect()
    keeper.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    reader = Reader(keeper)
    assert reader.response()[2] == b"hello"
    extra = []
    try:
        for _ in range(80):                 # far more than the server has fds for
            extra.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        wait_for_log(server, "out of file descriptors")
        cpu0 = cpu_seconds(server.proc.pid)
        t0 = time.monotonic()
        time.sleep(2.0)                     # the window the CPU is measured over
        spent = cpu_seconds(server.proc.pid) - cpu0
        window = time.monotonic() - t0
        # a ratio: a busy machine gives the server less CPU, never more
        assert spent < 0.25 * window, f"server burned {spent:.2f}s CPU in {window:.1f}s: " \
                                      "busy-looping on EMFILE"
        keeper.sendall(b"GET /n/7 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.response()[2] == b"n=7"
    finally:
        for s in extra:
            s.close()

    def served_again():                     # fds are back: new connections are served again
        with server.connect() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return read_until_close(s).endswith(b"hello")
    wait_until(served_again, what="a new connection served", server=server)
    keeper.close()


def test_a_streamed_body_that_stops_coming_gets_a_408(serve):
    """A route that streams its body (its handler already running) and a client that stops
    sending it: a 408 and the close, as for a body gathered whole; the handler is told."""
    server = serve("--body-timeout", "1", "--workers", "1", app="tests.apps.native:app")
    for path in ("/upload-small", "/echo"):
        with server.connect(timeout=15) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n".encode()
                      + b"x" * 100)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 "), (path, data[:200])
    assert server.get("/").status_code == 200           # the worker serves on
