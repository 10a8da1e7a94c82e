# cython: language_level=3
"""Placeholder for permessage-deflate (built in wt-deflate): lets _wsframes compile against
_wsdeflate.pxd until the real room lands. Dropped at the merge."""
from fastsock._bytebuf cimport ByteBuf


cdef class PerMessageDeflate:
    cdef int inflate(self, const char* p, Py_ssize_t n, ByteBuf* out, Py_ssize_t cap) except -2:
        raise NotImplementedError("permessage-deflate: placeholder")

    cdef int inflate_end(self, ByteBuf* out, Py_ssize_t cap) except -2:
        raise NotImplementedError("permessage-deflate: placeholder")

    cdef int deflate(self, const char* p, Py_ssize_t n, ByteBuf* out) except -1:
        raise NotImplementedError("permessage-deflate: placeholder")


def negotiate(offer, options=None):
    """Placeholder: the real one parses the offer."""
    raise NotImplementedError("permessage-deflate: placeholder")
