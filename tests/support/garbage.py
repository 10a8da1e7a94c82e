"""What requests leave in reference cycles, for the test apps' /garbage endpoints. Objects in a
cycle live until the collector's next pass, and those passes are paid by every request."""
import gc

_freed = 0


def _count(phase: str, info: dict) -> None:
    global _freed
    if phase == "stop":
        _freed += info["collected"]


gc.callbacks.append(_count)


def freed_since_last_call() -> int:
    """Objects the cycle collector freed since the last call — in its automatic passes too —
    after one more pass now."""
    global _freed
    gc.collect()
    freed, _freed = _freed, 0
    return freed
