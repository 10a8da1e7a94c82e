"""The JSON encoder's types beyond json.dumps' (issue 21, point 5), with orjson and with the
built-in encoder: each the same JSON, the app's json_default last, bytes refused by name."""
import dataclasses
import datetime
import decimal
import enum
import json
import sys
import uuid

import pytest

from fastsock._json import configure, json_encode
from tests.apps.returns import EXPECTED, VALUES, Money, Opaque, money


@pytest.fixture(params=["orjson", "builtin"])
def encoder(request):
    if request.param == "orjson":
        pytest.importorskip("orjson")
    assert configure(money, use_orjson=request.param == "orjson") == (request.param == "orjson")
    yield request.param
    configure()


def test_the_types_beyond_json_dumps(encoder):
    assert json.loads(json_encode(VALUES)) == EXPECTED


def test_a_value_of_any_type_at_the_top_or_deep(encoder):
    assert json.loads(json_encode([{"d": [decimal.Decimal("1e-30")]}])) == [{"d": ["1E-30"]}]
    assert json.loads(json_encode([datetime.datetime(2026, 1, 2, 3, 4, 5)])) == [
        "2026-01-02T03:04:05"]
    assert json.loads(json_encode({"m": Money(5)})) == {"m": "0.05 EUR"}


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Nested:
    when: datetime.date
    ids: list


def test_subclasses_nesting_keys_and_big_ints(encoder):
    value = {"level": Level.HIGH, "n": Nested(datetime.date(2026, 1, 1), [uuid.UUID(int=1)]),
             1: 2, "big": 2**80}
    assert json.loads(json_encode(value)) == {
        "level": 3, "n": {"when": "2026-01-01", "ids": ["00000000-0000-0000-0000-000000000001"]},
        "1": 2, "big": 2**80}


@pytest.mark.parametrize("value, named", [
    ({"a": Opaque()}, "Opaque"), ([b"\xff"], "bytes"), ({"b": bytearray(b"x")}, "bytearray"),
])
def test_what_no_encoder_takes_is_a_type_error_naming_it(encoder, value, named):
    with pytest.raises(TypeError, match=f"Object of type {named} is not JSON serializable"):
        json_encode(value)
    assert json_encode({"a": 1}) == b'{"a":1}'        # the encoder is fine afterwards


def test_the_apps_hook_comes_after_the_built_in_types():
    seen = []

    def hook(o):
        seen.append(type(o).__name__)
        return "hooked"
    configure(hook, use_orjson=False)
    try:
        assert json.loads(json_encode([Opaque(), uuid.UUID(int=0), b"x"])) == [
            "hooked", "00000000-0000-0000-0000-000000000000", "hooked"]
        assert seen == ["Opaque", "bytes"]
    finally:
        configure()


def test_bytes_are_refused_with_what_to_do():
    configure(use_orjson=False)
    try:
        with pytest.raises(TypeError, match="bytes is not JSON serializable: decode it"):
            json_encode({"raw": b"x"})
    finally:
        configure()


def test_orjson_when_installed_and_a_clear_error_when_asked_for_and_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "orjson", None)       # import orjson: ImportError
    try:
        assert configure() is False                 # not installed: the built-in encoder
        assert json_encode({"a": {1}}) == b'{"a":[1]}'
        with pytest.raises(ImportError):
            configure(use_orjson=True)              # asked for: said so at start
    finally:
        monkeypatch.undo()
        configure()
