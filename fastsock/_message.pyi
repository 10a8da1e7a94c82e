# Type stubs for the compiled message module.
import enum
from typing import Any, AsyncIterator, Callable, Iterable, Iterator

# the multi-dicts are _fields'; importable from here too
from fastsock._fields import Headers as Headers, MultiDict as MultiDict
from fastsock._tls import TLSInfo

METHOD_NAMES: tuple[str, ...]

class RouteId(enum.IntEnum):
    ROUTE_NONE = 0
    ROUTE_HEALTHZ = 1
    ROUTE_READYZ = 2
    ROUTE_METRICS = 3
    FIRST_APP_ROUTE = 16

class BadRequest(ValueError):
    status: int

class Request:
    def close_after(self) -> None: ...
    ws_in: int
    ws_out: int
    ws_close: int
    method: str
    path: str
    raw_path: bytes
    query_string: bytes
    http_version: str
    scheme: str
    body: bytes
    keep_alive: bool
    client: tuple[str, int] | None
    tls: TLSInfo | None
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
    def authority(self) -> str | None: ...
    @property
    def user_agent(self) -> str | None: ...
    def json(self) -> Any: ...
    def stream(self) -> AsyncIterator[bytes]: ...
    body_stream: Any

class Dispatcher:
    def dispatch(self, req: Request) -> object: ...
    def __call__(self, req: Any) -> object: ...     # a Request (a dispatch callable)

class Response:
    status: int
    body: bytes | Iterator[bytes | str]
    headers: list[tuple[str, str]]
    content_type: str | None
    def __init__(self, body: Any = b"", status: int = 200,
                 headers: dict[str, str] | Iterable[tuple[str, str]] | None = None,
                 content_type: str | None = None) -> None: ...
    def copy(self) -> Response: ...
