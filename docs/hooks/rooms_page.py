"""MkDocs hook: the architecture page's module map, written at build time from the sources, so
the page cannot drift from the code.

For each module of the package: its file, its size, the first sentence of its docstring (what
the room is for) and the fastsock modules it imports or cimports. architecture.md holds the
marker below; this hook replaces it with the tables. Nothing is imported: the sources are read.
"""
from __future__ import annotations

import re
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fastsock"
PAGE = "architecture.md"
MARKER = "<!-- module map: generated from the sources -->"

_DOCSTRING = re.compile(r'^(?:#[^\n]*\n|\s*\n)*(?:"""|\'\'\')(.*?)(?:"""|\'\'\')', re.S)
_IMPORT = re.compile(r"^\s*(?:from\s+(fastsock(?:\.\w+)*)\s+c?import\s+([\w ,()*]+)|"
                     r"c?import\s+(fastsock(?:\.\w+)*))", re.M)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def summary(text: str) -> str:
    """The docstring's first sentence (its first paragraph when that is short), on one line."""
    found = _DOCSTRING.match(text)
    if not found:
        return ""
    first = " ".join(found.group(1).split("\n\n")[0].split())
    end = first.find(". ", 20)
    return first if len(first) <= 160 or end < 0 else first[:end + 1]


def imports(text: str, known: set[str]) -> list[str]:
    """The fastsock modules a source names in its imports (cimports included)."""
    found: set[str] = set()
    for match in _IMPORT.finditer(text):
        base = match.group(1) or match.group(3)
        names = [n.strip(" ()") for n in (match.group(2) or "").split(",")]
        for name in names:                   # `from fastsock import hooks` names a module
            if name and f"{base}.{name}" in known:
                found.add(f"{base}.{name}")
                break
        else:
            found.add(base)
    return sorted(m.removeprefix("fastsock.") for m in found if m in known and m != "fastsock")


def rooms() -> tuple[list[tuple], list[tuple]]:
    """-> (compiled rooms, Python modules), each row (name, file, lines, summary, imports)."""
    sources = sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".pyx", ".py")
                     and "__pycache__" not in p.parts)
    known = {module_name(p) for p in sources}
    compiled, python = [], []
    for path in sources:
        name = module_name(path)
        text = path.read_text()
        deps = set(imports(text, known))
        pxd = path.with_suffix(".pxd")
        if pxd.exists():
            deps |= set(imports(pxd.read_text(), known))
        deps.discard(name.removeprefix("fastsock."))
        row = (name.removeprefix("fastsock."), path.relative_to(ROOT).as_posix(),
               text.count("\n"), summary(text), sorted(deps))
        (compiled if path.suffix == ".pyx" else python).append(row)
    return compiled, python


def table(rows: list[tuple]) -> str:
    lines = ["| file | lines | what it is | imports |", "|---|---:|---|---|"]
    for _name, file, count, about, deps in rows:
        uses = ", ".join(f"`{d}`" for d in deps) or "—"
        lines.append(f"| `{file}` | {count} | {about} | {uses} |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"rooms_page hook: {PAGE} lost its marker {MARKER!r}")
    compiled, python = rooms()
    generated = ("### The compiled rooms\n\n" + table(compiled) +
                 "\n\n### The Python layer\n\n" + table(python) + "\n")
    return markdown.replace(MARKER, generated)


if __name__ == "__main__":         # print the map, to read it without building the site
    for rows in rooms():
        print(table(rows), end="\n\n")
