# Type stubs for the compiled hand-back bridge (the Loop's base).
from typing import Any, Callable

from fastsock._steps import StepClock

class Bridge:
    aio: Any
    @property
    def steps(self) -> StepClock: ...
    tasks: int
    ws_handlers: int
    def task_done(self) -> None: ...
    def call_soon_threadsafe(self, fn: Callable[[Any], None], arg: Any) -> None: ...
