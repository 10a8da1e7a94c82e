"""Return values a JSON body takes (issue 21, point 5): the types beyond json.dumps', the app's
json_default hook, and what cannot be sent (a 500 before the head, its type named in the log).
`app` uses orjson when it is installed; `builtin_app` the built-in encoder."""
import dataclasses
import datetime
import decimal
import enum
import os
import uuid

from fastsock import App


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Money:
    """A type only the app's json_default knows."""

    def __init__(self, cents: int):
        self.cents = cents


class Opaque:
    """A type nothing knows."""


VALUES = {
    "when": datetime.datetime(2026, 12, 4, 19, 30, 5, 120000, tzinfo=datetime.timezone.utc),
    "day": datetime.date(2026, 12, 4), "at": datetime.time(7, 5),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "price": decimal.Decimal("19.990"), "colour": Colour.RED, "point": Point(1, 2),
    "tags": {"a"}, "frozen": frozenset({3}), "money": Money(250),
}
EXPECTED = {
    "when": "2026-12-04T19:30:05.120000+00:00", "day": "2026-12-04", "at": "07:05:00",
    "id": "12345678-1234-5678-1234-567812345678", "price": "19.990", "colour": "red",
    "point": {"x": 1, "y": 2}, "tags": ["a"], "frozen": [3], "money": "2.50 EUR",
}


def money(o):
    if isinstance(o, Money):
        return f"{o.cents // 100}.{o.cents % 100:02d} EUR"
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def make(use_orjson) -> App:
    app = App(json_default=money, use_orjson=use_orjson)

    @app.get("/values")
    def values(req):
        return VALUES

    @app.get("/values/async")
    async def values_async(req):
        return VALUES

    @app.get("/set")
    def a_set(req):
        return {1, 2, 3}

    @app.get("/set/created")
    def a_set_created(req):
        return frozenset({"x"}), 201

    @app.get("/dataclass")
    def a_dataclass(req):
        return Point(3, 4)

    @app.get("/opaque")
    def opaque(req):
        return Opaque()

    @app.get("/opaque/in-json")
    def opaque_in_json(req):
        return {"a": Opaque()}

    @app.get("/opaque/threaded", threaded=True)
    def opaque_threaded(req):
        return [Opaque()]

    @app.get("/bytes/in-json")
    def bytes_in_json(req):
        return {"raw": b"\xff"}

    @app.get("/pid")
    def pid(req):
        return str(os.getpid())
    return app


app = make(None)
builtin_app = make(False)
