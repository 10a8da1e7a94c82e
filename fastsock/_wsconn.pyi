# Type stubs for the compiled WebSocket session: one WebSocket after its handshake, as the app's
# layer (fastsock.websocket) drives it.
from typing import Any, Callable

CLOSE_CODES: tuple[int, ...]

class WsOptions:
    max_message: int
    max_frame: int
    max_queue: int
    compress_from: int
    ping_interval: float
    ping_timeout: float
    close_timeout: float
    compression: bool
    def __init__(self, max_message: int = ..., max_frame: int = ..., max_queue: int = ...,
                 compress_from: int = ..., ping_interval: float = ...,
                 ping_timeout: float = ..., close_timeout: float = ...,
                 compression: bool = ...) -> None: ...

class WsSession:
    close_code: int
    close_reason: str
    waiter: Callable[[], None] | None
    on_drain: Callable[[], None] | None
    on_closed: Callable[[WsSession], None] | None
    aio: Any
    head: bytes | None
    subprotocol: str | None
    def __init__(self, opts: WsOptions, accept_value: str, offered_extensions: str = "") -> None: ...
    def agree(self, subprotocol: str | None = None, headers: Any = None) -> None: ...
    def receive(self) -> str | bytes | None: ...
    def send(self, message: str | bytes | bytearray | memoryview) -> bool: ...
    def close(self, code: int = 1000, reason: str = "") -> None: ...
    def _wake(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def open(self) -> bool: ...
    @property
    def compressed(self) -> bool: ...
    @property
    def attached(self) -> bool: ...
