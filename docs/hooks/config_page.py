"""MkDocs hook: the configuration page's option tables, written at build time from the option
table that `Config` and the command line are built from (fastsock/config.py), so the page
cannot drift from the code.

configuration.md holds the marker below; this hook replaces it with one table per group of
options. Every field of `Config` is listed: a field no group names lands under "Other options".
The config module is loaded from its file, so building the site needs no compiled core.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PY = ROOT / "fastsock" / "config.py"
PAGE = "configuration.md"
MARKER = "<!-- options: generated from the option table -->"

# Groups of the page, in order; the fields of each are listed in this order. A field that is
# in no group still gets a row (under "Other options"), so a new option can never be missing.
GROUPS = [
    ("The app and where it listens",
     ["app", "host", "port", "uds", "backlog", "interface", "root_path", "lifespan", "preload",
      "reload"]),
    ("Workers and where handlers run",
     ["workers", "accept", "max_requests", "max_requests_jitter", "threads", "run_sync",
      "thread_backlog", "handler_timeout", "timeout"]),
    ("Timeouts and shutdown",
     ["header_timeout", "keepalive_timeout", "body_timeout", "min_body_rate", "shutdown_delay",
      "graceful_timeout"]),
    ("Request limits and back-pressure",
     ["max_request_line", "max_header_bytes", "max_header_count", "max_body_size",
      "max_chunk_ext", "output_high_water"]),
    ("Health and metrics",
     ["healthz_path", "readyz_path", "metrics", "metrics_path", "metrics_port"]),
    ("Logs", ["access_log", "log_health", "log_level", "log_format", "log_config"]),
    ("Behind proxies", ["forwarded_allow_ips", "proxy_protocol"]),
]


def load_config_module():
    """fastsock/config.py as a module of its own (not through the fastsock package, whose
    __init__ imports the compiled core)."""
    name = "_fastsock_config_for_docs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CONFIG_PY)
    if spec is None or spec.loader is None:
        raise PluginError(f"config_page hook: cannot load {CONFIG_PY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module          # dataclasses looks the module up while it is built
    spec.loader.exec_module(module)
    return module


def number(value) -> str:
    """A bound as the page shows it."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if value >= 2 ** 20 and (value + 1) & value == 0:          # 2^k - 1
            return f"2^{(value + 1).bit_length() - 1}−1"
        if value >= 10 ** 6:
            return f"{value:,}"
        return str(value)
    return f"{value:g}"


def default_text(f: dataclasses.Field) -> str:
    """The default as the page shows it (tests/unit/test_docs.py reads it back)."""
    value = f.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "":
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def type_text(f: dataclasses.Field) -> str:
    m = f.metadata
    if f.type == "float":
        return f"number ({m.get('unit', 'seconds')})"
    if f.type == "int":
        return "whole number"
    if f.type == "bool":
        return "on/off"
    if "words" in m:
        return "word or whole number"
    return "text"


def accepts_text(f: dataclasses.Field) -> str:
    """What the option's checks accept, from its entry in the table."""
    m = f.metadata
    if f.type == "bool":
        return "flag and `--no-` flag; variable: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`"
    if f.type == "str" and "words" in m:
        words = ", ".join(f"`{w}`" for w in m["words"])
        return f"{words}, or a whole number from {number(m['low'])} to {number(m['high'])}"
    if f.type == "str":
        if "choices" in m:
            *most, last = m["choices"]
            text = ", ".join(f"`{c}`" for c in most) + f" or `{last}`"
            return text + (" (any case)" if m.get("any_case") else "")
        if m.get("path"):
            return "a path starting with `/`, or empty"
        return "text"
    off = f"`{number(m['off'])}` (off), or " if "off" in m else ""
    if f.type == "float":
        unit = m.get("unit", "seconds")
        least = ("above 0" if m.get("above") == 0 else f"at least {number(m['low'])}")
        year = " (a year)" if m["high"] == 365 * 24 * 3600 else ""
        return f"{off}{least} and at most {number(m['high'])} {unit}{year}; finite"
    return f"{off}{number(m['low'])} to {number(m['high'])}"


def cell(text: str) -> str:
    return (text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
            .replace("\n", " "))


def row(cfg, f: dataclasses.Field) -> str:
    anchor = f'<a id="opt-{f.name.replace("_", "-")}"></a>'
    env = "<br>".join(f"`{name}`" for name in cfg.variables(f))     # the first set wins
    if f.metadata.get("positional"):
        name = "`MODULE:ATTR` (the argument)"
    elif f.type == "bool":
        flag = cfg.flag_name(f.name)
        name = f"`{flag}` / `--no-{flag[2:]}`"
    else:
        name = f"`{cfg.flag_name(f.name)}`"
    default = default_text(f)
    default = default if default == "none" else f"`{default}`"
    return (f"| {anchor}{name}<br>{env} | {type_text(f)} | {default} | {cell(accepts_text(f))} "
            f"| {cell(f.metadata['help'])} |")


def tables() -> str:
    cfg = load_config_module()
    fields = {f.name: f for f in dataclasses.fields(cfg.Config)}
    named = [name for _, names in GROUPS for name in names]
    unknown = [name for name in named if name not in fields]
    if unknown:
        raise PluginError(f"config_page hook: GROUPS names options Config does not have: "
                          f"{', '.join(unknown)}")
    groups = GROUPS + [("Other options", [n for n in fields if n not in named])]
    out = []
    for title, names in groups:
        if not names:
            continue
        out += [f"## {title}", "",
                "| option | type | default | accepts | what |",
                "|---|---|---|---|---|"]
        out += [row(cfg, fields[name]) for name in names]
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files):
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"config_page hook: {PAGE} has lost its marker {MARKER!r}")
    return markdown.replace(MARKER, tables())
