"""The configuration table without a server: Config and from_args refuse what the loop cannot
take, each refusal naming its field (the command line's refusals, through a real process, are
in tests/integration/test_config_validation.py and test_cli.py)."""
import dataclasses

import pytest

from fastsock.config import Config, from_args

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
