"""The command line: both entry points, options from flags and FASTSOCK_* variables, and
clear errors instead of tracebacks."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from fastsock.config import Config
from tests.support.servers import ROOT, free_port, start_server


def run_cli(*args, env=None, timeout=20):
    return subprocess.run([sys.executable, "-m", "fastsock", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_help_lists_every_option_with_its_variable():
    out = run_cli("--help").stdout
    for name in Config.__dataclass_fields__:
        if name != "app":
            assert "--" + name.replace("_", "-") in out
        assert "FASTSOCK_" + name.upper() in out


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
    ("tests.apps.native:no_such_attr", "has no attribute 'no_such_attr'"),
    ("tests.apps.native", "MODULE:ATTRIBUTE"),
    ("tests.support.servers:free_port", "neither a fastsock App, a WSGI app"),
    ("tests.support.servers:ROOT", "is not an application"),
])
def test_bad_application_is_a_clear_error(spec, message):
    r = run_cli(spec, "--port", str(free_port()))
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("tests.apps.native:app", "--host", "127.0.0.1", "--port", str(port))
    assert r.returncode == 1
    assert "address already in use" in r.stderr and "Traceback" not in r.stderr


def test_bad_option_value_is_a_clear_error():
    r = run_cli("tests.apps.native:app", env={"FASTSOCK_HEADER_TIMEOUT": "soon"})
    assert r.returncode == 2 and "FASTSOCK_HEADER_TIMEOUT" in r.stderr
    r = run_cli("tests.apps.native:app", "--workers", "many")
    assert r.returncode == 2 and "--workers" in r.stderr
    r = run_cli("tests.apps.native:app", "--forwarded-allow-ips", "10.0.0.0/8,bogus")
    assert r.returncode == 2 and "'bogus' is not an address" in r.stderr
    r = run_cli("tests.apps.native:app", "--timeout", "0.5")
    assert r.returncode == 2 and "timeout must be 0 (off) or at least 2 seconds" in r.stderr


def test_env_configures_a_real_server(tmp_path):
    port = free_port()
    server = start_server(tmp_path, env={"FASTSOCK_MAX_BODY_SIZE": "4"})
    try:
        with httpx.Client(base_url=server.url) as c:
            assert c.post("/echo", content=b"1234").content == b"1234"
            assert c.post("/echo", content=b"12345").status_code == 413
    finally:
        server.stop()


def first_get(proc: subprocess.Popen, url: str) -> httpx.Response:
    """GET url once the freshly started server answers; fails if it exits or never does."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return httpx.get(url)
        except httpx.ConnectError:
            assert proc.poll() is None, f"the server exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the server never answered"
            time.sleep(0.05)


def test_console_script_serves_the_documented_app_and_stops_on_sigterm(tmp_path):
    app = tmp_path / "myservice.py"
    app.write_text(
        "from fastsock import App\n"
        "app = App()\n\n"
        "@app.get('/')\n"
        "def index(req):\n"
        "    return 'hello'\n\n"
        "@app.post('/echo')\n"
        "def echo(req):\n"
        "    return req.body\n")
    port = free_port()
    proc = subprocess.Popen(["fastsock", "myservice:app", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        r = first_get(proc, f"http://127.0.0.1:{port}/")
        assert (r.status_code, r.text) == (200, "hello")
        r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"\x00\xffbytes")
        assert r.content == b"\x00\xffbytes"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_app_run_from_a_script(tmp_path):
    port = free_port()
    script = tmp_path / "script.py"
    script.write_text(
        "from fastsock import App\n"
        "app = App()\n"
        "@app.get('/')\n"
        "def index(req):\n"
        "    return 'from run'\n"
        f"app.run(host='127.0.0.1', port={port}, header_timeout=5)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT)
    try:
        assert first_get(proc, f"http://127.0.0.1:{port}/").text == "from run"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
