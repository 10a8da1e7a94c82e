# Type stubs for the compiled sans-IO HTTP module.
from typing import Any, Iterable, Iterator

from fastsock.datastructures import Headers, MultiDict

METHOD_NAMES: tuple[str, ...]
ERROR_REASONS: tuple[str, ...]

class Request:
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    body: bytes
    keep_alive: bool
    client: tuple[str, int] | None
    path_params: dict[str, Any] | None
    method_id: int
    route_id: int
    @property
    def headers(self) -> Headers: ...
    @property
    def query(self) -> MultiDict: ...
    @property
    def user_agent(self) -> str | None: ...
    @property
    def request_id(self) -> str | None: ...
    def json(self) -> Any: ...

class Response:
    status: int
    body: bytes | Iterator[bytes | str]
    headers: list[tuple[str, str]]
    content_type: str | None
    def __init__(self, body: Any = b"", status: int = 200,
                 headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
                 content_type: str | None = None) -> None: ...

class RequestParser:
    error_status: int
    error_reason: str | None
    def __init__(self, max_request_line: int = 8192, max_header_bytes: int = 65536,
                 max_header_count: int = 100, max_body_size: int = 1048576,
                 max_chunk_ext: int = 1024) -> None: ...
    def feed(self, data: bytes) -> list[Request | str]: ...

def serialize(result: str | bytes | Response, keep_alive: bool = True, head_only: bool = False,
              http11: bool = True) -> bytes: ...
def error_response(status: int) -> bytes: ...
def set_date_line(date_line: bytes) -> None: ...
