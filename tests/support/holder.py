"""Requests held in the app (tests/apps/limits.py's /hold routes) over real sockets."""
import contextlib
import socket
import time

from tests.support.servers import start_server
from tests.support.sockets import Reader


@contextlib.contextmanager
def held_servers(tmp_path, app: str):
    """start(*args, app=app, workers="2", **kw) -> a server whose handlers note and wait in
    tmp_path ($FASTSOCK_TEST_DIR); on the way out, every hold is released and every server
    stopped."""
    servers = []

    def start(*args, app=app, workers="2", env=None, preexec_fn=None):
        server = start_server(tmp_path, "--workers", workers, *args, app=app,
                              preexec_fn=preexec_fn,
                              env={"FASTSOCK_TEST_DIR": str(tmp_path), **(env or {})})
        servers.append(server)
        return server
    try:
        yield start
    finally:
        (tmp_path / "release").write_text("1")
        for server in servers:
            server.stop()


def send(server, path: str) -> socket.socket:
    sock = server.connect()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return sock


class Holder:
    """Requests held in the app: each is sent on its own connection, and is in once its
    handler noted `entered-<id>` (or it was refused: 503 at once)."""

    def __init__(self, server, tmp, path: str, streams: bool = False):
        self.server, self.tmp, self.path, self.streams = server, tmp, path, streams
        self.held: dict[str, Reader] = {}       # id -> its connection, what came so far
        self.refused = 0
        self.count = 0

    def try_one(self) -> bool:
        """One more request: True when it is held in the app, False when it was refused."""
        self.count += 1
        rid = f"{self.path.strip('/').replace('/', '-')}-{self.count}"
        sock = send(self.server, f"{self.path}?id={rid}")
        mark = self.tmp / f"entered-{rid}"
        sock.settimeout(0.02)
        deadline = time.monotonic() + 10
        data = b""
        while time.monotonic() < deadline:
            if mark.exists():
                reader = self.held[rid] = Reader(sock, timeout=10)
                reader.buf = data               # a streamed response's head may be in
                return True
            try:
                data += sock.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"HTTP/1.1 503") and b"\r\n\r\n" in data:
                assert b"\r\nRetry-After: 1\r\n" in data, data
                sock.close()
                self.refused += 1
                return False
            if data and not data.startswith(b"HTTP/1.1 "):
                raise AssertionError(f"not a response: {data!r}")
        raise AssertionError(f"{rid}: neither in the app nor refused; got {data!r}")

    def fill(self, capacity: int) -> None:
        """Hold `capacity` requests (every worker full), however the workers are picked."""
        while len(self.held) < capacity:
            assert self.count < capacity * 20, "the workers never filled"
            self.try_one()

    def release_all(self) -> list[bytes]:
        (self.tmp / "release").write_text("1")
        bodies = []
        for reader in self.held.values():
            status, _, body = reader.response()
            assert status == 200
            bodies.append(body)
            reader.sock.close()
        self.held.clear()
        (self.tmp / "release").unlink()
        return bodies
