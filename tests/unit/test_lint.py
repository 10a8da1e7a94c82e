"""The Python layer's habits, as tests: `ruff check` (lint only: the layout is left as it is)
and `mypy`, each configured in pyproject.toml, run from the repository's root. Both are in the
[dev] extra: a missing one fails here, it is not skipped."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

# the repository's root, wherever under tests/ this file is kept
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


@pytest.mark.parametrize("tool, args", [
    ("ruff", ["check", "--no-cache"]),
    ("mypy", ["--no-incremental", "--cache-dir", "/dev/null"]),
])
def test_the_python_layer_passes(tool: str, args: list[str]) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: pip install -e '.[dev]' (pyproject.toml) has it")
    run = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (
        f"{tool} {' '.join(args)} found something (config: pyproject.toml):\n"
        f"{run.stdout}{run.stderr}")
