# Type stubs for the compiled connection (driven by the loop, or by feed() in tests).
# Its life (states, deadlines) is in fastsock._lifecycle, its Context in fastsock._context, its
# hand-off types (Deferred, BodyIn, Feed) in fastsock._handoff.
from typing import Any, Callable

from fastsock._context import Context
from fastsock._lifecycle import Lifecycle

STATE_NAMES: tuple[str, ...]

def handling() -> Any | None: ...

class Connection(Lifecycle):
    def __init__(self, ctx: Context, dispatch: Callable[[Any], Any]) -> None: ...
    def feed(self, data: bytes) -> bytes: ...
