"""A JSON route of values fastsock's own encoder hands on (floats, datetimes, UUIDs, a
dataclass): `app` encodes them with orjson when it is installed, `builtin_app` with json.dumps'
C encoder."""
import dataclasses
import datetime
import uuid

from fastsock import App

app = App()
builtin_app = App(use_orjson=False)


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float
    at: datetime.datetime


BODY = {"id": uuid.UUID(int=7), "mean": 21.5,
        "readings": [Reading(f"s{i}", 20.0 + i / 8, datetime.datetime(2026, 12, 4, 12, i))
                     for i in range(20)]}


@app.get("/")
@builtin_app.get("/")
def rich(req):
    return BODY
