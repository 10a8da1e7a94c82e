# cython: language_level=3
"""The shared-memory block a master maps before forking, read and written by plain loads and
stores: no locks, no syscalls."""
import mmap

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_WRITABLE


cdef class SharedState:
    def __cinit__(self, int nslots):
        cdef Py_buffer view
        self.nslots = nslots
        self.mm = mmap.mmap(-1, sizeof(Header) + nslots * sizeof(Slot))   # MAP_SHARED|ANON
        PyObject_GetBuffer(self.mm, &view, PyBUF_WRITABLE)
        self.base = <char*>view.buf     # the mapping outlives this view: self.mm keeps it
        PyBuffer_Release(&view)
        self.header = <Header*>self.base

    cdef Slot* slot(self, int i) noexcept:
        return <Slot*>(self.base + sizeof(Header)) + i

    @property
    def ready(self):
        return bool(self.header.ready)

    @ready.setter
    def ready(self, bint value):
        self.header.ready = value

    @property
    def draining(self):
        return bool(self.header.draining)

    @draining.setter
    def draining(self, bint value):
        self.header.draining = value

    def slot_state(self, int i):
        return self.slot(i).state

    def set_slot(self, int i, long long pid, long long state):
        self.slot(i).pid = pid
        self.slot(i).state = state

    def slot_requests(self, int i):
        return self.slot(i).requests

    def free_slot(self):
        """A slot no live worker holds, or -1."""
        for i in range(self.nslots):
            if self.slot(i).state == SLOT_FREE:
                return i
        return -1

    STARTING = SLOT_STARTING
    RUNNING = SLOT_RUNNING
    DRAINING = SLOT_DRAINING
    FREE = SLOT_FREE
