"""What a worker needs of the app it serves, whatever its kind: fastsock's App has it, and the
WSGI and ASGI adapters give it to the apps they wrap. The server reads the app through this
and nothing else."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:                       # for the annotations only: no import at run time
    from fastsock._handoff import BodyIn
    from fastsock._message import Request
    from fastsock.routing import Route
    from fastsock.runner import Runner


@runtime_checkable
class ServableApp(Protocol):
    # hooks run in each worker, sync or async: before it serves, and once it has drained
    # (read-only here: an attribute of any iterable type will do)
    @property
    def startup(self) -> Iterable[Callable[[], object]]: ...
    @property
    def shutdown(self) -> Iterable[Callable[[], object]]: ...

    def dispatcher(self, reserved: Iterable[Route], runner: Runner | None
                   ) -> Callable[[Request], object]:
        """The function the loop calls for each request: the server's reserved routes first,
        then the app's. It returns a response, or a Deferred the runner completes later."""

    def body_streams(self, runner: Runner, default_limit: int
                     ) -> Callable[[Request], BodyIn | None] | None:
        """Called with each request's head: a BodyIn when its body is streamed to the app as
        it arrives, None when it is read whole first. None: every body is read whole."""

    def route_names(self) -> dict[int, str]:
        """route id -> the route's template: the `route` label of the metrics."""
