# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Request ids: the client's X-Request-ID (an empty one is none), else a new one: this
worker's random prefix and a counter in hex, written by hand into the Request as C text (a str
is made of it only when something reads req.request_id). The id is echoed as an
"X-Request-ID: ..." line the writer puts before the Date line that ends every head, copied from
that text or from the client's bytes: no str, no bytes, no header list per request. An id that
is not a valid field value (one the app set) goes the checked way, as a header pair."""
from cpython.bytes cimport PyBytes_AS_STRING
from libc.string cimport memcpy

from fastsock._chars cimport fs_init_char_classes, is_field_value
from fastsock._message cimport Request, Dispatcher, FIRST_APP_ROUTE, ROUTE_NONE

import os

cdef extern from "Python.h":
    int PyUnicode_KIND(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)

cdef extern from *:
    int __builtin_clzll(unsigned long long v) nogil     # (v != 0)

fs_init_char_classes()

cdef const char* HEX = b"0123456789abcdef"

# the marker the id layer sets as req.response_headers (empty: any other reader sends nothing)
cdef list ECHO = []
ECHO_ID = ECHO


cdef class RequestIds:
    """RequestIds().assign(req): req's id, given it if it has none (req.request_id reads it).
    issued: how many were given before (tests start near the end of the count)."""

    def __cinit__(self, unsigned long long issued=0):
        self.issued = issued
        cdef bytes prefix = os.urandom(6).hex().encode("ascii") + b"-"
        memcpy(self.prefix_c, <const char*>prefix, PREFIX_N)
        self.prefix = prefix.decode("ascii")

    cpdef assign(self, Request req):
        cdef unsigned long long v
        cdef int digits
        cdef char* p
        if req._request_id is not None or req.id_len or (req.rid_off >= 0 and req.rid_len > 0):
            return None                 # the client's (read from the head when asked for)
        req.rid_off = -1                # an empty one is none: a new one stands for it
        self.issued += 1
        if self.issued == 0:            # (after 2**64 of them)
            self.issued = 1
        v = self.issued
        digits = (67 - __builtin_clzll(v)) >> 2
        memcpy(req.id_text, self.prefix_c, PREFIX_N)
        p = req.id_text + PREFIX_N + digits
        while v:
            p -= 1
            p[0] = HEX[v & 15]
            v >>= 4
        req.id_len = PREFIX_N + digits
        return None


cdef list echo_id(Request req, const char** id_p, Py_ssize_t* id_n):
    """Where the bytes of req's id to echo are (id_p[0], id_n[0]: in req, valid while it is);
    -> None, or, when the id cannot go out that way (one the app set that is not a valid field
    value, or not a str), the header pair the writer then checks. id_p[0] stays NULL when there
    is nothing to echo that way."""
    cdef const unsigned char* p
    cdef Py_ssize_t n, i
    rid = req._request_id
    if rid is None and req.id_len:
        id_p[0], id_n[0] = req.id_text, req.id_len
        return None
    if rid is not None:
        if type(rid) is not str or PyUnicode_KIND(rid) != 1:
            return [("X-Request-ID", rid)]
        p = <const unsigned char*>PyUnicode_DATA(rid)
        n = PyUnicode_GET_LENGTH(rid)
    elif req.rid_off >= 0 and req._head is not None:
        p = <const unsigned char*>PyBytes_AS_STRING(req._head) + req.rid_off
        n = req.rid_len
    else:
        return None
    for i in range(n):
        if not is_field_value(p[i]):
            return [("X-Request-ID", rid)]
    id_p[0], id_n[0] = <const char*>p, n
    return None


cdef class WithIds(Dispatcher):
    """The request-id layer around a dispatch callable (dispatch.with_request_ids): each
    request gets its id before the app sees it; an app's request (a route of the app's, or
    none) has it echoed and is logged by access_log once answered; the server's own routes
    are logged only when log_health. The connection calls dispatch() from C."""

    def __init__(self, inner, access_log, bint log_health):
        self.inner, self.access_log, self.log_health = inner, access_log, log_health
        self.c_inner = inner if isinstance(inner, Dispatcher) else None
        self.ids = RequestIds()

    @property
    def ids_issued(self):
        return self.ids.issued

    cpdef object dispatch(self, Request req):
        self.ids.assign(req)
        if self.c_inner is not None:        # the app's dispatcher: from C
            result = self.c_inner.dispatch(req)
        else:
            result = self.inner(req)
        if req.route_id >= FIRST_APP_ROUTE or req.route_id == ROUTE_NONE:
            req.response_headers = ECHO     # the connection echoes its id in the head
            req.on_complete = self.access_log
        elif self.log_health:
            req.on_complete = self.access_log
        return result


def echo_of(Request req not None):
    """-> (the bytes echo_id has the writer echo, or None; its header pair instead, or None);
    for tests."""
    cdef const char* id_p = NULL
    cdef Py_ssize_t id_n = 0
    pair = echo_id(req, &id_p, &id_n)
    return (id_p[:id_n] if id_p != NULL else None), pair
