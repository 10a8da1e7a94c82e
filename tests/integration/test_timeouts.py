"""Each timeout, shortened by config, against a real server; and running out of fds."""
import resource
import socket
import time

from tests.support.sockets import Reader, read_until_close


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> float:
    """Send data a byte at a time until the server answers or closes; -> seconds taken."""
    start = time.monotonic()
    sock.setblocking(False)
    for b in data:
        if time.monotonic() - start > limit:
            break
        try:
            sock.send(bytes([b]))
            if sock.recv(1, socket.MSG_PEEK):
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        time.sleep(every)
    sock.setblocking(True)
    return time.monotonic() - start


def test_header_deadline_cannot_be_extended_by_trickling(serve):
    server = serve("--header-timeout", "1")
    with server.connect() as s:
        t0 = time.monotonic()
        trickle(s, b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 200, every=0.05, limit=6)
        data = read_until_close(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.9 <= elapsed < 2.5


def test_header_deadline_runs_from_first_byte_of_a_later_request(serve):
    server = serve("--header-timeout", "1", "--keepalive-timeout", "10")
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert Reader(s).response()[2] == b"hello"
        time.sleep(1.5)                     # idle longer than the header timeout: still open
        t0 = time.monotonic()
        trickle(s, b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * 200, every=0.05, limit=6)
        data = read_until_close(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.9 <= elapsed < 2.5


def test_silent_connection_is_closed_without_a_response(serve):
    server = serve("--header-timeout", "1")
    with server.connect() as s:
        t0 = time.monotonic()
        assert read_until_close(s) == b""
        assert 0.9 <= time.monotonic() - t0 < 2.5


def test_idle_keep_alive_timeout(serve):
    server = serve("--keepalive-timeout", "1")
    with server.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = Reader(s)
        assert reader.response()[2] == b"hello"
        t0 = time.monotonic()
        assert read_until_close(s) == b""   # closed quietly: no 408 for an idle connection
        assert 0.9 <= time.monotonic() - t0 < 2.5


def test_body_timeout(serve):
    server = serve("--body-timeout", "1", "--header-timeout", "10")
    with server.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        t0 = time.monotonic()
        trickle(s, b"d" * 90, every=0.05, limit=6)
        data = read_until_close(s)
        elapsed = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408 "), data
    assert 0.7 <= elapsed < 2.5


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
        time.sleep(0.5)
        cpu0 = cpu_seconds(server.proc.pid)
        time.sleep(2.0)
        spent = cpu_seconds(server.proc.pid) - cpu0
        assert spent < 0.5, f"server burned {spent:.2f}s CPU in 2s: busy-looping on EMFILE"
        keeper.sendall(b"GET /n/7 HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.response()[2] == b"n=7"
        assert "out of file descriptors" in server.log()
    finally:
        for s in extra:
            s.close()
    time.sleep(0.5)
    with server.connect() as s:             # fds are back: new connections are served again
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert read_until_close(s).endswith(b"hello")
    keeper.close()
