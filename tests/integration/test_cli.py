"""The command line: both entry points, options from flags and FASTSOCK_* variables, and
clear errors instead of tracebacks."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from fastsock.config import Config
from fastsock.cpus import default_workers
from tests.support.servers import ROOT, children, free_port, start_server
from tests.support.waiting import wait_until


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


class CLIServer:
    """`python -m fastsock ...` in a directory of the test's, its error log in a file."""

    def __init__(self, tmp_path, *args, cwd=ROOT, env=None, port=None):
        self.port = port or free_port()
        self.log_path = tmp_path / f"cli-{self.port}.err"
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fastsock", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                stderr=err, env={**os.environ, **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def text(self, path="/") -> str:
        return first_get(self.proc, self.url + path).text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def cli(tmp_path):
    started = []

    def start(*args, **kw):
        started.append(CLIServer(tmp_path, *args, **kw))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_port_from_the_platform_is_listened_on(cli):
    port = free_port()
    server = cli("tests.apps.native:app", "--host", "127.0.0.1", "--workers", "1", port=port,
                 env={"PORT": str(port)})
    assert server.text("/healthz").strip() == "ok"


def test_fastsock_port_wins_over_the_platform_port(cli):
    port = free_port()
    server = cli("tests.apps.native:app", "--host", "127.0.0.1", "--workers", "1", port=port,
                 env={"PORT": "1", "FASTSOCK_PORT": str(port)})   # port 1: not ours to take
    assert server.text("/healthz").strip() == "ok"


def test_web_concurrency_sets_the_worker_count(cli):
    port = free_port()
    server = cli("tests.apps.native:app", "--host", "127.0.0.1", port=port,
                 env={"WEB_CONCURRENCY": "3", "FASTSOCK_PORT": str(port)})
    server.text("/healthz")
    wait_until(lambda: len(children(server.proc.pid)) == 3, what="3 workers")
    assert "with 3 workers" in server.log()


def test_workers_auto_says_how_it_counted(cli):
    port = free_port()
    server = cli("tests.apps.native:app", "--host", "127.0.0.1", "--port", str(port),
                 "--workers", "auto", port=port)
    server.text("/healthz")
    n = default_workers()
    wait_until(lambda: f"--workers auto: {n} (" in server.log(), what="the auto line")
    assert "affinity mask" in server.log()


APP_V1 = """from fastsock import App
app = App()

@app.get('/')
def index(req):
    return 'first'
"""


def write_app(directory, text):
    (directory / "svc.py").write_text(text)


def test_reload_restarts_the_worker_when_the_app_changes(cli, tmp_path):
    appdir = tmp_path / "project"
    appdir.mkdir()
    write_app(appdir, APP_V1)
    server = cli("svc:app", "--reload", "--host", "127.0.0.1", "--port", str(port := free_port()),
                 cwd=appdir, port=port)
    assert server.text() == "first"
    assert "--reload: one worker" in server.log() and "with 1 worker" in server.log()
    write_app(appdir, APP_V1.replace("'first'", "'the second version'"))
    wait_until(lambda: server.text() == "the second version", what="the changed response",
               server=server)
    # a mistake in the edit: the error is logged, the worker before it keeps serving, and the
    # next edit that fixes it is served
    write_app(appdir, APP_V1 + "def broken(:\n")
    wait_until(lambda: "waiting for a change to try again" in server.log(), server=server,
               what="the failed start logged")
    assert "SyntaxError" in server.log()
    assert server.text() == "the second version" and server.proc.poll() is None
    write_app(appdir, APP_V1.replace("'first'", "'third'"))
    wait_until(lambda: server.text() == "third", what="the fixed app", server=server)
    # a change that is not Python restarts nothing: every restart names the .py file
    (appdir / "notes.txt").write_text("not code")
    write_app(appdir, APP_V1.replace("'first'", "'fourth'"))
    wait_until(lambda: server.text() == "fourth", what="the fourth version", server=server)
    restarts = [line for line in server.log().splitlines() if "restarting the worker" in line]
    assert len(restarts) >= 4 and all("svc.py changed" in line for line in restarts)
    wait_until(lambda: len(children(server.proc.pid)) == 1, what="the old workers gone",
               server=server)
    server.proc.send_signal(signal.SIGTERM)             # the watcher never holds up a stop
    assert server.proc.wait(10) == 0


def test_reload_in_a_package_watches_the_project(cli, tmp_path):
    pkg = tmp_path / "project" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "main.py").write_text("from fastsock import App\nfrom helpers import WORD\n"
                                 "app = App()\n@app.get('/')\ndef index(req):\n"
                                 "    return WORD\n")
    (tmp_path / "project" / "helpers.py").write_text("WORD = 'before'\n")
    port = free_port()
    server = cli("pkg.main:app", "--reload", "--host", "127.0.0.1", "--port", str(port),
                 cwd=tmp_path / "project", port=port)
    assert server.text() == "before"
    (tmp_path / "project" / "helpers.py").write_text("WORD = 'after the edit'\n")
    wait_until(lambda: server.text() == "after the edit", what="the helper's change",
               server=server)


def test_reload_without_watchfiles_says_how_to_install_it():
    code = ("import sys; sys.modules['watchfiles'] = None\n"     # as if it were not installed
            "from fastsock.cli import main; sys.exit(main())")
    r = subprocess.run([sys.executable, "-c", code, "tests.apps.native:app", "--reload",
                        "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == [
        "fastsock: error: --reload needs the watchfiles package: pip install 'fastsock[reload]'"]


def test_reload_of_a_missing_module_is_one_line(tmp_path):
    r = run_cli("no_such_module_xyz:app", "--reload", "--port", "0")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "fastsock: error: cannot import module 'no_such_module_xyz': no such module"]


def help_flags() -> set[str]:
    """Every flag `fastsock --help` lists (its --no- forms included), --help aside."""
    out = run_cli("--help").stdout
    flags = set()
    for line in out.splitlines():
        head = re.match(r" {2}(-{1,2}\w[\w-]*(?: [A-Z_]+)?(?:, -{1,2}\w[\w-]*(?: [A-Z_]+)?)*)",
                        line)           # an option's line: its flags (and metavar), then help
        if head:
            flags |= set(re.findall(r"--[a-z][a-z0-9-]*", head.group(1)))
    return flags - {"--help"}


def table_flags() -> set[str]:
    """The flags named in the first column of the compared page's flag-by-flag table."""
    page = (ROOT / "docs" / "compared.md").read_text()
    table = page.split("## Flag by flag", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # no header
    return {flag for row in rows for flag in re.findall(r"`(--[a-z][a-z0-9-]*)",
                                                          row.split("|")[1])}


def test_the_compared_table_names_every_flag_and_only_real_ones():
    flags, table = help_flags(), table_flags()
    assert {"--port", "--reload", "--no-reload", "--workers", "--version"} <= flags  # parsed
    assert not flags - table, f"flags missing from docs/compared.md: {sorted(flags - table)}"
    assert not table - flags, f"docs/compared.md names flags fastsock has not: " \
                              f"{sorted(table - flags)}"


def test_a_metrics_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cli("tests.apps.native:app", "--host", "127.0.0.1", "--port", str(free_port()),
                    "--metrics-port", str(port))
    assert r.returncode == 1
    (line,) = r.stderr.splitlines()
    assert line == (f"fastsock: error: cannot listen on 127.0.0.1:{port} (the metrics port): "
                    f"address already in use"), line
