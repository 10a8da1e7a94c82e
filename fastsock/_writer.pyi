# Type stubs for the compiled response writer.
from typing import Any

from fastsock._message import Response

EPOCH_DATE_LINE: bytes

class _UnknownLength:
    def __iter__(self) -> _UnknownLength: ...
    def __next__(self) -> bytes: ...

UNKNOWN_LENGTH: _UnknownLength

def serialize(result: str | bytes | dict[str, Any] | list[Any] | Response,
              keep_alive: bool = True, head_only: bool = False, http11: bool = True,
              extra_headers: list[tuple[str, str]] | None = None,
              date_line: bytes = ..., request_id: bytes | None = None) -> bytes: ...
def error_response(status: int, date_line: bytes = ...) -> bytes: ...
