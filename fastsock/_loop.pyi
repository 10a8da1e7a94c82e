# Type stubs for the compiled event loop.
import socket
from typing import Any, Callable

from fastsock._shared import SharedState

class Loop:
    def __init__(self, sock: socket.socket, dispatch: Callable[[Any], Any], config: Any,
                 shared: SharedState | None = None, slot: int = -1,
                 access_log: Callable[..., None] | None = None, proxies: Any = None,
                 max_requests: int = 0, exposition: Callable[[Any], Any] | None = None,
                 metrics_sock: socket.socket | None = None) -> None: ...
    def run(self) -> None: ...
    def drain(self) -> None: ...
