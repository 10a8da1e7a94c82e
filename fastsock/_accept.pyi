# Type stubs for the compiled accept policy (used by the loop only).

from fastsock._shared import SharedState

class AcceptPolicy:
    nudge_fd: int
    # for tests: the decisions alone, for the listener of tag (no epoll, no accept)
    def stands_aside(self, tag: int, now: float) -> bool: ...
    def requeues(self, tag: int) -> bool: ...

# tests: the policy of the worker in slot, over slots given as (state, watching, conns, woke)
def policy_over(
    shared: SharedState, slot: int, slots: list[tuple[int, int, int, float]]
) -> AcceptPolicy: ...
