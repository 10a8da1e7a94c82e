"""Which build runs: setup.py compiles some .py modules as they are (COMPILED_PY), unless they
were built pure (FASTSOCK_PURE=1: no compiled copy left to shadow them). The test run says which
it expects with the same variable; the core (.pyx) is compiled either way."""
import ast
import importlib
import os

import fastsock._parser
from tests.support.servers import ROOT


def compiled_py() -> tuple[str, ...]:
    """setup.py's COMPILED_PY: the modules, under fastsock, compiled from their .py."""
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED_PY":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py names no COMPILED_PY")


def test_each_module_runs_as_the_build_says():
    pure = os.environ.get("FASTSOCK_PURE") == "1"
    names = compiled_py()
    assert "app" in names and "adapters.wsgi" in names
    for name in names:
        where = importlib.import_module(f"fastsock.{name}").__file__
        assert where.endswith(".py" if pure else ".so"), (where, f"FASTSOCK_PURE={int(pure)}")
    assert fastsock._parser.__file__.endswith(".so")
