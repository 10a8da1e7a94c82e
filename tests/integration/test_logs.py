"""The error log an operator routes: --log-format json (one object per line, from the master and
every worker, with the exception), --log-config (a dictConfig file, JSON or YAML), and a bad
file refused at start in one line."""
import json
import subprocess
import sys

import pytest

from tests.support.servers import ROOT, children, ready
from tests.support.waiting import wait_until


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_error_log_is_one_object_per_line_with_the_exception(serve):
    server = serve("--log-format", "json", "--workers", "2")
    wait_until(lambda: ready(server) == 200, what="readiness", server=server)
    assert server.get("/boom").status_code == 500
    wait_until(lambda: "handler exploded" in server.log(), what="the error line", server=server)
    entries = json_lines(server.log())         # every line parses
    for entry in entries:
        assert {"time", "level", "logger", "pid", "message"} <= set(entry), entry
        assert entry["time"].endswith("Z") and entry["logger"].startswith("fastsock")
    failed = [e for e in entries if "exception" in e]
    assert len(failed) == 1, entries
    assert failed[0]["level"] == "ERROR" and failed[0]["logger"] == "fastsock.error"
    assert "Traceback" in failed[0]["exception"] and \
        "RuntimeError: handler exploded" in failed[0]["exception"]
    assert failed[0]["pid"] in children(server.proc.pid)         # the worker that served it
    assert any(e["pid"] == server.proc.pid and "serving on" in e["message"] for e in entries)


def test_access_log_on_follows_the_log_format(serve):
    server = serve("--log-format", "json", "--access-log", "on")
    assert server.get("/").status_code == 200
    wait_until(lambda: server.stdout().strip(), what="the access line", server=server)
    (line,) = json_lines(server.stdout())
    assert line["path"] == "/" and line["status"] == 200


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_log_config_routes_the_error_log_as_the_file_says(serve, tmp_path, kind):
    logfile = tmp_path / "errors.log"
    settings = {
        "version": 1,
        "formatters": {"plain": {"format": "%(levelname)s|%(name)s|%(message)s"},
                       "json": {"()": "fastsock.logs.JSONFormatter"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": str(logfile),
                              "formatter": "json" if kind == "yaml" else "plain"}},
        "loggers": {"fastsock": {"handlers": ["file"], "level": "WARNING",
                                 "propagate": False}},
    }
    config = tmp_path / f"logging.{kind}"
    if kind == "json":
        config.write_text(json.dumps(settings))
    else:
        import yaml
        config.write_text(yaml.safe_dump(settings))
    server = serve("--log-config", str(config))
    assert server.get("/boom").status_code == 500
    wait_until(lambda: logfile.exists() and "handler exploded" in logfile.read_text(),
               what="the error in the file", server=server)
    text = logfile.read_text()
    assert "serving on" not in text                   # INFO: below the file's level
    if kind == "json":
        assert "ERROR|fastsock.error|" in text
    else:
        (entry,) = json_lines(text)
        assert entry["level"] == "ERROR" and "handler exploded" in entry["exception"]
    assert "handler exploded" not in server.log()         # the file replaced stderr


@pytest.mark.parametrize("content, says", [
    (None, "must be a readable file"),
    ("{not json", "not valid JSON"),
    ('{"handlers": {}}', "not a logging dictConfig"),
    ('{"version": 1, "handlers": {"h": {"class": "no.such.Handler"}}}', "Unable to configure"),
])
def test_a_bad_log_config_is_refused_at_start_in_one_line(tmp_path, content, says):
    config = tmp_path / "logging.json"
    if content is not None:
        config.write_text(content)
    r = subprocess.run([sys.executable, "-m", "fastsock", "tests.apps.native:app", "--port", "0",
                        "--log-config", str(config)], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)              # a hang guard: it must exit, not serve
    assert r.returncode == 2, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("fastsock: error: --log-config ") and says in line, line


def test_a_bad_log_format_is_refused():
    r = subprocess.run([sys.executable, "-m", "fastsock", "tests.apps.native:app", "--log-format",
                        "xml"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == "fastsock: error: --log-format must be text or json, not 'xml'"
