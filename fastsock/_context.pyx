# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""What every connection of one loop shares (attributes in _context.pxd)."""
from fastsock._shared cimport SharedState
from fastsock._sys cimport monotonic
from fastsock._writer import EPOCH_DATE_LINE as _EPOCH_DATE_LINE

import logging

from fastsock import responses

error_log = logging.getLogger("fastsock.error")
cdef object CONCURRENCY_FULL = responses.CONCURRENCY_FULL


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

    cdef object refusal(self, req):
        """--limit-concurrency is reached (the requests waiting for a handler and the
        responses streaming out): the refusal, or None for a request never refused (the
        server's own routes: on_refused says which, and logs)."""
        refusal = CONCURRENCY_FULL
        if self.on_refused is not None:
            try:
                refusal = self.on_refused(req)
            except Exception:
                error_log.exception("on_refused failed for %s %s", req.method, req.path)
        if refusal is not None:
            self.slot.refused_concurrency += 1
        return refusal
