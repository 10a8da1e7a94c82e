"""The documentation: the MkDocs site under docs/ builds with `mkdocs build --strict`; its
configuration page, written from the option table at build time, names every option with its
variable, default and help; the README stays a front door (at most 200 lines); every relative
link in the README and the pages points at a file that exists; and the pages say what the
software is, not how it got there (that is what git log is for)."""
import dataclasses
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastsock.config import Config, env_name, flag_name
from tests.support.tools import SETUP

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.md"))

# words of a changelog, not of a manual
HISTORY = ("this session", "that session", "the same session", "an earlier session",
           "an earlier run", "an earlier commit", "the commit before", "before that change",
           "before the change", "before the fix", "before its fix",
           "second cut", "third cut", "used to", "now/before", "before/after",
           "fastsock-before")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site, built with --strict (any warning, a broken link or anchor among them, fails)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail(f"mkdocs is missing: pip install 'mkdocs>=1.6', or pip install -e '.[dev]' "
                    f"({SETUP})", pytrace=False)
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                        str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"mkdocs build --strict failed:\n{r.stdout}{r.stderr}"
    return out


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def test_the_site_builds_strict_with_every_page(site):
    for page in PAGES:
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.exists(), f"{page.name} was not built"
    assert (site / "scale.png").exists()
    assert not (site / "hooks").exists(), "the build hook was published as a page's file"


def test_the_configuration_page_names_every_option_with_its_default(site):
    page = (site / "configuration" / "index.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    for f in dataclasses.fields(Config):
        anchor = f'id="opt-{f.name.replace("_", "-")}"'
        found = [row for row in rows if anchor in row]
        assert len(found) == 1, f"{f.name}: {len(found)} rows on the configuration page"
        option, _type, default, accepts, what = [
            text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", found[0], re.S)]
        assert env_name(f.name) in option, (f.name, option)
        if not f.metadata.get("positional"):
            assert flag_name(f.name) in option, (f.name, option)
        if isinstance(f.default, bool):
            expected = "on" if f.default else "off"
        elif f.default == "":
            expected = "none"
        elif isinstance(f.default, float):
            expected = f"{f.default:g}"
        else:
            expected = str(f.default)
        assert default == expected, (f.name, default, expected)
        assert " ".join(f.metadata["help"].split()) in " ".join(what.split()), (f.name, what)
        assert accepts, f.name
        if "choices" in f.metadata:
            assert all(c in accepts for c in f.metadata["choices"]), (f.name, accepts)


def test_the_architecture_page_maps_every_module_with_its_size(site):
    page = (site / "architecture" / "index.html").read_text()
    rows = {text_of(cells[0]): text_of(cells[1])
            for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
                          for row in re.findall(r"<tr>(.*?)</tr>", page, re.S))
            if len(cells) == 4}
    package = ROOT / "fastsock"
    sources = [p for p in package.rglob("*") if p.suffix in (".pyx", ".py")
               and "__pycache__" not in p.parts]
    for source in sources:
        name = source.relative_to(ROOT).as_posix()
        assert name in rows, f"{name} is missing from the architecture page's module map"
        assert rows[name] == str(source.read_text().count("\n")), (name, rows[name])


def test_the_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: the rest belongs in docs/"
    text = "\n".join(lines)
    # the two commands, as tests/system/test_package.py and scripts/test.sh take them
    assert "pip install . && fastsock examples.hello:app" in text
    assert "bash scripts/test.sh" in text


def links(path: Path):
    """(target, line) of each Markdown link or image of a file, outside code."""
    text = re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), path.read_text(),
                  flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    for m in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
        yield m.group(1), text.count("\n", 0, m.start()) + 1


def slug(heading: str) -> str:
    """A heading's anchor, as MkDocs (and GitHub, for these headings) make it."""
    heading = re.sub(r"[`*]", "", heading).strip().lower()
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", heading))


def anchors(page: Path) -> set:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_that_exists(path):
    for target, line in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue                            # a URL, or a place on the same page
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve()
        assert where.exists(), f"{path.name}:{line}: {target} points at no file"
        if anchor and path == README and where.suffix == ".md":
            # the site's own links are checked by mkdocs --strict; the README's here
            assert anchor in anchors(where) or f'id="{anchor}"' in where.read_text(), \
                f"{path.name}:{line}: {target}: no such heading in {file}"


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.name)
def test_the_pages_say_what_is_not_how_it_got_there(path):
    text = " ".join(path.read_text().lower().split())
    found = [word for word in HISTORY if word in text]
    assert not found, f"{path.name} tells history ({', '.join(found)}): that is git log's job"
