"""Raw-socket clients: whole responses read off a socket, a body posted, what is left in cycles."""
from __future__ import annotations

import socket
import time


def read_until_close(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class Reader:
    """Reads whole responses (Content-Length or chunked) off a raw socket, in order."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0):
        self.sock, self.buf = sock, b""
        sock.settimeout(timeout)

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed with {self.buf[:200]!r} unread")
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self, head_only: bool = False) -> tuple[int, dict, bytes]:
        """-> (status, headers with lowercase names, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        if head_only or status in (100, 204, 304):
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._line(), 16)
                if size == 0:
                    assert self._line() == b""
                    return status, headers, body
                body += self._take(size)
                assert self._take(2) == b"\r\n"
        while True:                                 # delimited by the connection's close
            try:
                self._more()
            except ConnectionError:
                body, self.buf = self.buf, b""
                return status, headers, body


def garbage_left(server, path: str, n: int = 100) -> int:
    """Objects that n requests to path left in reference cycles in the worker that served
    them (the app's /garbage, asked on the same connection: tests/support/garbage.py)."""
    with server.connect() as s:
        reader = Reader(s)

        def get(p: str) -> bytes:
            s.sendall(f"GET {p} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            status, _, body = reader.response()
            assert status == 200, (p, status, body)
            return body

        get("/garbage")
        for _ in range(n):
            get(path)
        return int(get("/garbage"))


def post(sock, path: str, body: bytes, chunked: bool = False, extra: bytes = b"") -> None:
    if chunked:
        pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
        data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        head = b"Transfer-Encoding: chunked\r\n"
    else:
        data, head = body, b"Content-Length: %d\r\n" % len(body)
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + head + extra
                 + b"\r\n" + data)


CLOSE_WAIT = 8                      # a TCP state in /proc/net/tcp: the peer's FIN is in


def _tcp_queues(local: tuple[str, int], remote: tuple[str, int]) -> tuple[int, int, int] | None:
    """(send queue, receive queue, state) of the TCP socket local -> remote on this host
    (IPv4), from /proc/net/tcp; None when there is none."""
    def addr(host: str, port: int) -> str:
        return "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    want = (addr(*local), addr(*remote))
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                tx, rx = fields[4].split(":")
                return int(tx, 16), int(rx, 16), int(fields[3], 16)
    return None


def server_has_read_all(sock: socket.socket) -> bool:
    """Whether every byte sent on this client socket was read by the server's process (our
    send queue is empty and so is the receive queue of the server's end): the condition a test
    waits on before it sends the next piece of a request that must arrive in two reads."""
    mine = _tcp_queues(sock.getsockname()[:2], sock.getpeername()[:2])
    theirs = _tcp_queues(sock.getpeername()[:2], sock.getsockname()[:2])
    return mine is not None and theirs is not None and mine[0] == 0 and theirs[1] == 0


def delivered(sock: socket.socket) -> bool:
    """Whether every byte sent on this client socket reached the server's socket (our send
    queue is empty), read by the server or not."""
    mine = _tcp_queues(sock.getsockname()[:2], sock.getpeername()[:2])
    return mine is not None and mine[0] == 0


def queues(sock: socket.socket) -> dict | None:
    """The kernel's queues of a client socket and of the server's end of it, in bytes:
    client_rx (arrived, unread by the client), client_tx (sent, not yet taken by the server's
    end), server_rx (arrived, unread by the server), server_tx (written by the server, not yet
    taken by the client's end), and server_state (the TCP state of the server's end, e.g.
    CLOSE_WAIT); None if either end is gone."""
    mine = _tcp_queues(sock.getsockname()[:2], sock.getpeername()[:2])
    theirs = _tcp_queues(sock.getpeername()[:2], sock.getsockname()[:2])
    if mine is None or theirs is None:
        return None
    return dict(client_tx=mine[0], client_rx=mine[1], server_tx=theirs[0], server_rx=theirs[1],
                server_state=theirs[2])
