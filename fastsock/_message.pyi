# Type stubs for the compiled message module.
import enum
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

METHOD_NAMES: tuple[str, ...]

def json_encode(value: Any) -> bytes: ...

class RouteId(enum.IntEnum):
    ROUTE_NONE: int
    ROUTE_HEALTHZ: int
    ROUTE_READYZ: int
    ROUTE_METRICS: int
    FIRST_APP_ROUTE: int

class BadRequest(ValueError):
    status: int

class MultiDict:
    def __init__(self, items: list[tuple[str, str]]) -> None: ...
    def __getitem__(self, key: str) -> str: ...
    def get(self, key: str, default: Any = None) -> Any: ...
    def getall(self, key: str) -> list[str]: ...
    def __contains__(self, key: object) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...
    def items(self) -> list[tuple[str, str]]: ...

class Headers(MultiDict): ...

class Request:
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    scheme: str
    body: bytes
    keep_alive: bool
    client: tuple[str, int] | None
    path_params: dict[str, Any] | None
    method_id: int
    route_id: int
    request_id: str | None
    response_headers: list[tuple[str, str]] | None
    on_complete: Callable[["Request", int, int, float], None] | None
    @property
    def state(self) -> Any: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def query(self) -> MultiDict: ...
    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]: ...
    websocket: bool
    def cgi_headers(self) -> dict[str, str]: ...
    @property
    def user_agent(self) -> str | None: ...
    def json(self) -> Any: ...
    def stream(self) -> AsyncIterator[bytes]: ...
    body_stream: Any

class Response:
    status: int
    body: bytes | Iterator[bytes | str]
    headers: list[tuple[str, str]]
    content_type: str | None
    def __init__(self, body: Any = b"", status: int = 200,
                 headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
                 content_type: str | None = None) -> None: ...
