# Type stubs for the compiled request ids.
from collections.abc import Callable
from typing import Self

from fastsock._message import Dispatcher, Request

ECHO_ID: list[tuple[str, str]]

class RequestIds:
    prefix: str
    def __new__(cls, issued: int = 0) -> Self: ...  # __cinit__ takes it (object's __init__)
    def assign(self, req: Request) -> None: ...

class WithIds(Dispatcher):
    def __init__(self, inner: Callable[[Request], object],
                 access_log: Callable[[Request, int, int, float], None] | None,
                 log_health: bool) -> None: ...
    @property
    def ids_issued(self) -> int: ...

def echo_of(req: Request) -> tuple[bytes | None, list[tuple[str, object]] | None]: ...
