# Memory shared by the master and its workers: one header, one slot per worker.
# Each field has one writer: the header is the master's, a slot is its worker's.

cdef struct Header:
    long long ready         # 1 while every worker is up and the server is not draining
    long long draining      # 1 once shutdown has begun

cdef struct Slot:
    long long pid
    long long state         # SLOT_* below
    long long requests      # served since the slot was first used (monotonic)
    long long conns         # open connections now: lets workers balance accepts

cdef enum:
    SLOT_FREE = 0
    SLOT_STARTING = 1
    SLOT_RUNNING = 2
    SLOT_DRAINING = 3

cdef class SharedState:
    cdef object mm
    cdef char* base
    cdef readonly int nslots
    cdef Header* header
    cdef Slot* slot(self, int i) noexcept
