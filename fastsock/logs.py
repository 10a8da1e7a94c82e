"""The error log: the `fastsock` loggers to stderr, as text or one JSON object per line
(--log-format), or exactly as a logging dictConfig file says (--log-config, JSON or YAML, as
uvicorn's --log-config takes it). The access log is apart (accesslog.py): its own buffered
stdout, written once per tick."""
from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from pathlib import Path

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(message)s"


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, and the exception's
    traceback when there is one. Usable from a dictConfig file:
    `"formatters": {"json": {"()": "fastsock.logs.JSONFormatter"}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

    @staticmethod
    def _time(record: logging.LogRecord) -> str:
        """ISO 8601 in UTC, to the millisecond: what log pipelines parse without a pattern."""
        seconds = int(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + \
            f".{int((record.created - seconds) * 1000):03d}Z"


def configure(level: str, fmt: str = "text", config_file: str = "") -> None:
    """The fastsock loggers' handler; a dictConfig file, when given, is applied after it and
    has the last word (its level, handlers and formatters win)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger("fastsock")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    if config_file:
        settings = load_config(config_file)
        try:
            logging.config.dictConfig(settings)
        except (ValueError, TypeError, AttributeError, ImportError) as e:
            raise ValueError(f"--log-config {config_file}: {e}") from None


def load_config(path: str) -> dict:
    """A dictConfig from a .json, .yaml or .yml file; ValueError says what is wrong with it.
    Loggers the file does not name keep working (disable_existing_loggers defaults to False
    here: the server's loggers exist before the file is read)."""
    source = Path(path)
    try:
        text = source.read_text()
    except OSError as e:
        raise ValueError(f"--log-config {path}: {e.strerror}") from None
    if source.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"--log-config {path}: a YAML file needs PyYAML "
                             "(pip install PyYAML), or write it as JSON") from None
        parse, errors, kind = yaml.safe_load, yaml.YAMLError, "YAML"
    else:
        parse, errors, kind = json.loads, ValueError, "JSON"
    try:
        data = parse(text)
    except errors as e:
        raise ValueError(f"--log-config {path}: not valid {kind}: {e}") from None
    if not isinstance(data, dict) or "version" not in data:
        raise ValueError(f"--log-config {path}: not a logging dictConfig (a mapping with "
                         "'version: 1')")
    data.setdefault("disable_existing_loggers", False)
    return data
