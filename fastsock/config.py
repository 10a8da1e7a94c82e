"""One typed Config, built from command-line flags and FASTSOCK_* environment variables.

Each field is one option: `--header-timeout` on the command line, `FASTSOCK_HEADER_TIMEOUT` in
the environment (a flag wins over the variable, the variable over the default).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class Config:
    app: str = _opt("", "the application, as MODULE:ATTRIBUTE", positional=True)
    host: str = _opt("0.0.0.0", "address to listen on")
    port: int = _opt(8000, "TCP port to listen on")
    uds: str = _opt("", "serve on this Unix socket path instead of host:port")
    workers: str = _opt(
        "auto", "worker processes: a number, or auto (the cgroup CPU quota and affinity)")
    backlog: int = _opt(2048, "listen backlog")
    accept: str = _opt(
        "exclusive", "how workers share new connections: exclusive (one socket; a connection "
        "wakes one idle worker) or reuseport (a SO_REUSEPORT socket per worker, spread by the "
        "kernel's hash; see the README for the trade-off)")
    max_requests: int = _opt(0, "recycle a worker after this many requests (0: never)")
    max_requests_jitter: int = _opt(
        0, "add 0..N to --max-requests per worker, so workers do not recycle together")
    interface: str = _opt(
        "auto", "what the application is: auto (detected), fastsock (an App), wsgi (PEP 3333) "
        "or asgi (ASGI 3)")
    root_path: str = _opt(
        "", "the path prefix the app is mounted under behind a proxy (ASGI root_path, WSGI "
        "SCRIPT_NAME)")
    lifespan: str = _opt(
        "auto", "ASGI lifespan events per worker: auto (used when the app takes them), on "
        "(required: the worker does not start without) or off")
    preload: bool = _opt(
        True, "import the app once, in the master, before forking the workers (off: each "
        "worker imports it after the fork, for apps that must not be imported before it)")
    threads: int = _opt(
        32, "threads per worker for handlers that run in the thread pool (0: no pool)")
    run_sync: str = _opt(
        "inline", "where plain (non-async) handlers run by default: inline (on the worker's "
        "loop, fastest; a blocking one stalls the worker) or thread (in the pool)")
    thread_backlog: int = _opt(
        1024, "requests that may queue for a busy thread pool; past it, 503 with Retry-After")
    handler_timeout: float = _opt(
        0.0, "seconds an async or thread-pool handler may take before a 504 (0: no limit); a "
        "route's own timeout wins")
    timeout: float = _opt(
        30.0, "watchdog: a worker whose loop has not turned for this many seconds (a handler "
        "blocking it) has its stack logged and is replaced (0: off)")
    shutdown_delay: float = _opt(
        0.0, "on SIGTERM, seconds to keep accepting (readiness already 503) before draining")
    graceful_timeout: float = _opt(
        30.0, "seconds in-flight requests get to finish once draining starts")
    header_timeout: float = _opt(
        10.0, "seconds to receive a request head, from accept or from its first byte")
    keepalive_timeout: float = _opt(
        75.0, "seconds an idle keep-alive connection is kept (above AWS ALB's 60 s)")
    body_timeout: float = _opt(
        30.0, "seconds a request body may take before --min-body-rate applies to it")
    min_body_rate: float = _opt(
        240.0, "bytes per second a request body must average once --body-timeout has "
        "passed (0: the body must be whole by then)")
    max_request_line: int = _opt(8192, "longest request line in bytes (414 past it)")
    max_header_bytes: int = _opt(65536, "largest header block in bytes (431 past it)")
    max_header_count: int = _opt(100, "most header fields in a request (431 past it)")
    max_body_size: int = _opt(1048576, "largest request body in bytes (413 past it)")
    max_chunk_ext: int = _opt(1024, "longest chunk extension in bytes (400 past it)")
    output_high_water: int = _opt(
        1048576, "stop reading a connection while this many response bytes wait to be sent")
    metrics: bool = _opt(True, "count requests and serve Prometheus metrics")
    metrics_path: str = _opt("/metrics", "path of the Prometheus metrics")
    metrics_port: int = _opt(
        0, "serve the metrics on this port only (0: on the main port)")
    healthz_path: str = _opt("/healthz", "liveness path, answered by the server ('' = off)")
    readyz_path: str = _opt("/readyz", "readiness path, answered by the server ('' = off)")
    access_log: str = _opt("off", "access log to stdout: off, text, json, or on (in --log-format)")
    log_health: bool = _opt(False, "also write health checks to the access log")
    log_level: str = _opt("info", "error log (stderr) level: debug, info, warning, error")
    log_format: str = _opt("text", "error log (stderr) format: text, or json (one object a line)")
    log_config: str = _opt(
        "", "a logging dictConfig file (.json, .yaml) applied after the defaults: its handlers, "
        "formatters and levels win")
    forwarded_allow_ips: str = _opt(
        "", "comma-separated addresses/CIDRs of proxies trusted for X-Forwarded-For/Forwarded, "
        "or * to trust every peer")
    proxy_protocol: bool = _opt(
        False, "expect a PROXY protocol v1/v2 header on every connection (AWS NLB)")

    def limits(self) -> dict:
        """The fields a worker's loop needs, as its typed Limits struct takes them."""
        names = ("header_timeout", "keepalive_timeout", "body_timeout", "min_body_rate",
                 "graceful_timeout",
                 "output_high_water", "max_request_line", "max_header_bytes",
                 "max_header_count", "max_body_size", "max_chunk_ext", "proxy_protocol")
        return {**{name: getattr(self, name) for name in names},
                "count_requests": self.metrics}

    def __post_init__(self):
        if self.workers != "auto" and not (self.workers.isdigit() and int(self.workers) > 0):
            raise ValueError(f"--workers must be a positive number or auto, not {self.workers!r}")
        if self.accept not in ("exclusive", "reuseport"):
            raise ValueError(f"--accept must be exclusive or reuseport, not {self.accept!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"--log-format must be text or json, not {self.log_format!r}")
        if self.access_log == "on":
            object.__setattr__(self, "access_log", self.log_format)
        if self.access_log not in ("off", "text", "json"):
            raise ValueError(
                f"--access-log must be off, on, text or json, not {self.access_log!r}")
        if self.interface not in ("auto", "fastsock", "wsgi", "asgi"):
            raise ValueError(f"--interface must be auto, fastsock, wsgi or asgi, not "
                             f"{self.interface!r}")
        if self.lifespan not in ("auto", "on", "off"):
            raise ValueError(f"--lifespan must be auto, on or off, not {self.lifespan!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(f"--root-path must start with '/' and not end with one, not "
                             f"{self.root_path!r}")
        if self.run_sync not in ("inline", "thread"):
            raise ValueError(f"--run-sync must be inline or thread, not {self.run_sync!r}")
        if self.run_sync == "thread" and self.threads == 0:
            raise ValueError("--run-sync thread needs a thread pool (--threads above 0)")
        for name in ("threads", "thread_backlog", "handler_timeout", "timeout", "shutdown_delay", "max_requests", "max_requests_jitter", "metrics_port"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("healthz_path", "readyz_path", "metrics_path"):
            if getattr(self, name) and not getattr(self, name).startswith("/"):
                raise ValueError(f"{name} must start with '/'")
        for name in ("header_timeout", "keepalive_timeout", "body_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if 0 < self.timeout < 2:      # a loop turns at least once a second when idle
            raise ValueError("timeout must be 0 (off) or at least 2 seconds")
        if self.graceful_timeout <= 0:
            raise ValueError("graceful_timeout must be positive")
        for name in ("max_request_line", "max_header_bytes", "max_header_count",
                     "max_body_size", "max_chunk_ext", "output_high_water", "backlog"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.forwarded_allow_ips:
            from fastsock.proxy import Proxies
            Proxies(self.forwarded_allow_ips)       # ValueError names a bad entry
        if self.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ValueError(f"unknown log level {self.log_level!r}")


def env_name(name: str) -> str:
    return "FASTSOCK_" + name.upper()


_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastsock",
        description="Serve a fastsock App, a WSGI app or an ASGI app. Every option can also be "
                    "set by the environment variable shown beside it.",
    )
    from fastsock import __version__
    parser.add_argument("--version", action="version", version=f"fastsock {__version__}")
    for f in dataclasses.fields(Config):
        kind = _TYPES[f.type]
        env = env_name(f.name)
        help_text = f"{f.metadata['help']} [env {env}; default {f.default!r}]"
        if f.metadata.get("positional"):
            parser.add_argument(f.name, nargs="?", default=None, help=help_text)
        elif kind is bool:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind,
                                default=None, help=help_text)
    return parser


def from_args(argv: list[str] | None = None, environ: dict | None = None) -> Config:
    """Flags, then FASTSOCK_* variables, then defaults. Raises ValueError on a bad value."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values = {}
    for f in dataclasses.fields(Config):
        value = getattr(args, f.name)
        if value is None and env_name(f.name) in environ:
            raw = environ[env_name(f.name)]
            kind = _TYPES[f.type]
            if kind is bool:
                kind = _parse_bool
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{env_name(f.name)}={raw!r} is not a valid {f.type}")
        if value is not None:
            values[f.name] = value
    return Config(**values)
