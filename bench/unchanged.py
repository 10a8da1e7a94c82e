"""The apps of tests/apps/unchanged.py served by fastsock beside gunicorn (Flask), uvicorn
(FastAPI) and granian (both), one worker each, the same requests to each over 127.0.0.1, and
what each sent: a declared Content-Length kept or re-framed, how many Date lines, what HEAD of
a generator route announces, the host an absolute-form target gives the app, two Cookie lines
as WSGI sees them. gunicorn, uvicorn and granian are in the [bench] extra (not in CI's venv).

    python bench/unchanged.py
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{cmd[2]} did not start")


def ask(port: int, method: str, target: str, extra: str = ""):
    """-> ({lowercase name: value}, how many Date lines, the raw bytes after the head)."""
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while method != "HEAD" or b"\r\n\r\n" not in data:
            more = s.recv(1 << 20)
            if not more:
                break
            data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
    fields = {k.strip().lower().decode(): v.strip().decode() for k, v in lines}
    return fields, sum(1 for k, _ in lines if k.strip().lower() == b"date"), rest


def framing(fields: dict) -> str:
    if "content-length" in fields:
        return f"Content-Length: {fields['content-length']}"
    return "chunked" if fields.get("transfer-encoding") == "chunked" else "no framing"


def probe(port: int, kind: str) -> dict:
    out = {}
    for path in ("/file", "/parts") if kind == "fastapi" else ("/file",):
        fields, _, _ = ask(port, "GET", path)
        out[f"GET {path}"] = framing(fields)
    out["Date lines"] = ask(port, "GET", "/date" if kind == "fastapi" else "/file")[1]
    out["HEAD /gen"] = framing(ask(port, "HEAD", "/gen")[0])
    fields, _, rest = ask(port, "GET", "http://other.example:9000/host")
    if fields.get("transfer-encoding") == "chunked":
        rest = rest.split(b"\r\n")[1]
    out["absolute-form host"] = json.loads(rest)["host"]
    if kind == "flask":
        out["HTTP_COOKIE"] = json.loads(ask(port, "GET", "/cookies",
                                            "Cookie: a=1\r\nCookie: b=2\r\n")[2])["HTTP_COOKIE"]
    return out


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FASTSOCK_TEST_DIR": tempfile.mkdtemp()}
    for kind, other in (("flask", "gunicorn"), ("fastapi", "uvicorn")):
        app = f"tests.apps.unchanged:{kind}_app"
        for server in ("fastsock", other, "granian"):
            port = free_port()
            cmd = {"fastsock": ["-m", "fastsock", app, "--host", "127.0.0.1", "--port",
                                str(port), "--workers", "1"],
                   "gunicorn": ["-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", app],
                   "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
                               app],
                   "granian": ["-m", "granian", "--interface",
                               "wsgi" if kind == "flask" else "asgi", "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1", app]}[server]
            proc = start([sys.executable, *cmd], port, env)
            try:
                print(f"{kind:8} {server:9}", json.dumps(probe(port, kind)), flush=True)
            finally:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
