"""A real fastsock server process on an ephemeral port (the `serve` and `server` fixtures in
tests/conftest.py start them)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def start_server(tmp: Path, *args: str, app: str = "tests.apps.native:app", preexec_fn=None,
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


def children(pid: int) -> list[int]:
    """The PIDs of a process's children (a master's workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(p) for p in task.read_text().split()]
    return out


def ready(server) -> int:
    """The status of /readyz, 0 while nothing answers."""
    import httpx
    try:
        return server.get("/readyz").status_code
    except httpx.HTTPError:
        return 0
