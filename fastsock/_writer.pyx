# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The response side: the serializer that appends a handler's result to an output buffer
(_outbuf), as a head, a whole body, or the chunks of a streamed one.

Every header line it writes is checked first (a token for the name, no CR, LF or other control
character in the value); framing headers are the server's. The Date line is the caller's: the
loop makes it once a second and hands it in; so is the request id it echoes (X-Request-ID,
bytes the caller has checked), written before the Date line.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8String
from libc.string cimport memcpy

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)

from fastsock._json cimport json_bytes
from fastsock._message cimport Response
from fastsock._chars cimport fs_init_char_classes, is_token, is_field_value

import logging

fs_init_char_classes()
error_log = logging.getLogger("fastsock.error")

EPOCH_DATE_LINE = b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"


_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 418: "I'm a teapot", 411: "Length Required", 412: "Precondition Failed",
    413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 417: "Expectation Failed",
    422: "Unprocessable Content", 426: "Upgrade Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}
cdef list _STATUS_LINES = [None] * 600
for _code in range(100, 600):
    _STATUS_LINES[_code] = f"HTTP/1.1 {_code} {_REASONS.get(_code, '')}\r\n".encode("ascii")

cdef bytes CT_TEXT = b"Content-Type: text/plain; charset=utf-8\r\n"
cdef bytes CT_BYTES = b"Content-Type: application/octet-stream\r\n"
cdef bytes CT_JSON = b"Content-Type: application/json\r\n"
# the start of a str, bytes or JSON answer: one write
cdef bytes START_TEXT = _STATUS_LINES[200] + CT_TEXT
cdef bytes START_BYTES = _STATUS_LINES[200] + CT_BYTES
cdef bytes START_JSON = _STATUS_LINES[200] + CT_JSON
cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes CONN_CLOSE = b"Connection: close\r\n"
cdef bytes CONN_KEEP = b"Connection: keep-alive\r\n"
cdef bytes TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
# framing is the server's: a handler cannot set these
cdef frozenset _FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})


class _UnknownLength:
    """The body of a HEAD response whose GET length is not known (a WSGI or ASGI app's that
    came without its body or a Content-Length): the head goes out with no framing at all,
    rather than a "Content-Length: 0" its GET would belie."""

    def __repr__(self):
        return "UNKNOWN_LENGTH"

    def __iter__(self):             # an iterator of nothing, should a GET ever pull it
        return self

    def __next__(self):
        raise StopIteration


UNKNOWN_LENGTH = _UnknownLength()
cdef object _UNKNOWN_LENGTH = UNKNOWN_LENGTH


cdef enum:
    TAIL_ROOM = 256             # the end of a usual head: Content-Length, Connection, the
                                # request id, Date
    DATE_MAX = 96               # a Date line longer than this is written on its own
    ID_MAX = 64                 # so is a request id longer than this


cdef inline char* _put(char* p, const char* src, Py_ssize_t n) noexcept:
    memcpy(p, src, n)
    return p + n


cdef int _write_tail(OutBuffer out, Py_ssize_t length, bint keep_alive, bint http11,
                     list extra_headers, bytes date_line, const char* id_p,
                     Py_ssize_t id_n) except -1:
    """The end of the head: Content-Length (unless length < 0), the server's own header lines,
    the request id's line (id_p: NULL for none), the Date line and the blank line, made on the
    stack and written at once (one write of the buffer's, not five, per response)."""
    cdef char tail[TAIL_ROOM]
    cdef char digits[24]
    cdef char* p = tail
    cdef int i = 24
    cdef Py_ssize_t date_n = PyBytes_GET_SIZE(date_line)
    if length >= 0:
        if length == 0:
            i -= 1
            digits[i] = c'0'
        while length > 0:
            i -= 1
            digits[i] = c'0' + length % 10
            length //= 10
        p = _put(p, "Content-Length: ", 16)
        p = _put(p, digits + i, 24 - i)
        p = _put(p, "\r\n", 2)
    if not keep_alive:
        p = _put(p, PyBytes_AS_STRING(CONN_CLOSE), PyBytes_GET_SIZE(CONN_CLOSE))
    elif not http11:
        p = _put(p, PyBytes_AS_STRING(CONN_KEEP), PyBytes_GET_SIZE(CONN_KEEP))
    cdef bint server_date = False       # (the server's extra headers carry no Date)
    if extra_headers or date_n > DATE_MAX or id_n > ID_MAX:
        out.write(tail, p - tail)
        p = tail
        if extra_headers:
            _write_headers(out, extra_headers, &server_date)
        if id_p != NULL and (id_n > ID_MAX or date_n > DATE_MAX):   # before the Date
            out.write(b"X-Request-ID: ", 14)
            out.write(id_p, id_n)
            out.write(b"\r\n", 2)
            id_p = NULL
        if date_n > DATE_MAX:
            out.write_bytes(date_line)
            date_n = 0
    if id_p != NULL:
        p = _put(p, "X-Request-ID: ", 14)
        p = _put(p, id_p, id_n)
        p = _put(p, "\r\n", 2)
    p = _put(p, PyBytes_AS_STRING(date_line), date_n)
    p = _put(p, "\r\n", 2)
    return out.write(tail, p - tail)


cdef int _check_value(bytes value_b, object name) except -1:
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(value_b)
    cdef Py_ssize_t i
    for i in range(PyBytes_GET_SIZE(value_b)):
        if not is_field_value(p[i]):                # CR, LF, NUL and other controls
            raise ValueError(f"invalid character in response header {name!r}")
    return 0


cdef inline bint _is_framing(bytes name_b):
    """Content-Length, Transfer-Encoding or Connection, in any case: the server's to set."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(name_b)
    if n != 10 and n != 14 and n != 17:
        return False
    return name_b.lower() in _FRAMING


cdef inline bint _is_date(const unsigned char* p, Py_ssize_t n) noexcept:
    return n == 4 and (p[0] | 0x20) == c'd' and (p[1] | 0x20) == c'a' and \
        (p[2] | 0x20) == c't' and (p[3] | 0x20) == c'e'


cdef Py_ssize_t _write_headers(OutBuffer out, list headers, bint* has_date) except -2:
    """The handler's header lines, each checked (names tokens, values without controls), as
    str or bytes. The framing ones are the server's to write: dropped, but the Content-Length
    the app declared is returned (-1: none), a promise the server keeps (see write_response);
    one that is not a number, or two that disagree, make the response invalid. A Date of the
    handler's is kept, and has_date[0] set: the server's is then left out (RFC 9110 §6.6.1:
    one Date)."""
    cdef bytes name_b, value_b
    cdef Py_ssize_t length = -1, declared
    cdef const unsigned char* p
    cdef Py_ssize_t i, n
    for name, value in headers:
        name_b = <bytes>name if type(name) is bytes else str(name).encode("latin-1")
        value_b = <bytes>value if type(value) is bytes else str(value).encode("latin-1")
        p = <const unsigned char*>PyBytes_AS_STRING(name_b)
        n = PyBytes_GET_SIZE(name_b)
        if n == 0:
            raise ValueError("empty response header name")
        for i in range(n):
            if not is_token(p[i]):
                raise ValueError(f"invalid response header name {name!r}")
        _check_value(value_b, name)
        if _is_date(p, n):
            has_date[0] = True
        elif _is_framing(name_b):
            if n == 14 and name_b.lower() == b"content-length":
                if not value_b.isdigit() or PyBytes_GET_SIZE(value_b) > 18:
                    raise ValueError(f"invalid response Content-Length {value!r}")
                declared = int(value_b)
                if length >= 0 and declared != length:
                    raise ValueError("two response Content-Length values that disagree")
                length = declared
            continue
        out.write_bytes(name_b)
        out.write(b": ", 2)
        out.write_bytes(value_b)
        out.write(b"\r\n", 2)
    return length


cdef object write_response(OutBuffer out, object result, bint keep_alive, bint head_only,
                           bint http11, list extra_headers, bytes date_line,
                           Py_ssize_t* owed, const char* id_p, Py_ssize_t id_n):
    """Append the response for a handler's result (str, bytes, dict/list as JSON, or
    Response). extra_headers: (name, value) pairs the server adds; id_p (NULL: none), the
    request id to echo (id_n bytes, valid as a field value). Returns the iterator to
    stream the body from, or None when the response is complete; owed[0] is then the length
    a streamed body declared (Content-Length framing: the caller counts what it sends), or -1
    (chunked, or delimited by the close). On error nothing is left in the buffer and the
    exception propagates.

    An app's Content-Length is kept: a whole body of another length is an invalid response
    (nothing of it is sent); HEAD gets the declared length without the body, a stream's
    framing (chunked) without the body, or none for a body of UNKNOWN_LENGTH; 204 and 304
    carry neither a body nor its framing. An app's Date replaces the server's."""
    cdef type t = type(result)
    cdef bytes body = None, ct
    cdef const char* body_p = NULL
    cdef Py_ssize_t body_n = 0
    cdef Response resp
    cdef unsigned long long mark = out.mark()    # not out.end: a write may slide the buffer
    cdef int status
    cdef Py_ssize_t declared = -1
    cdef bint has_date = False
    # the Date line sent (the app's in place of it: b""), borrowed: date_line is never
    # assigned, so it is not a reference of this call's to take and drop per response
    cdef PyObject* date = <PyObject*>date_line
    owed[0] = -1
    try:
        if t is str:
            if PyUnicode_IS_ASCII(result):      # its bytes are its UTF-8: no copy to make
                body_p = <const char*>PyUnicode_DATA(result)
                body_n = PyUnicode_GET_LENGTH(result)
            else:
                body = PyUnicode_AsUTF8String(result)
            out.write_bytes(START_TEXT)
        elif t is bytes:
            body = <bytes>result
            out.write_bytes(START_BYTES)
        elif t is dict or t is list:
            body = json_bytes(result)
            out.write_bytes(START_JSON)
        elif t is Response:
            resp = <Response>result
            status = resp.status
            if status < 200 or status > 599:
                raise ValueError(f"invalid response status {status}")
            out.write_bytes(<bytes>_STATUS_LINES[status])
            if resp.content_type is not None:
                ct = resp.content_type.encode("latin-1")
                _check_value(ct, "Content-Type")
                out.write(b"Content-Type: ", 14)
                out.write_bytes(ct)
                out.write(b"\r\n", 2)
            if resp.headers:
                declared = _write_headers(out, resp.headers, &has_date)
                if has_date:                # the app's Date is the one sent
                    date = <PyObject*>b""
            if status == 204 or status == 304:      # bodiless: no framing, never pulled
                _write_tail(out, -1, keep_alive, http11, extra_headers, <bytes>date, id_p, id_n)
                if type(resp.body) is not bytes:
                    close_stream(resp.body)
                return None
            if head_only and declared >= 0:     # HEAD: the length GET would have had
                _write_tail(out, declared, keep_alive, http11, extra_headers, <bytes>date, id_p,
                            id_n)
                if type(resp.body) is not bytes:
                    owed[0] = declared          # (the caller keeps the connection by it)
                return resp.body if type(resp.body) is not bytes else None
            if type(resp.body) is not bytes:     # an iterator: stream it
                if declared >= 0:               # framed by the app's length, counted
                    owed[0] = declared
                elif http11 and not (head_only and resp.body is _UNKNOWN_LENGTH):
                    out.write_bytes(TE_CHUNKED)
                else:
                    keep_alive = False           # HTTP/1.0: the body ends when the connection does
                _write_tail(out, declared, keep_alive, http11, extra_headers, <bytes>date, id_p,
                            id_n)
                return resp.body
            body = <bytes>resp.body
            if declared >= 0 and not head_only and declared != PyBytes_GET_SIZE(body):
                raise ValueError(f"a body of {PyBytes_GET_SIZE(body)} bytes with "
                                 f"Content-Length: {declared}")
        else:
            raise TypeError(f"cannot send a {t.__name__} as a response")
        if body is not None:
            body_p = PyBytes_AS_STRING(body)
            body_n = PyBytes_GET_SIZE(body)
        _write_tail(out, body_n, keep_alive, http11, extra_headers, <bytes>date, id_p, id_n)
    except BaseException:
        out.rollback(mark)                  # nothing was sent meanwhile: all of it goes
        raise
    if not head_only:
        if body_n >= BUFFER_SIZE:           # large: sent from the body object itself
            out.write_tail(body if body is not None else result, body_p, body_n)
        else:
            out.write(body_p, body_n)
    return None


cdef void close_stream(object it):
    """A streamed body that will not be pulled (any more): its close(), if it has one (the
    WSGI and ASGI adapters' streams take it as "no body will be sent")."""
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            error_log.exception("closing a streamed response failed")


cdef inline bytes _chunk_bytes(object chunk):
    """A streamed chunk as bytes: str (UTF-8), bytes, bytearray or memoryview; anything else
    is the stream's failure, never something sent."""
    cdef type t = type(chunk)
    if t is bytes:
        return <bytes>chunk
    if t is str:
        return PyUnicode_AsUTF8String(chunk)
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return PyUnicode_AsUTF8String(chunk)
    raise TypeError(f"a stream yielded a {t.__name__}: only str and bytes-like chunks are sent")


cdef int write_chunk(OutBuffer out, object chunk) except -1:
    """One chunk of a chunked body. An empty one is skipped: it would end the body early."""
    cdef bytes b = _chunk_bytes(chunk)
    cdef char size[20]
    cdef int i = 20
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    if n == 0:
        return 0
    while n > 0:
        i -= 1
        size[i] = b"0123456789abcdef"[n % 16]
        n //= 16
    out.write(size + i, 20 - i)
    out.write(b"\r\n", 2)
    out.write_bytes(b)
    out.write(b"\r\n", 2)
    return 0


cdef int write_raw_chunk(OutBuffer out, object chunk) except -1:
    """One piece of a body delimited by the connection's close (HTTP/1.0)."""
    out.write_bytes(_chunk_bytes(chunk))
    return 0


cdef Py_ssize_t write_counted_chunk(OutBuffer out, object chunk, Py_ssize_t left) except -1:
    """One piece of a body framed by its Content-Length, of which `left` bytes are still due:
    at most that many are written. Returns the piece's whole length (more than left: the app
    sent more than it declared)."""
    cdef bytes b = _chunk_bytes(chunk)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    out.write(PyBytes_AS_STRING(b), n if n <= left else left)
    return n


cdef int write_stream_end(OutBuffer out) except -1:
    out.write(b"0\r\n\r\n", 5)
    return 0


cdef int write_continue(OutBuffer out) except -1:
    out.write_bytes(CONTINUE)
    return 0


# a cache: each get or set is one dict operation under the GIL, and racers store the same body
cdef dict _ERROR_BODIES = {}

cdef int write_error(OutBuffer out, int status, bytes date_line) except -1:
    """A refusal by the server itself: short text body, and the connection closes."""
    cdef bytes body = _ERROR_BODIES.get(status)
    if body is None:
        body = f"{status} {_REASONS.get(status, 'Error')}\n".encode("ascii")
        _ERROR_BODIES[status] = body
    out.write_bytes(<bytes>_STATUS_LINES[status])
    out.write_bytes(CT_TEXT)
    _write_tail(out, PyBytes_GET_SIZE(body), False, True, None, date_line, NULL, 0)
    out.write_bytes(body)
    return 0


# ---------------------------------------------------------------- Python API, for tests

def serialize(result, bint keep_alive=True, bint head_only=False, bint http11=True,
              list extra_headers=None, bytes date_line=EPOCH_DATE_LINE, bytes request_id=None):
    """The bytes the server would send for a handler's result (streamed bodies drained), with
    request_id echoed when given."""
    cdef OutBuffer out = OutBuffer()
    cdef Py_ssize_t owed, id_n = 0
    cdef const char* id_p = NULL
    if request_id is not None:
        id_p, id_n = PyBytes_AS_STRING(request_id), PyBytes_GET_SIZE(request_id)
    it = write_response(out, result, keep_alive, head_only, http11, extra_headers, date_line,
                        &owed, id_p, id_n)
    if it is not None and not head_only:
        for chunk in it:
            if owed >= 0:
                owed -= min(owed, write_counted_chunk(out, chunk, owed))
            elif http11:
                write_chunk(out, chunk)
            else:
                write_raw_chunk(out, chunk)
        if http11 and owed < 0:
            write_stream_end(out)
    return out.getvalue()


def error_response(int status, bytes date_line=EPOCH_DATE_LINE):
    cdef OutBuffer out = OutBuffer()
    write_error(out, status, date_line)
    return out.getvalue()
