# Type stubs for the compiled context every connection of one loop shares.
from typing import Any, Callable

from fastsock._shared import SharedState

class Context:
    on_stream: Callable[[Any, Any], None] | None
    on_head: Callable[[Any], Any] | None
    on_refused: Callable[[Any], Any] | None
    def __init__(self, limits: dict[str, Any], shared: SharedState | None = None,
                 slot: int = -1) -> None: ...
    @property
    def waiting(self) -> int: ...
    @property
    def streaming(self) -> int: ...
