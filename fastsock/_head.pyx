# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""The request head, the parser's first half: the request line and the field lines, each
checked strictly as it comes (RFC 9112: no bare LF, no obs-fold, no whitespace before a colon,
tokens and field values by their character classes), the fields that decide framing, and the
Request built once the whole head is in. Sans-IO: bytes in, a Request or a refusal out.

RequestParser (_parser) is a HeadParser that also reads the body: the head's methods and state
are inherited, so the state machine calls them as its own, through the same C vtable.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.string cimport memchr, memcmp

cdef extern from "Python.h":
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)

from urllib.parse import unquote as _unquote

from fastsock._chars cimport (
    fs_char_class, FS_TARGET, FS_HOST, fs_init_char_classes, is_token, is_field_value, _eq_ci,
    _is_ows,
)
from fastsock._message cimport Request, method_id, method_name

cdef enum:
    MAX_CL_DIGITS = 18      # keeps Content-Length inside a signed 64-bit integer

cdef bytes EMPTY = b""
cdef str SLASH = "/"

fs_init_char_classes()      # this module's own copy of the table (see _chars.pxd)


cdef class HeadParser:
    """The head's half of RequestParser; not used on its own."""

    cdef int _fail(self, ParseError error) noexcept:
        self.state = S_ERROR
        self.error = error
        return PARSE_ERROR

    cdef int _parse_head(self, const char* buf, Py_ssize_t n, Py_ssize_t* end_pos) except -1:
        cdef const char* nl
        cdef Py_ssize_t i, line_end
        while True:
            nl = <const char*>memchr(buf + self.scan_pos, c'\n', n - self.scan_pos)
            if nl == NULL:
                self.scan_pos = n
                if self.head_start < 0:
                    if n - self.line_start > self.max_request_line:
                        return self._fail(E_REQUEST_LINE_TOO_LONG)
                elif n - self.fields_start > self.max_header_bytes:
                    return self._fail(E_HEADER_BLOCK_TOO_LARGE)
                return NEED_DATA
            i = nl - buf
            self.scan_pos = i + 1
            if i == self.line_start or buf[i - 1] != c'\r':
                return self._fail(E_BARE_LF)
            line_end = i - 1
            if self.head_start < 0:
                if line_end == self.line_start:     # empty line before the request line
                    if self.line_start >= 8:
                        return self._fail(E_EMPTY_LINES)
                    self.line_start = i + 1
                    continue
                self.head_start = self.line_start
                if self._request_line(buf + self.line_start,
                                      line_end - self.line_start) == PARSE_ERROR:
                    return PARSE_ERROR
                self.fields_start = i + 1
            elif line_end == self.line_start:       # the empty line: end of the head
                self.line_start = i + 1
                end_pos[0] = self.line_start
                return self._head_done(buf)
            else:
                self.field_count += 1
                if self.field_count > self.max_header_count:
                    return self._fail(E_TOO_MANY_FIELDS)
                if i + 1 - self.fields_start > self.max_header_bytes:
                    return self._fail(E_HEADER_BLOCK_TOO_LARGE)
                if self._field_line(buf + self.line_start, line_end - self.line_start,
                                    False) == PARSE_ERROR:
                    return PARSE_ERROR
            self.line_start = i + 1

    cdef int _request_line(self, const char* p, Py_ssize_t n) noexcept:
        cdef Py_ssize_t i = 0, t0, t1
        if n > self.max_request_line:
            return self._fail(E_REQUEST_LINE_TOO_LONG)
        while i < n and is_token(<unsigned char>p[i]):
            i += 1
        if i == 0 or i >= n or p[i] != c' ':
            return self._fail(E_INVALID_METHOD)
        self.method_end = i
        i += 1
        t0 = i
        while i < n and (fs_char_class[<unsigned char>p[i]] & FS_TARGET):
            i += 1
        t1 = i
        if t1 == t0 or i >= n or p[i] != c' ':
            return self._fail(E_INVALID_TARGET)
        self.target_end = t1
        i += 1
        if n - i != 8 or p[i] != c'H' or p[i+1] != c'T' or p[i+2] != c'T' or p[i+3] != c'P' \
                or p[i+4] != c'/' or p[i+6] != c'.' \
                or not (c'0' <= p[i+5] <= c'9') or not (c'0' <= p[i+7] <= c'9'):
            return self._fail(E_INVALID_VERSION)
        if p[i+5] != c'1' or not (p[i+7] == c'0' or p[i+7] == c'1'):
            return self._fail(E_UNSUPPORTED_VERSION)
        self.minor = p[i+7] - c'0'
        # origin-form, absolute-form, or "*" for OPTIONS
        if p[t0] == c'/':
            return 0
        if t1 - t0 == 1 and p[t0] == c'*' and _eq_ci(p, self.method_end, b"options", 7):
            return 0
        if _eq_ci(p + t0, min(7, t1 - t0), b"http://", 7):
            return self._target_authority(p + t0 + 7, t1 - t0 - 7)
        if _eq_ci(p + t0, min(8, t1 - t0), b"https://", 8):
            return self._target_authority(p + t0 + 8, t1 - t0 - 8)
        return self._fail(E_INVALID_TARGET)

    cdef int _target_authority(self, const char* p, Py_ssize_t n) noexcept:
        """An absolute-form target's authority stands for Host (RFC 9112 §3.2.2): it must name
        a host (an empty one is invalid, RFC 9110 §4.2.1) in Host's characters, and no
        userinfo (§4.2.4: a recipient treats it as an error; it could fake a host to a log)."""
        cdef Py_ssize_t i = 0
        while i < n and p[i] != c'/' and p[i] != c'?':
            if p[i] == c'@' or not (fs_char_class[<unsigned char>p[i]] & FS_HOST):
                return self._fail(E_INVALID_TARGET)
            i += 1
        if i == 0 or p[0] == c':':
            return self._fail(E_INVALID_TARGET)
        return 0

    cdef int _field_line(self, const char* p, Py_ssize_t n, bint trailer) noexcept:
        cdef Py_ssize_t i = 0, colon, v0, v1
        if _is_ows(p[0]):
            return self._fail(E_OBS_FOLD)
        while i < n and is_token(<unsigned char>p[i]):
            i += 1
        if i == 0 or i >= n or p[i] != c':':
            return self._fail(E_INVALID_FIELD_NAME)
        colon = i
        v0 = colon + 1
        while v0 < n and _is_ows(p[v0]):
            v0 += 1
        v1 = n
        while v1 > v0 and _is_ows(p[v1 - 1]):
            v1 -= 1
        for i in range(v0, v1):
            if not is_field_value(<unsigned char>p[i]):
                return self._fail(E_INVALID_FIELD_VALUE)
        if trailer:
            return 0
        return self._framing_field(p, colon, p + v0, v1 - v0)

    cdef int _framing_field(self, const char* name, Py_ssize_t nlen,
                            const char* v, Py_ssize_t vlen) noexcept:
        """Record the fields that decide framing, routing and the connection's fate."""
        cdef Py_ssize_t i
        cdef long long cl = 0
        cdef int c
        if nlen == 4 and _eq_ci(name, 4, b"host", 4):
            self.host_count += 1
            if self.host_count > 1:
                return self._fail(E_DUPLICATE_HOST)
            for i in range(vlen):
                if not (fs_char_class[<unsigned char>v[i]] & FS_HOST):
                    return self._fail(E_INVALID_HOST)
        elif nlen == 14 and _eq_ci(name, 14, b"content-length", 14):
            if self.content_length >= 0:
                return self._fail(E_DUPLICATE_CONTENT_LENGTH)
            if vlen == 0 or vlen > MAX_CL_DIGITS:
                return self._fail(E_INVALID_CONTENT_LENGTH)
            for i in range(vlen):
                c = v[i]
                if not (c'0' <= c <= c'9'):
                    return self._fail(E_INVALID_CONTENT_LENGTH)
                cl = cl * 10 + (c - c'0')
            self.content_length = cl
        elif nlen == 17 and _eq_ci(name, 17, b"transfer-encoding", 17):
            return self._transfer_encoding(v, vlen)
        elif nlen == 10 and _eq_ci(name, 10, b"connection", 10):
            self._connection_tokens(v, vlen)
        elif nlen == 10 and _eq_ci(name, 10, b"user-agent", 10):
            self.ua_off = self.line_start - self.head_start + (v - name)
            self.ua_len = vlen
        elif nlen == 12 and _eq_ci(name, 12, b"x-request-id", 12):
            self.rid_off = self.line_start - self.head_start + (v - name)
            self.rid_len = vlen
        elif nlen == 6 and _eq_ci(name, 6, b"expect", 6) and self.minor == 1:
            if not _eq_ci(v, vlen, b"100-continue", 12):
                return self._fail(E_UNSUPPORTED_EXPECTATION)
            self.expect_continue = True
        return 0

    cdef int _transfer_encoding(self, const char* v, Py_ssize_t vlen) noexcept:
        """Only a single, final "chunked" is accepted: anything else is 501 when it names a
        coding we do not implement, 400 when it cannot be framed."""
        cdef Py_ssize_t i = 0, t0, t1
        cdef bint unknown = False
        while True:
            while i < vlen and _is_ows(v[i]):
                i += 1
            t0 = i
            while i < vlen and is_token(<unsigned char>v[i]):
                i += 1
            t1 = i
            while i < vlen and _is_ows(v[i]):
                i += 1
            if t1 == t0 or (i < vlen and v[i] != c','):
                return self._fail(E_INVALID_TRANSFER_ENCODING)
            if self.chunked:                     # chunked must be the final coding, once
                return self._fail(E_CHUNKED_NOT_FINAL)
            if _eq_ci(v + t0, t1 - t0, b"chunked", 7):
                self.chunked = True
            else:
                unknown = True
            self.has_te = True
            if i >= vlen:
                break
            i += 1
        if unknown:
            return self._fail(E_UNSUPPORTED_CODING)
        return 0

    cdef void _connection_tokens(self, const char* v, Py_ssize_t vlen) noexcept:
        cdef Py_ssize_t i = 0, t0, t1
        while i < vlen:
            while i < vlen and (_is_ows(v[i]) or v[i] == c','):
                i += 1
            t0 = i
            while i < vlen and v[i] != c',':
                i += 1
            t1 = i
            while t1 > t0 and _is_ows(v[t1 - 1]):
                t1 -= 1
            if _eq_ci(v + t0, t1 - t0, b"close", 5):
                self.conn_close = True
            elif _eq_ci(v + t0, t1 - t0, b"keep-alive", 10):
                self.conn_keep_alive = True

    cdef int _head_done(self, const char* buf) except -1:
        """The head is whole and every line is valid: check the framing, build the request."""
        cdef Request req
        cdef const char* line = buf + self.head_start
        cdef const char* t
        cdef const char* q
        cdef const char* slash
        cdef Py_ssize_t tn, pn
        if self.minor == 1 and self.host_count == 0:
            return self._fail(E_MISSING_HOST)
        if self.has_te:
            if self.content_length >= 0:
                return self._fail(E_CL_AND_TE)
            if self.minor == 0:
                return self._fail(E_TE_IN_HTTP10)
            if not self.chunked:
                return self._fail(E_CHUNKED_NOT_FINAL)
        if self.content_length > self.max_body_size and not self.announce_heads:
            return self._fail(E_BODY_TOO_LARGE)

        req = Request.__new__(Request)
        req.method_id = method_id(line, self.method_end)
        req.method = (method_name(req.method_id) if req.method_id else
                      PyUnicode_DecodeASCII(line, self.method_end, NULL))
        t = line + self.method_end + 1
        tn = self.target_end - self.method_end - 1
        if t[0] != c'/' and t[0] != c'*':   # absolute-form: keep the path and what follows
            slash = <const char*>memchr(t, c'/', tn)            # the "//" after the scheme
            slash = <const char*>memchr(slash + 2, c'/', tn - (slash + 2 - t)) \
                if slash != NULL and slash + 2 < t + tn else NULL
            if slash != NULL:
                tn -= slash - t
                t = slash
            else:
                tn = 0                      # no path after the authority: "/"
        q = <const char*>memchr(t, c'?', tn)
        pn = q - t if q != NULL else tn
        if memchr(t, c'%', pn) != NULL:
            req.path = _unquote(PyUnicode_DecodeASCII(t, pn, NULL))
        elif pn == 0:
            req.path = SLASH
        else:                   # a keep-alive client often asks for the same path again
            if not (self.last_path is not None and PyUnicode_GET_LENGTH(self.last_path) == pn
                    and memcmp(PyUnicode_DATA(self.last_path), t, pn) == 0):
                self.last_path = PyUnicode_DecodeASCII(t, pn, NULL)
            req.path = self.last_path
        # one copy of the head; raw_path, query_string and the fields are read from it lazily
        req._head = PyBytes_FromStringAndSize(line, self.line_start - self.head_start)
        req.fields_off = self.fields_start - self.head_start
        req.path_off, req.path_len = t - line, pn
        req.query_off = (q + 1 - line) if q != NULL else -1
        req.query_len = tn - pn - 1 if q != NULL else 0
        req.is_http11 = self.minor == 1
        # close wins wherever it appears (beside an HTTP/1.0 keep-alive too)
        req.keep_alive = not self.conn_close and (self.minor == 1 or self.conn_keep_alive)
        req.ua_off, req.ua_len = self.ua_off, self.ua_len
        req.rid_off, req.rid_len = self.rid_off, self.rid_len
        self.pending = req
        if (self.chunked or self.content_length > 0) and self.announce_heads:
            self.remaining = self.content_length
            self.state = S_HEAD_DONE        # the body limit is checked when parsing resumes
        elif self.chunked:
            self.state = S_CHUNK_SIZE
        elif self.content_length > 0:
            self.state = S_BODY_CL
            self.remaining = self.content_length
        else:
            req.body = EMPTY
            self.expect_continue = False
            self.state = S_READY
        return REQUEST_READY
