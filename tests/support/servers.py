"""A real fastsock server process on an ephemeral port, started per test or per module."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log_path: Path, out_path: Path):
        self.proc, self.port, self.log_path, self.out_path = proc, port, log_path, out_path
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        """The error log (stderr)."""
        return self.log_path.read_text(errors="replace")

    def stdout(self) -> str:
        """The access log."""
        return self.out_path.read_text(errors="replace")

    def get(self, path: str, **kw):
        import httpx
        return httpx.get(self.url + path, **kw)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(tmp: Path, *args: str, app: str = "tests.apps:app", preexec_fn=None,
                 env: dict | None = None) -> Server:
    port = free_port()
    log_path, out_path = tmp / f"server-{port}.err", tmp / f"server-{port}.out"
    if "--workers" not in args:
        args = ("--workers", "1", *args)
    cmd = [sys.executable, "-m", "fastsock", app, "--host", "127.0.0.1", "--port", str(port),
           *args]
    with open(log_path, "wb") as err, open(out_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err,
                                preexec_fn=preexec_fn, env={**os.environ, **(env or {})})
    server = Server(proc, port, log_path, out_path)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not start:\n{server.log()}")


@pytest.fixture
def serve(tmp_path):
    """serve(*cli_args) -> Server; every server is stopped when the test ends."""
    servers = []

    def start(*args, **kw):
        server = start_server(tmp_path, *args, **kw)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("server"))
    yield s
    s.stop()


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


def wait_for_text(path: Path, timeout: float = 3.0) -> str:
    """The text of a file an app writes (a handler's outcome), once it is there."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text()


def garbage_left(server, path: str, n: int = 100) -> int:
    """Objects that n requests to path left in reference cycles in the worker that served
    them (the app's /garbage, asked on the same connection: tests/garbage.py)."""
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
