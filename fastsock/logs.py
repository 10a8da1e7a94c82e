"""The error log: fastsock's and the app's loggers to stderr, as text or one JSON object per line
(--log-format), or exactly as a logging dictConfig file says (--log-config, JSON or YAML, as
uvicorn's --log-config takes it). A record made while a request is handled — on the loop, in an
async handler's task, in a pool thread — carries that request's id and route (a contextvar), so
a traceback joins its access line. The access log is apart (_accesslog.pyx): its own buffered
stdout, written once per tick."""
from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from contextvars import ContextVar
from pathlib import Path

from fastsock._conn import handling

TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(request_tag)s%(message)s"

# the request a task or pool thread works for (set where the runner starts it); on the loop's
# own thread, the connection says which request it is in (_conn.handling)
REQUEST: ContextVar = ContextVar("fastsock_request", default=None)
# route id -> its template, for the records' "route" (the worker fills it at start)
ROUTE_NAMES: dict[int, str] = {}


def current_request():
    """The request the calling code works for, or None."""
    req = REQUEST.get()
    return req if req is not None else handling()


def _tag(record: logging.LogRecord) -> None:
    """record.request_id and record.route: the current request's, else None (an extra= that
    gives either wins)."""
    has_id, has_route = hasattr(record, "request_id"), hasattr(record, "route")
    if has_id and has_route:
        return
    req = current_request()
    if not has_id:
        record.request_id = None if req is None else req.request_id
    if not has_route:
        record.route = None if req is None else ROUTE_NAMES.get(req.route_id)


class RequestContext(logging.Filter):
    """Tags each record with the request it was made for (request_id, route; None outside a
    request) where it is made: in the thread or task of that request. fastsock's handlers have
    it; a --log-config names it as `"()": "fastsock.logs.RequestContext"` in its filters."""

    def filter(self, record: logging.LogRecord) -> bool:
        _tag(record)
        return True


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT: within a request, "[request_id route] " before the message."""

    def __init__(self, fmt: str | None = TEXT_FORMAT, *args, **kwargs):
        super().__init__(fmt, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        _tag(record)
        rid, route = record.request_id, record.route    # type: ignore[attr-defined]
        record.request_tag = "" if rid is None and route is None else \
            f"[{rid or '-'}{'' if route is None else ' ' + str(route)}] "
        return super().format(record)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, the request's request_id
    and route when it was made for one, and the exception's traceback when there is one.
    Usable from a dictConfig file:
    `"formatters": {"json": {"()": "fastsock.logs.JSONFormatter"}}`."""

    def format(self, record: logging.LogRecord) -> str:
        _tag(record)
        entry = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.request_id is not None:      # type: ignore[attr-defined]
            entry["request_id"] = record.request_id     # type: ignore[attr-defined]
        if record.route is not None:           # type: ignore[attr-defined]
            entry["route"] = record.route               # type: ignore[attr-defined]
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


class _Stderr(logging.StreamHandler):
    """fastsock's handler (told apart from one the app put on the root logger itself)."""


def configure(level: str, fmt: str = "text", config_file: str = "") -> None:
    """fastsock's handler on the root logger at --log-level, as uvicorn's and gunicorn's users
    expect of the app's own loggers: `logging.getLogger("myapp").info(...)` comes out in the
    same format, its level kept. Root is left as it is when the app configured it (a handler of
    its own) or a dictConfig file is given: the file is applied after fastsock's own loggers
    are set up, and has the last word (its level, handlers and formatters win)."""
    handler = _Stderr(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestContext())
    own = logging.getLogger("fastsock")
    own.setLevel(level.upper())
    root = logging.getLogger()
    if config_file or any(not isinstance(h, _Stderr) for h in root.handlers):
        own.handlers[:] = [handler]
        own.propagate = False
    else:
        root.handlers[:] = [handler]
        root.setLevel(level.upper())
        own.handlers[:] = []
        own.propagate = True
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
