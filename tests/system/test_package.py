"""fastsock as a package: what `pip install` of a release gives. The sdist is built, a wheel is
built from that sdist in a clean venv (as pip does for a user without a wheel), installed, and
serves the README's example; auditwheel names its manylinux tag; the cibuildwheel matrix covers
x86_64 and aarch64; a machine that cannot build gets one clear line instead of a traceback."""
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

import fastsock
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]


# what the tools run here see: not the source tree the suite may run with (PYTHONPATH), or pip
# finds fastsock "already satisfied" and the venv's python imports the tree's copy
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run(*cmd, cwd=ROOT, env=None, timeout=600):
    r = subprocess.run(cmd, cwd=cwd, env=CLEAN if env is None else env, capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel built from it in a clean venv, that venv) — a few minutes, once."""
    out = tmp_path_factory.mktemp("dist")
    code, log = run(sys.executable, "-m", "build", "--sdist", "--outdir", str(out))
    assert code == 0, log[-3000:]
    (sdist,) = out.glob("fastsock-*.tar.gz")
    venv = out / "venv"
    code, log = run(sys.executable, "-m", "venv", str(venv))
    assert code == 0, log
    code, log = run(str(venv / "bin" / "pip"), "wheel", "--no-deps", "-w", str(out), str(sdist))
    assert code == 0, log[-3000:]
    (wheel,) = out.glob("fastsock-*.whl")
    code, log = run(str(venv / "bin" / "pip"), "install", str(wheel))
    assert code == 0, log[-3000:]
    return sdist, wheel, venv


def test_the_version_has_one_source_and_fastsock_says_it():
    from importlib.metadata import version
    assert version("fastsock") == fastsock.__version__
    code, out = run(sys.executable, "-m", "fastsock", "--version")
    assert code == 0 and out.strip() == f"fastsock {fastsock.__version__}", out
    assert "version =" not in (ROOT / "pyproject.toml").read_text().split("[project.urls]")[0]


def test_the_sdist_holds_the_sources_and_the_license_and_no_binaries(built):
    sdist, _, _ = built
    assert sdist.name == f"fastsock-{fastsock.__version__}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for needed in ("LICENSE", "README.md", "setup.py", "pyproject.toml", "fastsock/py.typed",
                   "fastsock/_loop.pyx", "fastsock/_loop.pxd", "fastsock/adapters/asgi.pxd",
                   "fastsock/adapters/wsgi.py", "fastsock/_loop.pyi"):
        assert needed in names, needed
    assert not [n for n in names if n.endswith(".so")], "compiled files in the sdist"
    # the C that Cython generated from those sources rides along, as Cython advises
    assert "fastsock/_loop.c" in names


def test_the_wheel_from_the_sdist_is_typed_licensed_and_compiled(built):
    _, wheel, _ = built
    names = zipfile.ZipFile(wheel).namelist()
    assert "fastsock/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")
               for n in names), names
    compiled = {n.rsplit("/", 1)[1].split(".")[0] for n in names if n.endswith(".so")}
    assert {"_parser", "_loop", "_conn", "app", "wsgi", "asgi"} <= compiled, compiled
    meta = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {fastsock.__version__}" in meta
    assert "Classifier: Operating System :: POSIX :: Linux" in meta
    assert "Project-URL: Homepage" in meta


def test_the_installed_wheel_serves_the_example(built, tmp_path):
    """The README's first command, from the wheel: the example served by the installed
    package (not the source tree's)."""
    _, _, venv = built
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    code, where = run(str(venv / "bin" / "python"), "-c", "import fastsock; print(fastsock.__file__)",
                      cwd=tmp_path)
    assert code == 0 and where.startswith(str(venv)), where
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(venv / "bin" / "fastsock"), "examples.hello:app", "--port",
                             str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=CLEAN)
    try:
        deadline, answer = time.monotonic() + 20, b""
        while time.monotonic() < deadline and not answer:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    while chunk := c.recv(4096):
                        answer += chunk
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.1)
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nhello"), answer
    finally:
        proc.terminate()
        proc.wait(10)


def test_auditwheel_gives_the_wheel_a_manylinux_tag(built):
    _, wheel, _ = built
    code, out = run(need("auditwheel", "pip install -e '.[dev]'"), "show", str(wheel))
    assert code == 0, out
    assert "manylinux_2_" in out, out


def test_cibuildwheel_builds_for_x86_64_and_aarch64():
    code, out = run(need("cibuildwheel", "pip install -e '.[dev]'"), "--print-build-identifiers",
                    "--platform", "linux")
    assert code == 0, out
    identifiers = set(out.split())
    for arch in ("x86_64", "aarch64"):
        for python in ("cp311", "cp312", "cp313"):
            assert f"{python}-manylinux_{arch}" in identifiers, out


def test_cibuildwheel_compiles_against_openssl_3_and_musl_too():
    """TLS needs OpenSSL 3's headers in the build images: manylinux_2_34 (AlmaLinux 9) has
    them from dnf, musllinux from apk; auditwheel repair then bundles libssl into the wheel."""
    import tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    linux = config["linux"]
    assert linux["manylinux-x86_64-image"] == linux["manylinux-aarch64-image"] == "manylinux_2_34"
    assert linux["before-all"] == "dnf install -y openssl-devel"
    (musl,) = [o for o in config["overrides"] if o["select"] == "*-musllinux*"]
    assert musl["before-all"] == "apk add openssl-dev"


def test_a_platform_without_epoll_gets_one_clear_line():
    code, out = run(sys.executable, "-c", "import sys, sysconfig, setuptools.command.build_ext; "
                    "sys.platform = 'darwin'; sys.argv = ['setup.py', '--version']; "
                    "exec(open('setup.py').read())")
    assert code == 1
    assert out.strip().splitlines() == [
        "fastsock runs on Linux only (its core is built on epoll), not on darwin: run it in a "
        "Linux container, e.g. `docker compose up` from its source tree."]


def test_a_machine_without_a_compiler_gets_one_clear_line(built, tmp_path):
    sdist, _, venv = built
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (src,) = tmp_path.glob("fastsock-*")
    code, log = run(str(venv / "bin" / "pip"), "install", "-q", "setuptools", "Cython==3.3.1")
    assert code == 0, log
    env = dict(CLEAN, CC="/nonexistent/cc")
    code, out = run(str(venv / "bin" / "python"), "setup.py", "-q", "build_ext",
                    "--build-temp", str(tmp_path / "t"), "--build-lib", str(tmp_path / "l"),
                    cwd=src, env=env)
    assert code == 1, out
    last = out.strip().splitlines()[-1]
    assert last.startswith("fastsock compiles its core and found no C compiler ('/nonexistent/cc'"), out
    assert "apt-get install gcc python3-dev" in last and "Traceback" not in out, out


def test_a_missing_tool_fails_its_test_with_one_line_saying_how_to_get_it(tmp_path):
    """Outside CI a test whose tool is not installed says which and how, in one line."""
    bin_dir = tmp_path / "bin"                  # a PATH with this Python and nothing else
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    r = subprocess.run([str(bin_dir / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/system/test_deploy.py::test_cloud_init_schema"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": str(bin_dir)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "cloud-init is missing: apt-get install cloud-init (bash scripts/test.sh installs it)" \
        in r.stdout, r.stdout
    assert "Traceback" not in r.stdout and "def test_cloud_init_schema" not in r.stdout, r.stdout
