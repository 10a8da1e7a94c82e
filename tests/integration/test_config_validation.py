"""Every option is checked before the first fork (issue 19): a value that is not finite, out of
range or past what the C side holds is one line on stderr naming the flag or the variable, and
exit status 2; from Python, a ValueError naming the field."""
import dataclasses
import os
import subprocess
import sys

import pytest

from fastsock.config import Config
from tests.support.servers import ROOT

# every numeric option, found from the table itself so that a new one is covered too
NUMERIC = [f.name for f in dataclasses.fields(Config) if f.type in ("int", "float")] + ["workers"]
BAD = ["nan", "inf", "-inf", "-1", "99999999999999999999", "ten"]
TINY = "1e-9"                   # a timer that would make the loop's tick spin
STARTED = ("serving on", "started worker")     # the master's lines once it forks


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_until_exit_or_start(args, env=None):
    """-> (exit status, stderr). Stops at the first sign of a server starting (it never exits
    on its own then): status None."""
    proc = subprocess.Popen([sys.executable, "-m", "fastsock", "tests.apps.native:app", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if any(s in line for s in STARTED):
                return None, "".join(lines)
        return proc.wait(30), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def base_args(but: str) -> list[str]:
    """A server that would start (on a free port, one worker), minus the option under test."""
    args = {"host": "127.0.0.1", "port": "0", "workers": "1"}
    args.pop(but, None)
    return [a for name, value in args.items() for a in (flag(name), value)]


def assert_refused(status, stderr, name):
    assert status == 2, f"not refused: {stderr}"
    (line,) = stderr.splitlines()       # one line: no usage, no traceback
    assert line.startswith(f"fastsock: error: {name} must "), line
    assert not any(s in stderr for s in STARTED)


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("name", NUMERIC)
def test_a_bad_number_on_the_command_line_is_refused_before_any_worker(name, value):
    status, stderr = run_until_exit_or_start([*base_args(name), flag(name) + "=" + value])
    assert_refused(status, stderr, flag(name))


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("name", NUMERIC)
def test_a_bad_number_in_the_environment_is_refused_before_any_worker(name, value):
    variable = "FASTSOCK_" + name.upper()
    status, stderr = run_until_exit_or_start(base_args(name), env={variable: value})
    assert_refused(status, stderr, variable)


@pytest.mark.parametrize("name, value", [
    ("header_timeout", "float('nan')"),
    ("max_body_size", "10 ** 20"),
    ("metrics_port", "70000"),
])
def test_run_refuses_a_bad_number_before_any_worker(name, value):
    code = (f"import sys, fastsock, tests.apps.native\n"
            f"try:\n"
            f"    fastsock.run(tests.apps.native.app, port=0, workers='1', {name}={value})\n"
            f"except ValueError as e:\n"
            f"    sys.exit(f'ValueError: {{e}}')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            assert not any(s in line for s in STARTED), "".join(lines)
        assert proc.wait(30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lines[-1].startswith(f"ValueError: {name} must "), "".join(lines)


def test_the_largest_accepted_values_fit_the_c_side():
    """The table's ceilings are what the worker's Limits struct and the listen backlog take."""
    from fastsock._loop import Loop
    import socket
    largest = {f.name: f.metadata["high"] for f in dataclasses.fields(Config)
               if "high" in f.metadata}
    config = Config(**{**largest, "run_sync": "inline", "metrics_port": 0})  # not the port
    Loop(config.limits())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(config.backlog)
    with pytest.raises(ValueError, match="^max_body_size must "):
        Config(max_body_size=largest["max_body_size"] + 1)


@pytest.mark.parametrize("args, env, says", [
    (["--port", "80x"], {}, "--port must be a whole number"),
    (["--header-timeout", "soon"], {}, "--header-timeout must be at least 0.1 seconds"),
    ([], {"FASTSOCK_METRICS": "maybe"}, "FASTSOCK_METRICS must be"),
    ([], {"FASTSOCK_ACCEPT": "roundrobin"}, "FASTSOCK_ACCEPT must be exclusive or reuseport"),
    (["--workers", "0"], {}, "--workers must be"),
    (["--workers", "100000"], {}, "--workers must be"),
])
def test_other_bad_values_say_which_option_in_one_line(args, env, says):
    status, stderr = run_until_exit_or_start(["--host", "127.0.0.1", "--port", "0", *args],
                                             env=env)
    assert status == 2, stderr
    (line,) = stderr.splitlines()
    assert line.startswith("fastsock: error: " + says), line


@pytest.mark.parametrize("name", ["header_timeout", "keepalive_timeout", "body_timeout"])
def test_a_timer_too_short_for_the_loops_tick_is_refused(name):
    status, stderr = run_until_exit_or_start([*base_args(name), flag(name) + "=" + TINY])
    assert_refused(status, stderr, flag(name))


# Issue 21: every option, through the real command line. Each row: flags, environment, and the
# flag or variable the one line must start with ("{tmp}" is a fresh directory).
LONG = "/tmp/" + "x" * 120
BAD_VALUES = [
    (["--port", "99999"], {}, "--port"),
    ([], {"PORT": "99999"}, "PORT"),
    ([], {"PORT": "http"}, "PORT"),
    ([], {"FASTSOCK_PORT": "-1", "PORT": "8000"}, "FASTSOCK_PORT"),
    (["--host", "256.1.1.1"], {}, "--host"),
    (["--host", "1.2.3"], {}, "--host"),               # inet_aton would read it as 1.2.0.3
    (["--host", "010.0.0.1"], {}, "--host"),           # ... and this as octal
    (["--host", "[::1]"], {}, "--host"),
    (["--host", ""], {}, "--host"),
    (["--host", "bad_name!"], {}, "--host"),
    (["--host", "nosuch.invalid"], {}, "--host 'nosuch.invalid' cannot be resolved"),
    (["--host", "192.0.2.1"], {}, "--host '192.0.2.1' is not an address of this machine"),
    ([], {"FASTSOCK_HOST": "256.1.1.1"}, "FASTSOCK_HOST"),
    (["--uds", "/missing/dir/sock"], {}, "--uds"),
    (["--uds", LONG], {}, "--uds"),
    (["--uds", "{tmp}/file"], {}, "--uds"),            # a regular file is there
    (["--uds", "{tmp}/file/sock"], {}, "--uds"),       # a file as the directory
    ([], {"FASTSOCK_UDS": "/missing/dir/sock"}, "FASTSOCK_UDS"),
    (["--workers", "auto5"], {}, "--workers"),
    ([], {"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY"),
    ([], {"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
    ([], {"FASTSOCK_WORKERS": "", "WEB_CONCURRENCY": "2"}, "FASTSOCK_WORKERS"),
    (["--accept", "roundrobin"], {}, "--accept"),
    (["--interface", "rsgi"], {}, "--interface"),
    (["--root-path", "api"], {}, "--root-path"),
    (["--root-path", "/api/"], {}, "--root-path"),
    (["--lifespan", "maybe"], {}, "--lifespan"),
    ([], {"FASTSOCK_PRELOAD": "maybe"}, "FASTSOCK_PRELOAD"),
    ([], {"FASTSOCK_RELOAD": "2"}, "FASTSOCK_RELOAD"),
    (["--reload", "--workers", "2"], {}, "--workers must be 1 or auto with --reload"),
    (["--reload"], {"WEB_CONCURRENCY": "4"}, "WEB_CONCURRENCY must be 1 or auto with --reload"),
    (["--reload", "--preload"], {}, "--preload cannot be used with --reload"),
    (["--run-sync", "process"], {}, "--run-sync"),
    (["--run-sync", "thread", "--threads", "0"], {}, "--run-sync"),
    ([], {"FASTSOCK_METRICS": "maybe"}, "FASTSOCK_METRICS"),
    (["--metrics-path", "metrics"], {}, "--metrics-path"),
    (["--metrics-path", "/me trics"], {}, "--metrics-path"),
    (["--healthz-path", "/health?x"], {}, "--healthz-path"),
    (["--readyz-path", "/healthz"], {}, "--readyz-path must differ from healthz_path"),
    (["--ready-check", "nosuch_module_xyz:check"], {}, "--ready-check: cannot import"),
    (["--ready-check", "tests.apps.unchanged:no_such_check"], {}, "--ready-check"),
    (["--ready-check", "tests.apps.unchanged:BIG"], {}, "--ready-check"),  # not callable
    ([], {"FASTSOCK_READY_CHECK": "no-colon"}, "FASTSOCK_READY_CHECK"),
    (["--port", "8123", "--metrics-port", "8123"], {}, "--metrics-port must differ"),
    (["--access-log", "xml"], {}, "--access-log"),
    ([], {"FASTSOCK_LOG_HEALTH": "sometimes"}, "FASTSOCK_LOG_HEALTH"),
    (["--log-level", "loud"], {}, "--log-level"),
    (["--log-format", "xml"], {}, "--log-format"),
    (["--log-config", "/missing/log.json"], {}, "--log-config"),
    (["--log-config", "{tmp}"], {}, "--log-config"),   # a directory
    ([], {"FASTSOCK_LOG_CONFIG": "/missing/log.json"}, "FASTSOCK_LOG_CONFIG"),
    (["--forwarded-allow-ips", "10.0.0.0/33"], {}, "--forwarded-allow-ips"),
    ([], {"FASTSOCK_PROXY_PROTOCOL": "v2"}, "FASTSOCK_PROXY_PROTOCOL"),
    ([], {"FASTSOCK_WS_COMPRESSION": "deflate"}, "FASTSOCK_WS_COMPRESSION"),
    (["--tls-cert", "/missing/cert.pem", "--tls-key", "/missing/key.pem"], {}, "--tls-cert"),
    (["--tls-cert", "{key}", "--tls-key", "{key}"], {}, "--tls-cert"),     # a key, no cert
    (["--tls-key", "{key}"], {}, "--tls-key"),                             # without a cert
    (["--tls-cert", "{cert}", "--tls-key", "{key},{key}"], {}, "--tls-key"),
    (["--tls-cert", "{cert}", "--tls-key", "{cert}"], {}, "--tls-key"),    # a cert, no key
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-key-password-file", "/missing"], {},
     "--tls-key-password-file"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-client-ca", "{tmp}/file"], {},
     "--tls-client-ca"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-verify-client", "required"], {},
     "--tls-verify-client"),
    (["--tls-verify-client", "sometimes"], {}, "--tls-verify-client"),
    (["--tls-min-version", "1.1"], {}, "--tls-min-version"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-ciphers", "garbage"], {},
     "--tls-ciphers"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-ciphersuites", "TLS_NOPE"], {},
     "--tls-ciphersuites"),
    (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-groups", "nope"], {},
     "--tls-groups"),
    ([], {"FASTSOCK_TLS_SESSION_TICKETS": "maybe"}, "FASTSOCK_TLS_SESSION_TICKETS"),
    ([], {"FASTSOCK_TLS_KTLS": "maybe"}, "FASTSOCK_TLS_KTLS"),
    (["--port"], {}, "argument --port: expected one argument"),
    (["--prt", "3"], {}, "unrecognized arguments: --prt"),
    (["--time", "5"], {}, "unrecognized arguments: --time"),  # not --timeout: no abbreviations
]


@pytest.mark.parametrize("args, env, says", BAD_VALUES,
                         ids=[" ".join(a) or next(iter(e)) for a, e, _ in BAD_VALUES])
def test_every_bad_value_is_one_line_naming_its_option_before_any_fork(tmp_path, args, env,
                                                                       says):
    (tmp_path / "file").write_text("not a socket")
    if any("{cert}" in a or "{key}" in a for a in args):
        import trustme
        leaf = trustme.CA().issue_cert("localhost")
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    args = [a.replace("{tmp}", str(tmp_path)).replace("{cert}", str(tmp_path / "cert.pem"))
            .replace("{key}", str(tmp_path / "key.pem")) for a in args]
    # a server that would start, but for the row: a default is left out where the row sets
    # that option (by its flag, or by a variable the flag would shadow)
    shadows = {"--host": {"FASTSOCK_HOST"}, "--port": {"PORT", "FASTSOCK_PORT"},
               "--workers": {"WEB_CONCURRENCY", "FASTSOCK_WORKERS"}}
    defaults = [a for name, value in (("--host", "127.0.0.1"), ("--port", "0"),
                                      ("--workers", "1"))
                if name not in args and not env.keys() & shadows[name] for a in (name, value)]
    status, stderr = run_until_exit_or_start([*defaults, *args], env=env)
    assert status == 2, f"not refused: {stderr}"
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith(f"fastsock: error: {says}"), line


def test_the_table_goes_through_every_option():
    """A new option is refused-tested here or in the numeric sweep above, never neither."""
    covered = set(NUMERIC)
    for args, env, _ in BAD_VALUES:
        covered |= {a[2:].replace("-", "_") for a in args if a.startswith("--")}
        covered |= {v[len("FASTSOCK_"):].lower() for v in env if v.startswith("FASTSOCK_")}
    missing = {f.name for f in dataclasses.fields(Config)} - covered - {"app"}  # test_cli's
    assert not missing, f"options no bad value is tried for: {sorted(missing)}"


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)
                                  if f.type == "float" and "off" not in f.metadata
                                  and (f.metadata.get("above") == 0
                                       or f.metadata.get("low", 0) > 0)])
def test_zero_is_refused_where_it_would_turn_a_timer_off(name):
    status, stderr = run_until_exit_or_start([*base_args(name), flag(name) + "=0"])
    assert_refused(status, stderr, flag(name))
