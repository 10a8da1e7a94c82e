"""The configuration table without a server: Config and from_args refuse what the loop cannot
take, each refusal naming its field (the command line's refusals, through a real process, are
in tests/integration/test_config_validation.py and test_cli.py)."""
import dataclasses

import pytest

from fastsock.config import Config, from_args, parse

# every numeric option, found from the table itself so that a new one is covered too
NUMERIC = [f.name for f in dataclasses.fields(Config) if f.type in ("int", "float")] + ["workers"]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1, 10 ** 20])
@pytest.mark.parametrize("name", NUMERIC)
def test_config_refuses_a_bad_number_naming_the_field(name, value):
    if name == "workers":
        value = str(value)
    with pytest.raises(ValueError, match=f"^{name} must "):
        Config(**{name: value})


def test_valid_edges_are_still_accepted():
    cfg = from_args(["m:a", "--port", "65535", "--timeout", "0", "--handler-timeout", "0",
                     "--threads", "0", "--max-requests", "0", "--shutdown-delay", "0",
                     "--metrics-port", "0", "--header-timeout", "0.25", "--workers", "auto"],
                    {"FASTSOCK_MAX_BODY_SIZE": " 10 ", "FASTSOCK_KEEPALIVE_TIMEOUT": "1e3"})
    assert (cfg.port, cfg.timeout, cfg.header_timeout, cfg.max_body_size) == (65535, 0, 0.25, 10)
    assert cfg.keepalive_timeout == 1000.0
    assert Config(workers=3).workers == "3"         # fastsock.run(app, workers=3)
    assert isinstance(Config(header_timeout=5).header_timeout, float)


def test_config_refuses_a_value_of_the_wrong_type():
    with pytest.raises(ValueError, match="^port must be a whole number"):
        Config(port="8080")
    with pytest.raises(ValueError, match="^max_body_size must be a whole number"):
        Config(max_body_size=1.5)
    with pytest.raises(ValueError, match="^metrics must be True or False"):
        Config(metrics="no")


@pytest.mark.parametrize("name", ["header_timeout", "keepalive_timeout", "body_timeout"])
def test_config_refuses_a_timer_too_short_for_the_loops_tick(name):
    with pytest.raises(ValueError, match=f"^{name} must be at least 0.1 seconds"):
        Config(**{name: 1e-9})


def test_options_from_environment_and_flags():
    cfg = from_args(["m:a", "--body-timeout", "5"],
                    {"FASTSOCK_BODY_TIMEOUT": "9", "FASTSOCK_MAX_BODY_SIZE": "10"})
    assert cfg.body_timeout == 5.0 and cfg.max_body_size == 10
    assert from_args(["m:a"], {}).header_timeout == 10.0


def test_keep_alive_default_outlasts_aws_alb():
    assert Config().keepalive_timeout > 60


@pytest.mark.parametrize("argv, environ, port, given_as", [
    ([], {}, 8000, None),
    ([], {"PORT": "5000"}, 5000, "PORT"),
    ([], {"PORT": "5000", "FASTSOCK_PORT": "6000"}, 6000, "FASTSOCK_PORT"),
    (["--port", "7000"], {"PORT": "5000", "FASTSOCK_PORT": "6000"}, 7000, "--port"),
])
def test_port_precedence_flag_then_fastsock_variable_then_platform_port(argv, environ, port,
                                                                         given_as):
    config, given = parse(["m:a", *argv], environ)
    assert config.port == port and given.get("port") == given_as


@pytest.mark.parametrize("argv, environ, workers", [
    ([], {}, "auto"),
    ([], {"WEB_CONCURRENCY": "3"}, "3"),
    ([], {"WEB_CONCURRENCY": "3", "FASTSOCK_WORKERS": "2"}, "2"),
    (["--workers", "5"], {"WEB_CONCURRENCY": "3", "FASTSOCK_WORKERS": "2"}, "5"),
])
def test_workers_precedence_flag_then_fastsock_variable_then_web_concurrency(argv, environ,
                                                                             workers):
    assert from_args(["m:a", *argv], environ).workers == workers


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "fe80::1%lo",
                                  "localhost", "api.internal", "my-host.example.", "a" * 63])
def test_hosts_that_can_be_listened_on_are_accepted(host):
    assert Config(host=host).host == host


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3", "010.0.0.1", "1.2.3.4.5", "[::1]",
                                  ":::1", "", " localhost", "-bad.example", "a" * 64,
                                  "under_score", "ex ample", "日本.example"])
def test_a_host_that_is_not_an_address_or_a_name_is_refused(host):
    with pytest.raises(ValueError, match="^host must be an IP address"):
        Config(host=host)


def test_reload_means_one_worker_importing_the_app_itself():
    config = Config(app="m:a", reload=True)
    assert (config.workers, config.preload) == ("1", False)
    assert Config(app="m:a", reload=True, workers="1").workers == "1"
    with pytest.raises(ValueError, match="^workers must be 1 or auto with --reload"):
        Config(app="m:a", reload=True, workers="2")
    with pytest.raises(ValueError, match="^--preload cannot be used with --reload"):
        parse(["m:a", "--reload", "--preload"], {})


def test_run_refuses_reload_for_an_app_object():
    from fastsock import App
    from fastsock.server import serve
    with pytest.raises(ValueError, match="reload needs the app as 'MODULE:ATTRIBUTE'"):
        serve(Config(reload=True), App())
