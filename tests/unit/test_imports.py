"""fastsock's modules import one another without a cycle — imports inside functions counted
too: a cycle makes what a module holds depend on which one was imported first — each imports
on its own, and importing fastsock leaves other libraries as they were."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import fastsock

PACKAGE = Path(fastsock.__file__).resolve().parent
ROOT = PACKAGE.parent
# a .pyx's run-time imports (cimport is compile-time: not an import)
PYX_IMPORT = re.compile(r"^\s*(?:from\s+(fastsock[\w.]*)\s+import[ \t]+([\w \t,]+)|"
                        r"import\s+(fastsock[\w.]*))", re.M)


def modules() -> dict[str, Path]:
    """module name -> source, for every .py and .pyx of the package."""
    found = {}
    for path in sorted([*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")]):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_by(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The fastsock modules `name` imports, anywhere in it: `from fastsock import x` is the
    module x when there is one, else the package itself."""
    def targets(base: str, names: list[str]) -> list[str]:
        return [f"{base}.{n}" if f"{base}.{n}" in known else base for n in names]

    found = []
    if path.suffix == ".pyx":
        for m in PYX_IMPORT.finditer(path.read_text()):
            if m.group(3):
                found.append(m.group(3))
            else:
                found += targets(m.group(1), [n.strip() for n in m.group(2).split(",")])
    else:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:                                  # relative: from its package
                    up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{up}.{base}" if base else up
                found += targets(base, [alias.name for alias in node.names])
    return {target for target in found if target in known and target != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None."""
    done, path = set(), []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_no_module_imports_itself_through_others():
    known = modules()
    graph = {name: imported_by(name, path, known) for name, path in known.items()}
    assert sum(map(len, graph.values())) > len(graph), "the graph has hardly any edges"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_on_its_own():
    names = [name for name in modules() if name != "fastsock.__main__"]     # that one serves
    procs = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], cwd=ROOT,
                                    stderr=subprocess.PIPE) for name in names}
    failed = {name: p.communicate()[1].decode()[-600:] for name, p in procs.items()}
    assert {name: err for name, err in failed.items() if procs[name].returncode} == {}


def test_importing_fastsock_leaves_prometheus_client_as_it_was():
    """Its value class is fastsock's only while a server runs (appmetrics.install)."""
    code = ("import fastsock, fastsock.app, fastsock.testing\n"
            "from prometheus_client import values\n"
            "assert values.ValueClass.__module__ == 'prometheus_client.values', "
            "values.ValueClass\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
