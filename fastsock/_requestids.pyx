# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Request ids: the client's X-Request-ID (an empty one is none), else a new one (this
worker's random prefix and a counter, in hex), made once per request; and the
"X-Request-ID: ..." line that echoes it, put before the Date line the writer ends every head
with: the id needs no header list of its own (a list, a tuple and their encoding and checks per
request). An id that is not a valid field value (one the app set) goes the checked way, as a
header pair."""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memcpy

from fastsock._chars cimport fs_init_char_classes, is_field_value
from fastsock._message cimport Request, FIRST_APP_ROUTE, ROUTE_NONE

import os

cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, unsigned int maxchar)
    int PyUnicode_KIND(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)

fs_init_char_classes()

cdef const char* HEX = b"0123456789abcdef"
cdef const char* NAME = b"X-Request-ID: "
# the marker the id layer sets as req.response_headers (empty: any other reader sends nothing)
cdef list ECHO = []
ECHO_ID = ECHO


cdef class RequestIds:
    """RequestIds().assign(req): req's id, given it if it has none (req.request_id reads it)."""

    def __cinit__(self):
        self.prefix = os.urandom(6).hex() + "-"

    cpdef assign(self, Request req):
        cdef char buf[40]
        cdef Py_ssize_t n = PyUnicode_GET_LENGTH(self.prefix), i = 40
        cdef unsigned long long v
        if req._request_id is not None or (req.rid_off >= 0 and req.rid_len > 0):
            return None                 # the client's (read from the head when asked for)
        req.rid_off = -1                # an empty one is none: a new one stands for it
        self.issued += 1
        v = self.issued
        while True:
            i -= 1
            buf[i] = HEX[v & 15]
            v >>= 4
            if v == 0:
                break
        i -= n
        memcpy(buf + i, PyUnicode_DATA(self.prefix), n)
        rid = PyUnicode_New(40 - i, 127)
        memcpy(PyUnicode_DATA(rid), buf + i, 40 - i)
        req._request_id = rid
        return None


cdef bytes echo_lines(Request req, bytes date_line):
    """ "X-Request-ID: <id>\\r\\n" then date_line; None when req's id is not sent this way (none,
    or not a valid field value: the caller checks it as a header)."""
    cdef const unsigned char* id_p
    cdef Py_ssize_t id_n, i, date_n = PyBytes_GET_SIZE(date_line)
    cdef char* p
    rid = req._request_id
    if rid is not None:
        if type(rid) is not str or PyUnicode_KIND(rid) != 1:
            return None
        id_p = <const unsigned char*>PyUnicode_DATA(rid)
        id_n = PyUnicode_GET_LENGTH(rid)
    elif req.rid_off >= 0 and req._head is not None:
        id_p = <const unsigned char*>PyBytes_AS_STRING(req._head) + req.rid_off
        id_n = req.rid_len
    else:
        return None
    for i in range(id_n):
        if not is_field_value(id_p[i]):
            return None
    lines = PyBytes_FromStringAndSize(NULL, 16 + id_n + date_n)
    p = PyBytes_AS_STRING(lines)
    memcpy(p, NAME, 14)
    memcpy(p + 14, id_p, id_n)
    p[14 + id_n] = c'\r'
    p[15 + id_n] = c'\n'
    memcpy(p + 16 + id_n, PyBytes_AS_STRING(date_line), date_n)
    return lines


cdef class WithIds:
    """The request-id layer around a dispatch callable (dispatch.with_request_ids): each
    request gets its id before the app sees it; an app's request (a route of the app's, or
    none) has it echoed and is logged by access_log once answered; the server's own routes
    are logged only when log_health. The connection calls dispatch() from C."""

    def __init__(self, inner, access_log, bint log_health):
        self.inner, self.access_log, self.log_health = inner, access_log, log_health
        self.ids = RequestIds()

    def __call__(self, Request req not None):
        return self.dispatch(req)

    @property
    def ids_issued(self):
        return self.ids.issued

    cdef object dispatch(self, Request req):
        self.ids.assign(req)
        result = self.inner(req)
        if req.route_id >= FIRST_APP_ROUTE or req.route_id == ROUTE_NONE:
            req.response_headers = ECHO     # the connection echoes its id in the head
            req.on_complete = self.access_log
        elif self.log_health:
            req.on_complete = self.access_log
        return result


def echo_lines_of(Request req not None, bytes date_line not None):
    """echo_lines, for tests."""
    return echo_lines(req, date_line)
