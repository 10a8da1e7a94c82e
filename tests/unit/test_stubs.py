"""The compiled core's habits, as tests: stubtest holds each .pyi to the module it types (every
fastsock/_*.pyx is one, so a new one is covered as it comes), and cython-lint checks the .pyx
and .pxd sources; each configured in pyproject.toml. Both are in the [dev] extra: a missing one
fails here, it is not skipped. Stubtest imports the compiled modules: build in place first."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

# the repository's root, wherever under tests/ this file is kept
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ALLOWLIST = Path(__file__).with_name("stubtest-allowlist.txt")
COMPILED = sorted(f"fastsock.{p.stem}" for p in (ROOT / "fastsock").glob("_*.pyx"))


def _need(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{package} is not installed: pip install -e '.[dev]' (pyproject.toml) has it")


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    # cython-lint runs pycodestyle by name: the venv's bin/ first on PATH, activated or not
    env = dict(os.environ, PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                 os.environ.get("PATH", "")]))
    # `python -m` from ROOT imports this checkout's fastsock; a PYTHONPATH would also change
    # what mypy's build sees (stubtest then stops on pyproject's yaml section as unused)
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_compiled_module_has_its_stub() -> None:
    assert COMPILED, "no fastsock/_*.pyx found"
    missing = [m for m in COMPILED if not (ROOT / "fastsock" / f"{m[9:]}.pyi").exists()]
    assert not missing, f"compiled modules without a .pyi: {missing}"


def test_the_stubs_say_what_the_compiled_modules_have() -> None:
    _need("mypy", "mypy")
    run = _run(["-m", "mypy.stubtest", *COMPILED, "--mypy-config-file", "pyproject.toml",
                "--ignore-disjoint-bases", "--allowlist", str(ALLOWLIST)])
    assert run.returncode == 0, (
        f"stubtest found a .pyi that differs from its module (allowlist: {ALLOWLIST.name}, "
        f"Cython's own names only):\n{run.stdout}{run.stderr}")


def test_the_compiled_core_passes_cython_lint() -> None:
    _need("cython_lint", "cython-lint")
    _need("pycodestyle", "pycodestyle")
    sources = sorted(str(p.relative_to(ROOT)) for pattern in ("*.pyx", "*.pxd")
                     for p in (ROOT / "fastsock").glob(pattern))
    run = _run(["-c", "import sys; from cython_lint.cython_lint import main; sys.exit(main())",
                *sources])
    assert run.returncode == 0, (
        f"cython-lint found something (config: pyproject.toml [tool.cython-lint]):\n"
        f"{run.stdout}{run.stderr}")
