# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What every connection of one loop shares (attributes in _context.pxd)."""
from fastsock._shared cimport SharedState
from fastsock._sys cimport monotonic
from fastsock._writer import EPOCH_DATE_LINE as _EPOCH_DATE_LINE


cdef class Context:
    """What every connection of one loop shares: limits, the counter slot, the clock, the Date
    line, and whether keep-alive is still on."""

    def __init__(self, Limits limits, SharedState shared=None, int slot=-1):
        if shared is None:              # on its own (tests, no master): a private slot
            shared, slot = SharedState(1), 0
        if not 0 <= slot < shared.nslots:
            raise ValueError(f"no slot {slot} in a shared state of {shared.nslots}")
        self.limits = limits
        self.shared = shared
        self.slot = shared.slot(slot)
        self.now = monotonic()
        self.date_line = _EPOCH_DATE_LINE
        self.keep_alive = True

    @property
    def waiting(self):
        return self.waiting

    @property
    def streaming(self):
        return self.streaming
