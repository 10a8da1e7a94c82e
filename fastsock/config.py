"""One typed Config, built from command-line flags and FASTSOCK_* environment variables.

Each field is one option: `--header-timeout` on the command line, `FASTSOCK_HEADER_TIMEOUT` in
the environment. A flag wins over the variable, the variable over the platforms' convention
(`PORT`, `WEB_CONCURRENCY`: set for whatever runs, where FASTSOCK_* is set for fastsock alone),
and that over the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import ipaddress
import math
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

# Ceilings of the option table. A number past one would be accepted by Python and then fail
# (or turn a timer off) in C after the fork, crash-looping the workers.
SECONDS_MAX = 365 * 24 * 3600   # a year: past any real timeout, far below the loop's NEVER
SIZE_MAX = sys.maxsize // 4     # sizes are Py_ssize_t in C, which adds two of them (request
                                # line + header block; a chunk's size to the body so far)
INT_MAX = 2 ** 31 - 1           # a C int (listen backlog), and the bound for other counts
WORKERS_MAX = 1024              # each takes two shared-memory slots (itself and its rolling
                                # replacement), ~60 KB plus --app-metrics-bytes and an
                                # eventfd each
PORT_MAX = 65535
TIMER_MIN = 0.1                 # seconds: the shortest header, keep-alive or body timeout
UDS_MAX = 107                   # bytes of a Unix socket path: sun_path holds 108 with its NUL
PATH_CHARS = re.compile(r"[!-~]*")     # printable ASCII without space: a request target's
# a host name as RFC 1123 spells one: dot-separated labels of letters, digits and inner hyphens
# Mozilla's "intermediate" TLS 1.2 ciphers (ssl-config.mozilla.org, guidelines 5.7)
MOZILLA_INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")
HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _opt(default, help: str, **kw):
    """One option. Its checks, read by Config._check: numbers are within low..high (a float
    also above `above` when given), or exactly `off`; a str is one of `choices`, or with
    low/high, one of `words` or a whole number in range (--workers)."""
    return field(default=default, metadata={"help": help, **kw})


def _seconds(default, help: str, low=None, **kw):
    """A timeout or delay: finite, at most SECONDS_MAX; above 0, or at least `low`."""
    bounds = {"low": 0, "above": 0} if low is None else {"low": low}
    return _opt(default, help, high=SECONDS_MAX, **bounds, **kw)


def _count(default, help: str, low=1, high=INT_MAX, **kw):
    return _opt(default, help, low=low, high=high, **kw)


@dataclass(frozen=True)
class Config:
    app: str = _opt("", "the application, as MODULE:ATTRIBUTE", positional=True)
    host: str = _opt("0.0.0.0", "address to listen on")
    port: int = _count(8000, "TCP port to listen on (0: any free one)", low=0, high=PORT_MAX,
                       convention="PORT")
    uds: str = _opt("", "serve on this Unix socket path instead of host:port")
    workers: str = _count(
        "auto", "worker processes: a number, or auto (the cgroup CPU quota and affinity; "
        "without a quota, at most 8)", high=WORKERS_MAX, words=("auto",),
        convention="WEB_CONCURRENCY")
    backlog: int = _count(2048, "listen backlog")
    accept: str = _opt(
        "exclusive", "how workers share new connections: exclusive (one socket; a connection "
        "wakes one idle worker) or reuseport (a SO_REUSEPORT socket per worker, spread by the "
        "kernel's hash; the operations docs weigh the two)", choices=("exclusive", "reuseport"))
    max_requests: int = _count(0, "recycle a worker after this many requests (0: never)", low=0)
    max_requests_jitter: int = _count(
        0, "add 0..N to --max-requests per worker, so workers do not recycle together", low=0)
    interface: str = _opt(
        "auto", "what the application is: auto (detected), fastsock (an App), wsgi (PEP 3333) "
        "or asgi (ASGI 3)", choices=("auto", "fastsock", "wsgi", "asgi"))
    root_path: str = _opt(
        "", "the path prefix the app is mounted under behind a proxy (ASGI root_path, WSGI "
        "SCRIPT_NAME)")
    lifespan: str = _opt(
        "auto", "ASGI lifespan events per worker: auto (used when the app takes them), on "
        "(required: the worker does not start without) or off", choices=("auto", "on", "off"))
    preload: bool = _opt(
        True, "import the app once, in the master, before forking the workers (off: each "
        "worker imports it after the fork, for apps that must not be imported before it)")
    reload: bool = _opt(
        False, "development: restart the worker when a .py file under the app's directory "
        "changes (one worker, importing the app itself; needs watchfiles: pip install "
        "'fastsock[reload]')")
    threads: int = _count(
        32, "threads per worker for handlers that run in the thread pool (0: no pool)", low=0)
    run_sync: str = _opt(
        "inline", "where plain (non-async) handlers run by default: inline (on the worker's "
        "loop, fastest; a blocking one stalls the worker) or thread (in the pool)",
        choices=("inline", "thread"))
    thread_backlog: int = _count(
        1024, "requests that may queue for a busy thread pool; past it, 503 with Retry-After",
        low=0)
    limit_concurrency: int = _count(
        0, "requests each worker has in the app at once (handlers running, responses "
        "streaming); past it, 503 with Retry-After, counted in "
        "fastsock_requests_refused_total (0: no limit; health and metrics paths are never "
        "refused)", low=0, off=0)
    handler_timeout: float = _seconds(
        0.0, "seconds an async or thread-pool handler may take before a 504 (0: no limit); a "
        "route's own timeout wins", off=0)
    timeout: float = _seconds(
        30.0, "watchdog: a worker whose loop has not turned for this many seconds (a handler "
        "blocking it) has its stack logged and is replaced (0: off)",
        off=0, low=2)           # a loop turns at least once a second when idle
    shutdown_delay: float = _seconds(
        0.0, "on SIGTERM, seconds to keep accepting (readiness already 503) before draining",
        low=0)
    graceful_timeout: float = _seconds(
        30.0, "seconds in-flight requests get to finish once draining starts")
    # the loop ticks at a quarter of the shortest of these three: below TIMER_MIN it would spin
    header_timeout: float = _seconds(
        10.0, "seconds to receive a request head, from accept or from its first byte",
        low=TIMER_MIN)
    keepalive_timeout: float = _seconds(
        75.0, "seconds an idle keep-alive connection is kept (above AWS ALB's 60 s)",
        low=TIMER_MIN)
    body_timeout: float = _seconds(
        30.0, "seconds a request body may take before --min-body-rate applies to it",
        low=TIMER_MIN)
    min_body_rate: float = _opt(
        240.0, "bytes per second a request body must average once --body-timeout has "
        "passed (0: the body must be whole by then)", off=0, low=1, high=1e12,
        unit="bytes per second")
    max_request_line: int = _count(8192, "longest request line in bytes (414 past it)",
                                   high=SIZE_MAX)
    max_header_bytes: int = _count(65536, "largest header block in bytes (431 past it)",
                                   high=SIZE_MAX)
    max_header_count: int = _count(100, "most header fields in a request (431 past it)",
                                   high=SIZE_MAX)
    max_body_size: int = _count(1048576, "largest request body in bytes (413 past it)",
                                high=SIZE_MAX)
    max_chunk_ext: int = _count(1024, "longest chunk extension in bytes (400 past it)",
                                high=SIZE_MAX)
    output_high_water: int = _count(
        1048576, "stop reading a connection while this many response bytes wait to be sent",
        high=SIZE_MAX)
    metrics: bool = _opt(True, "count requests and serve Prometheus metrics")
    metrics_path: str = _opt("/metrics", "path of the Prometheus metrics", path=True)
    metrics_port: int = _count(
        0, "serve the metrics on this port only (0: on the main port)", low=0, high=PORT_MAX)
    app_metrics_bytes: int = _count(
        1048576, "shared memory per worker for the app's prometheus_client metrics, in bytes "
        "(a series takes about 100 to 200; the collectors' snapshot shares it); past it, new "
        "series are not exposed: logged once, counted in fastsock_app_metrics_dropped_total",
        low=4096, high=1 << 26)
    healthz_path: str = _opt(
        "/healthz", "liveness path, answered by the server ('' = off; an app's own route there "
        "wins)", path=True)
    readyz_path: str = _opt(
        "/readyz", "readiness path, answered by the server ('' = off; an app's own route there "
        "wins)", path=True)
    ready_check: str = _opt(
        "", "a plain function MODULE:ATTRIBUTE that readiness also asks (at most once a second, "
        "on a thread of its own: a probe never waits for it): false, raising, no answer yet "
        "or none for 10 s is 503; draining is 503 whatever it says")
    access_log: str = _opt("off", "access log to stdout: off, text, json, or on (in --log-format)",
                           choices=("off", "on", "text", "json"))
    log_health: bool = _opt(False, "also write health checks to the access log")
    log_level: str = _opt("info", "error log (stderr) level: debug, info, warning, error",
                          choices=("debug", "info", "warning", "error", "critical"),
                          any_case=True)
    log_format: str = _opt("text", "error log (stderr) format: text, or json (one object a line)",
                           choices=("text", "json"))
    log_config: str = _opt(
        "", "a logging dictConfig file (.json, .yaml) applied after the defaults: its handlers, "
        "formatters and levels win")
    forwarded_allow_ips: str = _opt(
        "", "comma-separated addresses/CIDRs of proxies trusted for X-Forwarded-For/Forwarded, "
        "or * to trust every peer")
    proxy_protocol: bool = _opt(
        False, "expect a PROXY protocol v1/v2 header on every connection (AWS NLB)")
    ws_max_message: int = _count(
        1048576, "largest WebSocket message in bytes, as inflated (the WebSocket is closed "
        "with 1009 past it)", high=SIZE_MAX)
    ws_max_frame: int = _count(
        1048576, "largest WebSocket frame payload in bytes (closed with 1009 past it)",
        high=SIZE_MAX)
    ws_max_queue: int = _count(
        1048576, "WebSocket bytes received and not yet taken by the handler, past which the "
        "server stops reading that WebSocket", high=SIZE_MAX)
    ws_max_connections: int = _count(
        10000, "WebSockets each worker has open at once; past it, the handshake gets 503")
    ws_ping_interval: float = _seconds(
        20.0, "seconds between the server's pings on an open WebSocket: under the idle "
        "timeouts of AWS ALB (60 s) and ingress-nginx (60 s), so they never cut a quiet one "
        "(0: no pings)", low=TIMER_MIN, off=0)
    ws_ping_timeout: float = _seconds(
        20.0, "seconds a ping's pong may take before the WebSocket is closed (a peer gone "
        "behind a NAT or load balancer)", low=TIMER_MIN)
    ws_close_timeout: float = _seconds(
        5.0, "seconds the peer has to answer the server's Close before the connection is "
        "closed", low=TIMER_MIN)
    ws_handshake_timeout: float = _seconds(
        10.0, "seconds a WebSocket handler has to accept or refuse the handshake (504 past it)",
        low=TIMER_MIN)
    ws_compression: bool = _opt(
        True, "agree to permessage-deflate (RFC 7692) when a WebSocket client offers it")
    tls_cert: str = _opt(
        "", "serve HTTPS on the port with this certificate chain (PEM); several, "
        "comma-separated, are chosen by the client's SNI name (the first is the default). "
        "Reloaded without a restart when the files change or on SIGHUP")
    tls_key: str = _opt(
        "", "the private key (PEM) of each --tls-cert, in the same order")
    tls_key_password_file: str = _opt(
        "", "a file holding the keys' passphrase (never given on the command line)")
    tls_client_ca: str = _opt(
        "", "CA bundle (PEM) that client certificates are verified against (mutual TLS)")
    tls_verify_client: str = _opt(
        "none", "client certificates: none (not asked for), optional (verified when sent) or "
        "required", choices=("none", "optional", "required"))
    tls_min_version: str = _opt("1.2", "lowest TLS version accepted: 1.2 or 1.3",
                                choices=("1.2", "1.3"))
    tls_ciphers: str = _opt(
        MOZILLA_INTERMEDIATE_CIPHERS, "TLS 1.2 cipher list (OpenSSL's syntax; Mozilla's "
        "intermediate by default)")
    tls_ciphersuites: str = _opt(
        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256",
        "TLS 1.3 cipher suites")
    tls_groups: str = _opt("X25519:prime256v1:secp384r1", "key exchange groups, preferred first")
    tls_handshake_timeout: float = _seconds(
        10.0, "seconds a TLS handshake may take from accept (then the connection is closed)",
        low=TIMER_MIN)
    tls_max_handshakes: int = _count(
        1024, "TLS handshakes each worker has under way at once; past it, a new connection is "
        "closed at once (counted as too_many)")
    tls_session_tickets: bool = _opt(
        True, "resume TLS sessions with tickets, under keys the workers share (a client resumes "
        "on any worker)")
    tls_ticket_key_rotation: float = _seconds(
        3600.0, "seconds between new session-ticket keys (a ticket is taken under the current "
        "key and the one before)", low=60)
    tls_ktls: bool = _opt(
        True, "hand the record layer to the kernel (kernel TLS) where Linux and OpenSSL offer "
        "it; else OpenSSL does it (counted in fastsock_tls_ktls_total)")

    def limits(self) -> dict:
        """The fields a worker's loop needs, as its typed Limits struct takes them."""
        names = ("header_timeout", "keepalive_timeout", "body_timeout", "min_body_rate",
                 "graceful_timeout",
                 "output_high_water", "max_request_line", "max_header_bytes",
                 "max_header_count", "max_body_size", "max_chunk_ext", "proxy_protocol",
                 "limit_concurrency", "tls_handshake_timeout", "tls_max_handshakes")
        ws_timers = [t for t in (self.ws_ping_interval, self.ws_ping_timeout,
                                 self.ws_close_timeout) if t > 0]
        return {**{name: getattr(self, name) for name in names},
                "count_requests": self.metrics, "ws_shortest_timer": min(ws_timers)}

    def websockets(self):
        """One worker's WebSocket options and limits (fastsock.websocket.WebSockets)."""
        from fastsock._wsconn import WsOptions
        from fastsock.websocket import WebSockets
        return WebSockets(
            WsOptions(max_message=self.ws_max_message, max_frame=self.ws_max_frame,
                      max_queue=self.ws_max_queue, ping_interval=self.ws_ping_interval,
                      ping_timeout=self.ws_ping_timeout, close_timeout=self.ws_close_timeout,
                      compression=self.ws_compression),
            self.ws_max_connections, self.ws_handshake_timeout)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _checked(f, getattr(self, f.name)))
        # what no single option's entry can say
        if self.access_log == "on":
            object.__setattr__(self, "access_log", self.log_format)
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise OptionError("root_path", f"must start with '/' and not end with one, not "
                                           f"{self.root_path!r}")
        if self.run_sync == "thread" and self.threads == 0:
            raise OptionError("run_sync", "thread needs a thread pool (--threads above 0)")
        if self.forwarded_allow_ips:
            from fastsock.forwarded import Proxies
            Proxies(self.forwarded_allow_ips)       # ValueError names a bad entry
        _check_host(self.host)
        if self.uds:
            _check_uds(self.uds)
        if self.log_config:
            _check_readable("log_config", self.log_config)
        if self.metrics_port and self.metrics_port == self.port and not self.uds:
            raise OptionError("metrics_port", f"must differ from the port, not {self.port}")
        served = [(name, getattr(self, name)) for name in SERVED_PATHS if getattr(self, name)]
        for i, (name, path) in enumerate(served):
            for other, same in served[:i]:
                if path == same:
                    raise OptionError(name, f"must differ from {other}, not {path!r}")
        if self.reload:
            _check_reload(self)
        _check_tls(self)

    def tls_certificates(self) -> tuple[list[str], list[str]]:
        """--tls-cert and --tls-key as lists of files."""
        def files(text):
            return [p.strip() for p in text.split(",") if p.strip()]
        return files(self.tls_cert), files(self.tls_key)


SERVED_PATHS = ("healthz_path", "readyz_path", "metrics_path")


def _check_tls(config: Config) -> None:
    """--tls-*: a key for every certificate, files that can be read, a verification that has
    its CA. (What OpenSSL thinks of the files is said when they are loaded, before a fork.)"""
    certs, keys = config.tls_certificates()
    if not certs:
        for name in ("tls_key", "tls_key_password_file", "tls_client_ca"):
            if getattr(config, name):
                raise OptionError(name, "needs --tls-cert (TLS is on with a certificate)")
        return
    if len(certs) != len(keys):
        raise OptionError("tls_key", f"must name one key per certificate ({len(certs)}), "
                                     f"not {len(keys)}")
    for name, paths in (("tls_cert", certs), ("tls_key", keys)):
        for path in paths:
            _check_readable(name, path)
    for name in ("tls_key_password_file", "tls_client_ca"):
        if getattr(config, name):
            _check_readable(name, getattr(config, name))
    if config.tls_verify_client != "none" and not config.tls_client_ca:
        raise OptionError("tls_verify_client", f"{config.tls_verify_client} needs "
                                               f"--tls-client-ca (what to verify against)")
    if config.uds:
        raise OptionError("tls_cert", "serves TCP ports only, not --uds")


def _check_host(host: str) -> None:
    """An IPv4 or IPv6 address, or a host name: never what getaddrinfo would read some other
    way ('1.2.3' as 1.2.0.3, a leading zero as octal) or fail on after the start."""
    try:
        if ":" in host:
            ipaddress.IPv6Address(host)
        elif host.replace(".", "").isdigit():
            ipaddress.IPv4Address(host)
        elif not (len(host) <= 253 and HOST_NAME.fullmatch(host)):
            raise ValueError(host)
    except ValueError:
        hint = " (without brackets)" if host.startswith("[") else ""
        raise OptionError("host", f"must be an IP address{hint} or a host name, "
                                  f"not {_show(host)}") from None


def _check_uds(path: str) -> None:
    """A path a Unix socket can be bound at: short enough, in a directory that exists and we
    may write, and not a file that is not a socket (a stale socket is replaced)."""
    if len(os.fsencode(path)) > UDS_MAX:
        raise OptionError("uds", f"must be at most {UDS_MAX} bytes long (a Unix socket path), "
                                 f"not {_show(path)}")
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise OptionError("uds", f"must be in an existing directory, not {_show(path)} "
                                 f"({parent} is not a directory)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError("uds", f"must be in a directory this user may write, not "
                                 f"{_show(path)}")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OptionError("uds", f"must not be an existing file other than a socket, not "
                                 f"{_show(path)}")


def _check_readable(name: str, path: str) -> None:
    if not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise OptionError(name, f"must be a readable file, not {_show(path)}")


def _check_reload(config: Config) -> None:
    """--reload: one worker that imports the app itself, so that a restart imports the changed
    code; the watcher (watchfiles) present before anything starts."""
    if config.workers not in ("auto", "1"):
        raise OptionError("workers", f"must be 1 or auto with --reload (one worker is "
                                     f"restarted on a change), not {_show(config.workers)}")
    try:
        importlib.import_module("watchfiles")
    except ImportError:
        raise OptionError("reload", "needs the watchfiles package: pip install "
                                    "'fastsock[reload]'") from None
    object.__setattr__(config, "workers", "1")
    object.__setattr__(config, "preload", False)


class OptionError(ValueError):
    """A bad option value: `label` (the field, flag or variable) and what is wrong with it."""

    def __init__(self, field: str, problem: str, label: str = ""):
        self.field, self.problem = field, problem
        super().__init__(f"{label or field} {problem}")


def _show(value) -> str:
    """The bad value, for one line of stderr: a huge number shortened."""
    try:
        text = repr(value)
    except ValueError:                              # an int past Python's digits limit
        return "a number too long to print"
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _expected(f: dataclasses.Field) -> str:
    """What a numeric option takes, from its entry: "must be <this>, not ..."."""
    m = f.metadata
    off = f"{m['off']} (off) or " if "off" in m else ""
    if f.type == "float":
        unit = m.get("unit", "seconds")
        least = (f"a positive number of {unit}" if m.get("above") == 0
                 else f"at least {m['low']} {unit}")
        return f"{off}{least}, at most {m['high']}"
    words = "".join(f"{w} or " for w in m.get("words", ()))
    return f"{off}{words}a whole number from {m['low']} to {m['high']}"


def _checked(f: dataclasses.Field, value):
    """value as the Config holds it, checked against its entry; else OptionError."""
    m = f.metadata
    if f.type == "bool":
        if type(value) is not bool:
            raise OptionError(f.name, f"must be True or False, not {_show(value)}")
        return value
    if f.type == "str" and "words" in m:            # --workers: a word, or a number as text
        if type(value) is int:
            value = str(value)                       # fastsock.run(app, workers=4)
        if value in m["words"]:
            return value
        if not (isinstance(value, str) and value.isascii() and value.isdigit()
                and len(value) < 10 and m["low"] <= int(value) <= m["high"]):
            raise OptionError(f.name, f"must be {_expected(f)}, not {_show(value)}")
        return value
    if f.type == "str":
        if not isinstance(value, str):
            raise OptionError(f.name, f"must be a string, not {_show(value)}")
        if "\0" in value:
            raise OptionError(f.name, f"must not hold a NUL character, not {_show(value)}")
        if "choices" in m and (value.lower() if m.get("any_case") else value) not in m["choices"]:
            *most, last = m["choices"]
            raise OptionError(f.name, f"must be {', '.join(most)} or {last}, not {_show(value)}")
        if m.get("path") and value and not value.startswith("/"):
            raise OptionError(f.name, f"must start with '/', not {_show(value)}")
        if m.get("path") and not (PATH_CHARS.fullmatch(value) and "?" not in value
                                  and "#" not in value):      # else no request can reach it
            raise OptionError(f.name, f"must hold no space, control character, '?' or '#', "
                                      f"not {_show(value)}")
        return value
    # a number: NaN fails every comparison below, and inf is past every ceiling
    if isinstance(value, bool) or not isinstance(value, int if f.type == "int" else (int, float)):
        raise OptionError(f.name, f"must be {_expected(f)}, not {_show(value)}")
    if f.type == "float":
        try:
            value = float(value)
        except OverflowError:                       # an int too big for a double
            raise OptionError(f.name, f"must be {_expected(f)}, not {_show(value)}") from None
    if value == m.get("off"):
        return value
    if not (m["low"] <= value <= m["high"] and value > m.get("above", -math.inf)):
        raise OptionError(f.name, f"must be {_expected(f)}, not {_show(value)}")
    return value


def env_name(name: str) -> str:
    return "FASTSOCK_" + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(raw)


def _from_text(f: dataclasses.Field, raw: str):
    """A flag's or a variable's text as the field's type; OptionError if it is not one."""
    try:
        if f.type == "int":
            return int(raw)
        if f.type == "float":
            return float(raw)
        if f.type == "bool":
            return _parse_bool(raw)
    except ValueError:
        expected = ("true or false (1/0, yes/no, on/off)" if f.type == "bool"
                    else _expected(f))
        raise OptionError(f.name, f"must be {expected}, not {_show(raw)}") from None
    return raw


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A usage mistake (an unknown flag, a flag without its value): one line, exit 2."""
        self.exit(2, f"fastsock: error: {message} (fastsock --help lists the options)\n")


def variables(f: dataclasses.Field) -> list[str]:
    """The environment variables an option is read from, the first found winning."""
    return [env_name(f.name), *([f.metadata["convention"]] if "convention" in f.metadata
                                else [])]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastsock", allow_abbrev=False,    # --time is a typo, not --timeout
        description="Serve a fastsock App, a WSGI app or an ASGI app. Every option can also be "
                    "set by the environment variable shown beside it (a flag wins over it).",
    )
    from fastsock.version import __version__
    parser.add_argument("--version", action="version", version=f"fastsock {__version__}")
    for f in dataclasses.fields(Config):
        help_text = (f"{f.metadata['help']} [env {', then '.join(variables(f))}; "
                     f"default {f.default!r}]")
        if f.metadata.get("positional"):
            parser.add_argument(f.name, nargs="?", default=None, help=help_text)
        elif f.type == "bool":
            parser.add_argument(flag_name(f.name), dest=f.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:       # kept as text: converted and checked with the variables (from_args)
            parser.add_argument(flag_name(f.name), dest=f.name, default=None, help=help_text)
    return parser


def parse(argv: list[str] | None = None,
          environ: Mapping[str, str] | None = None) -> tuple[Config, dict[str, str]]:
    """Flags, then FASTSOCK_* variables, then PORT / WEB_CONCURRENCY, then defaults. -> the
    Config, and the flag or variable each given option came from. A bad value raises
    OptionError (a ValueError) naming that flag or variable."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values, given_as = {}, {}
    try:
        for f in dataclasses.fields(Config):
            value = getattr(args, f.name)
            found = [name for name in variables(f) if name in environ]
            if value is not None:
                given_as[f.name] = f.name if f.metadata.get("positional") else flag_name(f.name)
            elif found:
                value, given_as[f.name] = environ[found[0]], found[0]
            else:
                continue
            values[f.name] = _from_text(f, value) if isinstance(value, str) else value
        if values.get("reload") and values.get("preload"):
            raise OptionError("preload", "cannot be used with --reload: each restart imports "
                                         "the app afresh in the new worker")
        return Config(**values), given_as
    except OptionError as e:
        raise OptionError(e.field, e.problem, given_as.get(e.field, e.field)) from None


def from_args(argv: list[str] | None = None,
              environ: Mapping[str, str] | None = None) -> Config:
    """The Config of a command line and an environment (parse, without where each came from)."""
    return parse(argv, environ)[0]
