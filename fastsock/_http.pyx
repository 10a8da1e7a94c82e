# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Sans-IO HTTP/1.1: a strict, incremental request parser and the response serializer.

Bytes in, requests or a refusal out. No sockets, no clocks: the loop hands in bytes and the
current Date line, and takes out requests and response bytes.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_AsUTF8String, PyUnicode_DecodeASCII, PyUnicode_DecodeLatin1
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memchr, memcpy, memmove

import json as _json
from urllib.parse import parse_qsl as _parse_qsl, unquote as _unquote

from fastsock.datastructures import Headers, MultiDict

cdef enum:                  # parser states (in_body() in the .pxd relies on 1..5)
    S_HEAD = 0
    S_BODY_CL = 1
    S_CHUNK_SIZE = 2
    S_CHUNK_DATA = 3
    S_CHUNK_CRLF = 4
    S_TRAILERS = 5
    S_READY = 8
    S_ERROR = 9

cdef enum:
    MAX_CL_DIGITS = 18      # keeps Content-Length inside a signed 64-bit integer
    MAX_CHUNK_DIGITS = 15

# character classes, filled once at import
cdef bint TOKEN[256]        # RFC 9110 tchar
cdef bint FIELD_VALUE[256]  # field-vchar, SP, HTAB, obs-text
cdef bint TARGET[256]       # visible ASCII, as a request-target may hold
cdef bint HOST[256]         # reg-name / IP-literal / port characters

cdef void _init_tables() noexcept:
    cdef int c
    for c in range(256):
        TOKEN[c] = (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122
                    or c in b"!#$%&'*+-.^_`|~")
        FIELD_VALUE[c] = c == 9 or (32 <= c <= 126) or c >= 128
        TARGET[c] = 33 <= c <= 126
        HOST[c] = (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122
                   or c in b"-._~!$&'()*+,;=:%[]")

_init_tables()

cdef inline int _lower(int c) noexcept:
    return c + 32 if 65 <= c <= 90 else c

cdef inline bint _eq_ci(const char* p, Py_ssize_t n, const char* lit, Py_ssize_t litn) noexcept:
    """Case-insensitive compare of p[:n] with an all-lowercase literal."""
    cdef Py_ssize_t i
    if n != litn:
        return False
    for i in range(n):
        if _lower(<unsigned char>p[i]) != <unsigned char>lit[i]:
            return False
    return True

cdef inline bint _is_ows(char c) noexcept:
    return c == c' ' or c == c'\t'


# interned method names, so a request costs no new str for them; ids label metrics (0: other)
METHOD_NAMES = ("other", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                "CONNECT")
cdef dict _METHODS = {m.encode(): (m, i) for i, m in enumerate(METHOD_NAMES) if i}

# every reason the parser refuses a request for; an index here labels the parse error counter
ERROR_REASONS = (
    "request head too large", "bare LF", "empty lines before request line",
    "request line too long", "header block too large", "too many header fields",
    "invalid method", "invalid request target", "invalid HTTP version",
    "unsupported HTTP version", "obs-fold", "invalid field name",
    "invalid character in field value", "duplicate Host", "invalid Host", "missing Host",
    "duplicate Content-Length", "invalid Content-Length", "invalid Transfer-Encoding",
    "chunked is not the final coding", "unsupported transfer coding",
    "both Content-Length and Transfer-Encoding", "Transfer-Encoding in HTTP/1.0",
    "unsupported expectation", "body too large", "chunk size line too long",
    "bare LF in chunk size line", "bad chunk terminator", "bare LF in trailer",
    "trailer section too large", "invalid chunk size", "chunk size overflow",
    "chunk extension too long", "invalid chunk extension",
)


cdef class Request:
    """One HTTP request, as the handler sees it. Headers and query are decoded on first use."""

    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers(_split_fields(self._head))
        return self._headers

    @property
    def query(self):
        if self._query is None:
            self._query = MultiDict(_parse_qsl(self.query_string.decode("latin-1"),
                                               keep_blank_values=True))
        return self._query

    def json(self):
        return _json.loads(self.body)

    @property
    def user_agent(self):
        if self.ua_off < 0:
            return None
        return self._head[self.ua_off:self.ua_off + self.ua_len].decode("latin-1")

    @property
    def request_id(self):
        """The client's X-Request-ID, if it sent one."""
        if self.rid_off < 0:
            return None
        return self._head[self.rid_off:self.rid_off + self.rid_len].decode("latin-1")

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"


cdef list _split_fields(bytes head):
    """Field lines of an already validated head -> [(lowercased name, value), ...]."""
    cdef list out = []
    cdef bytes line
    for line in head.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return out


cdef class RequestParser:
    """Strict RFC 9112 request parser. Feed it the bytes of the current request from their first
    byte; it consumes a request's head only once the whole head is there, its body as it comes."""

    def __cinit__(self, Py_ssize_t max_request_line=8192, Py_ssize_t max_header_bytes=65536,
                  Py_ssize_t max_header_count=100, Py_ssize_t max_body_size=1048576,
                  Py_ssize_t max_chunk_ext=1024):
        self.max_request_line = max_request_line
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_size = max_body_size
        self.max_chunk_ext = max_chunk_ext
        self._reset()
        self.error_status = 0
        self.error_reason = None
        # the Python-level feed() keeps its own buffer; the loop keeps the connection's
        self._pybuf = None

    def __dealloc__(self):
        free(self.body_buf)

    cdef void _reset(self) noexcept:
        self.state = S_HEAD
        self.scan_pos = 0
        self.line_start = 0
        self.head_start = -1
        self.fields_start = 0
        self.field_count = 0
        self.host_count = 0
        self.content_length = -1
        self.chunked = False
        self.has_te = False
        self.conn_close = False
        self.conn_keep_alive = False
        self.expect_continue = False
        self.ua_off = self.rid_off = -1
        self.ua_len = self.rid_len = 0
        self.remaining = 0
        self.body_len = 0
        self.trailer_bytes = 0

    cdef int _fail(self, int status, str reason) except -1:
        self.state = S_ERROR
        self.error_status = status
        self.error_reason = reason
        return PARSE_ERROR

    # ---------------------------------------------------------------- the state machine

    cdef int parse(self, const char* buf, Py_ssize_t n, Py_ssize_t* consumed) except -1:
        """Parse buf[:n], the unconsumed bytes of the current request onward. Sets consumed[0] to
        how many bytes the caller may drop, and returns NEED_DATA, REQUEST_READY, SEND_CONTINUE or
        PARSE_ERROR."""
        cdef Py_ssize_t pos = 0
        cdef int r
        consumed[0] = 0
        if self.state == S_ERROR:
            return PARSE_ERROR
        if self.state == S_READY:
            return REQUEST_READY
        if self.state == S_HEAD:
            r = self._parse_head(buf, n, &pos)
            if r != REQUEST_READY:
                return r
            consumed[0] = pos
            if self.state == S_READY:
                return REQUEST_READY
            if self.expect_continue and pos == n:
                # the body has not started: the client is waiting to be told to send it
                return SEND_CONTINUE
        r = self._parse_body(buf, n, &pos)
        consumed[0] = pos
        return r

    cdef int _parse_head(self, const char* buf, Py_ssize_t n, Py_ssize_t* end_pos) except -1:
        cdef const char* nl
        cdef Py_ssize_t i, line_end
        while True:
            nl = <const char*>memchr(buf + self.scan_pos, c'\n', n - self.scan_pos)
            if nl == NULL:
                self.scan_pos = n
                if self.head_start < 0:
                    if n - self.line_start > self.max_request_line:
                        return self._fail(414, "request line too long")
                elif n - self.fields_start > self.max_header_bytes:
                    return self._fail(431, "header block too large")
                return NEED_DATA
            i = nl - buf
            self.scan_pos = i + 1
            if i == self.line_start or buf[i - 1] != c'\r':
                return self._fail(400, "bare LF")
            line_end = i - 1
            if self.head_start < 0:
                if line_end == self.line_start:     # empty line before the request line
                    if self.line_start >= 8:
                        return self._fail(400, "empty lines before request line")
                    self.line_start = i + 1
                    continue
                self.head_start = self.line_start
                if self._request_line(buf + self.line_start, line_end - self.line_start) == PARSE_ERROR:
                    return PARSE_ERROR
                self.fields_start = i + 1
            elif line_end == self.line_start:       # the empty line: end of the head
                self.line_start = i + 1
                end_pos[0] = self.line_start
                return self._head_done(buf)
            else:
                self.field_count += 1
                if self.field_count > self.max_header_count:
                    return self._fail(431, "too many header fields")
                if i + 1 - self.fields_start > self.max_header_bytes:
                    return self._fail(431, "header block too large")
                if self._field_line(buf + self.line_start, line_end - self.line_start, False) == PARSE_ERROR:
                    return PARSE_ERROR
            self.line_start = i + 1

    cdef int _request_line(self, const char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t i = 0, t0, t1
        if n > self.max_request_line:
            return self._fail(414, "request line too long")
        while i < n and TOKEN[<unsigned char>p[i]]:
            i += 1
        if i == 0 or i >= n or p[i] != c' ':
            return self._fail(400, "invalid method")
        self.method_end = i
        i += 1
        t0 = i
        while i < n and TARGET[<unsigned char>p[i]]:
            i += 1
        t1 = i
        if t1 == t0 or i >= n or p[i] != c' ':
            return self._fail(400, "invalid request target")
        self.target_end = t1
        i += 1
        if n - i != 8 or p[i] != c'H' or p[i+1] != c'T' or p[i+2] != c'T' or p[i+3] != c'P' \
                or p[i+4] != c'/' or p[i+6] != c'.' \
                or not (c'0' <= p[i+5] <= c'9') or not (c'0' <= p[i+7] <= c'9'):
            return self._fail(400, "invalid HTTP version")
        if p[i+5] != c'1' or not (p[i+7] == c'0' or p[i+7] == c'1'):
            return self._fail(505, "unsupported HTTP version")
        self.minor = p[i+7] - c'0'
        # origin-form, absolute-form, or "*" for OPTIONS
        if p[t0] == c'/':
            return 0
        if t1 - t0 == 1 and p[t0] == c'*' and _eq_ci(p, self.method_end, b"options", 7):
            return 0
        if (_eq_ci(p + t0, min(7, t1 - t0), b"http://", 7)
                or _eq_ci(p + t0, min(8, t1 - t0), b"https://", 8)):
            return 0
        return self._fail(400, "invalid request target")

    cdef int _field_line(self, const char* p, Py_ssize_t n, bint trailer) except -1:
        cdef Py_ssize_t i = 0, colon, v0, v1
        if _is_ows(p[0]):
            return self._fail(400, "obs-fold")
        while i < n and TOKEN[<unsigned char>p[i]]:
            i += 1
        if i == 0 or i >= n or p[i] != c':':
            return self._fail(400, "invalid field name")
        colon = i
        v0 = colon + 1
        while v0 < n and _is_ows(p[v0]):
            v0 += 1
        v1 = n
        while v1 > v0 and _is_ows(p[v1 - 1]):
            v1 -= 1
        for i in range(v0, v1):
            if not FIELD_VALUE[<unsigned char>p[i]]:
                return self._fail(400, "invalid character in field value")
        if trailer:
            return 0
        return self._framing_field(p, colon, p + v0, v1 - v0)

    cdef int _framing_field(self, const char* name, Py_ssize_t nlen,
                            const char* v, Py_ssize_t vlen) except -1:
        """Record the fields that decide framing, routing and the connection's fate."""
        cdef Py_ssize_t i
        cdef long long cl = 0
        cdef int c
        if nlen == 4 and _eq_ci(name, 4, b"host", 4):
            self.host_count += 1
            if self.host_count > 1:
                return self._fail(400, "duplicate Host")
            for i in range(vlen):
                if not HOST[<unsigned char>v[i]]:
                    return self._fail(400, "invalid Host")
        elif nlen == 14 and _eq_ci(name, 14, b"content-length", 14):
            if self.content_length >= 0:
                return self._fail(400, "duplicate Content-Length")
            if vlen == 0 or vlen > MAX_CL_DIGITS:
                return self._fail(400, "invalid Content-Length")
            for i in range(vlen):
                c = v[i]
                if not (c'0' <= c <= c'9'):
                    return self._fail(400, "invalid Content-Length")
                cl = cl * 10 + (c - c'0')
            self.content_length = cl
        elif nlen == 17 and _eq_ci(name, 17, b"transfer-encoding", 17):
            return self._transfer_encoding(v, vlen)
        elif nlen == 10 and _eq_ci(name, 10, b"connection", 10):
            self._connection_tokens(v, vlen)
        elif nlen == 10 and _eq_ci(name, 10, b"user-agent", 10):
            self.ua_off = self.line_start - self.fields_start + (v - name)
            self.ua_len = vlen
        elif nlen == 12 and _eq_ci(name, 12, b"x-request-id", 12):
            self.rid_off = self.line_start - self.fields_start + (v - name)
            self.rid_len = vlen
        elif nlen == 6 and _eq_ci(name, 6, b"expect", 6) and self.minor == 1:
            if not _eq_ci(v, vlen, b"100-continue", 12):
                return self._fail(417, "unsupported expectation")
            self.expect_continue = True
        return 0

    cdef int _transfer_encoding(self, const char* v, Py_ssize_t vlen) except -1:
        """Only a single, final "chunked" is accepted: anything else is 501 when it names a
        coding we do not implement, 400 when it cannot be framed."""
        cdef Py_ssize_t i = 0, t0, t1
        cdef bint unknown = False
        while True:
            while i < vlen and _is_ows(v[i]):
                i += 1
            t0 = i
            while i < vlen and TOKEN[<unsigned char>v[i]]:
                i += 1
            t1 = i
            while i < vlen and _is_ows(v[i]):
                i += 1
            if t1 == t0 or (i < vlen and v[i] != c','):
                return self._fail(400, "invalid Transfer-Encoding")
            if self.chunked:                     # chunked must be the final coding, once
                return self._fail(400, "chunked is not the final coding")
            if _eq_ci(v + t0, t1 - t0, b"chunked", 7):
                self.chunked = True
            else:
                unknown = True
            self.has_te = True
            if i >= vlen:
                break
            i += 1
        if unknown:
            return self._fail(501, "unsupported transfer coding")
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
        cdef bytes method_b, target
        cdef Py_ssize_t q
        if self.minor == 1 and self.host_count == 0:
            return self._fail(400, "missing Host")
        if self.has_te:
            if self.content_length >= 0:
                return self._fail(400, "both Content-Length and Transfer-Encoding")
            if self.minor == 0:
                return self._fail(400, "Transfer-Encoding in HTTP/1.0")
            if not self.chunked:
                return self._fail(400, "chunked is not the final coding")
        if self.content_length > self.max_body_size:
            return self._fail(413, "body too large")

        req = Request.__new__(Request)
        method_b = PyBytes_FromStringAndSize(line, self.method_end)
        known = _METHODS.get(method_b)
        if known is not None:
            req.method, req.method_id = known
        else:
            req.method = method_b.decode("ascii")
        target = PyBytes_FromStringAndSize(line + self.method_end + 1,
                                           self.target_end - self.method_end - 1)
        if target[0] != 47 and target[0] != 42:  # absolute-form: keep the path and what follows
            q = target.find(b"/", target.find(b"//") + 2)
            target = target[q:] if q >= 0 else b"/"
        q = target.find(b"?")
        if q >= 0:
            req.raw_path = target[:q]
            req.query_string = target[q + 1:]
        else:
            req.raw_path = target
            req.query_string = b""
        req.path = (_unquote(req.raw_path.decode("ascii")) if b"%" in req.raw_path
                    else PyUnicode_DecodeASCII(PyBytes_AS_STRING(req.raw_path),
                                               PyBytes_GET_SIZE(req.raw_path), NULL))
        req.http_version = "1.1" if self.minor == 1 else "1.0"
        req.keep_alive = (not self.conn_close) if self.minor == 1 else self.conn_keep_alive
        req._head = PyBytes_FromStringAndSize(buf + self.fields_start,
                                              self.line_start - self.fields_start)
        req.ua_off, req.ua_len = self.ua_off, self.ua_len
        req.rid_off, req.rid_len = self.rid_off, self.rid_len
        self.pending = req
        if self.chunked:
            self.state = S_CHUNK_SIZE
        elif self.content_length > 0:
            self.state = S_BODY_CL
            self.remaining = self.content_length
        else:
            req.body = b""
            self.expect_continue = False
            self.state = S_READY
        return REQUEST_READY

    cdef int _grow_body(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.body_len + extra
        cdef Py_ssize_t cap
        cdef char* p
        if need <= self.body_cap:
            return 0
        cap = max(need, self.body_cap * 2, 4096)
        p = <char*>realloc(self.body_buf, cap)
        if p == NULL:
            raise MemoryError()
        self.body_buf = p
        self.body_cap = cap
        return 0

    cdef int _append_body(self, const char* p, Py_ssize_t n) except -1:
        self._grow_body(n)
        memcpy(self.body_buf + self.body_len, p, n)
        self.body_len += n
        return 0

    cdef int _body_done(self) except -1:
        self.pending.body = PyBytes_FromStringAndSize(self.body_buf, self.body_len)
        self.body_len = 0
        if self.body_cap > 65536:               # do not keep a large buffer per connection
            free(self.body_buf)
            self.body_buf = NULL
            self.body_cap = 0
        self.state = S_READY
        return REQUEST_READY

    cdef int _parse_body(self, const char* buf, Py_ssize_t n, Py_ssize_t* pos) except -1:
        cdef Py_ssize_t p = pos[0], take, line_end
        cdef const char* nl
        while True:
            if self.state == S_BODY_CL:
                take = min(<long long>(n - p), self.remaining)
                if take == self.remaining and self.body_len == 0:
                    # the whole body is here: one copy, straight into the bytes object
                    self.pending.body = PyBytes_FromStringAndSize(buf + p, take)
                    pos[0] = p + take
                    self.state = S_READY
                    return REQUEST_READY
                self._append_body(buf + p, take)
                p += take
                self.remaining -= take
                pos[0] = p
                if self.remaining == 0:
                    return self._body_done()
                return NEED_DATA

            elif self.state == S_CHUNK_SIZE:
                nl = <const char*>memchr(buf + p, c'\n', n - p)
                if nl == NULL:
                    if n - p > MAX_CHUNK_DIGITS + self.max_chunk_ext + 2:
                        return self._fail(400, "chunk size line too long")
                    pos[0] = p
                    return NEED_DATA
                line_end = nl - buf
                if line_end == p or buf[line_end - 1] != c'\r':
                    return self._fail(400, "bare LF in chunk size line")
                if self._chunk_size_line(buf + p, line_end - 1 - p) == PARSE_ERROR:
                    return PARSE_ERROR
                p = line_end + 1
                self.state = S_CHUNK_DATA if self.remaining > 0 else S_TRAILERS

            elif self.state == S_CHUNK_DATA:
                take = min(<long long>(n - p), self.remaining)
                self._append_body(buf + p, take)
                p += take
                self.remaining -= take
                if self.remaining > 0:
                    pos[0] = p
                    return NEED_DATA
                self.state = S_CHUNK_CRLF

            elif self.state == S_CHUNK_CRLF:
                if n - p < 2:
                    if n - p == 1 and buf[p] != c'\r':
                        return self._fail(400, "bad chunk terminator")
                    pos[0] = p
                    return NEED_DATA
                if buf[p] != c'\r' or buf[p + 1] != c'\n':
                    return self._fail(400, "bad chunk terminator")
                p += 2
                self.state = S_CHUNK_SIZE

            elif self.state == S_TRAILERS:
                nl = <const char*>memchr(buf + p, c'\n', n - p)
                if nl == NULL:
                    if self.trailer_bytes + n - p > self.max_header_bytes:
                        return self._fail(431, "trailer section too large")
                    pos[0] = p
                    return NEED_DATA
                line_end = nl - buf
                if line_end == p or buf[line_end - 1] != c'\r':
                    return self._fail(400, "bare LF in trailer")
                self.trailer_bytes += line_end + 1 - p
                if self.trailer_bytes > self.max_header_bytes:
                    return self._fail(431, "trailer section too large")
                if line_end - 1 == p:           # the empty line ends the message
                    pos[0] = line_end + 1
                    return self._body_done()
                if self._field_line(buf + p, line_end - 1 - p, True) == PARSE_ERROR:
                    return PARSE_ERROR
                p = line_end + 1
            else:
                pos[0] = p
                return NEED_DATA

    cdef int _chunk_size_line(self, const char* s, Py_ssize_t n) except -1:
        """chunk-size [ chunk-ext ]: hex digits only, then ;name[=value] extensions."""
        cdef Py_ssize_t i = 0
        cdef long long size = 0
        cdef int c, d
        while i < n:
            c = s[i]
            if c'0' <= c <= c'9':
                d = c - c'0'
            elif c'a' <= c <= c'f':
                d = c - c'a' + 10
            elif c'A' <= c <= c'F':
                d = c - c'A' + 10
            else:
                break
            if i >= MAX_CHUNK_DIGITS:
                return self._fail(400, "chunk size overflow")
            size = size * 16 + d
            i += 1
        if i == 0:
            return self._fail(400, "invalid chunk size")
        if n - i > self.max_chunk_ext:
            return self._fail(400, "chunk extension too long")
        if i < n and self._chunk_ext(s + i, n - i) == PARSE_ERROR:
            return PARSE_ERROR
        if self.body_len + size > self.max_body_size:
            return self._fail(413, "body too large")
        self.remaining = size
        return 0

    cdef int _chunk_ext(self, const char* s, Py_ssize_t n) except -1:
        """*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )"""
        cdef Py_ssize_t i = 0, t0
        while i < n:
            while i < n and _is_ows(s[i]):
                i += 1
            if i >= n or s[i] != c';':
                return self._fail(400, "invalid chunk extension")
            i += 1
            while i < n and _is_ows(s[i]):
                i += 1
            t0 = i
            while i < n and TOKEN[<unsigned char>s[i]]:
                i += 1
            if i == t0:
                return self._fail(400, "invalid chunk extension")
            while i < n and _is_ows(s[i]):
                i += 1
            if i < n and s[i] == c'=':
                i += 1
                while i < n and _is_ows(s[i]):
                    i += 1
                if i < n and s[i] == c'"':
                    i += 1
                    while i < n and s[i] != c'"':
                        if s[i] == c'\\':
                            i += 1
                        if i < n and not FIELD_VALUE[<unsigned char>s[i]]:
                            return self._fail(400, "invalid chunk extension")
                        i += 1
                    if i >= n:
                        return self._fail(400, "invalid chunk extension")
                    i += 1
                else:
                    t0 = i
                    while i < n and TOKEN[<unsigned char>s[i]]:
                        i += 1
                    if i == t0:
                        return self._fail(400, "invalid chunk extension")
        return 0

    cdef Request take_request(self):
        """Hand over the ready request and get set for the next one on this connection."""
        cdef Request req = self.pending
        self.pending = None
        self._reset()
        return req

    # ---------------------------------------------------------------- Python API, for tests

    def feed(self, data):
        """Feed bytes; returns a list of events: Request objects, and the string "continue"
        where the client waits for 100 Continue. After a refusal, error_status is set and
        nothing more is parsed."""
        cdef Py_ssize_t used
        cdef int r
        cdef bytes buf
        events = []
        self._pybuf = (self._pybuf or b"") + bytes(data)
        while self.state != S_ERROR:
            buf = self._pybuf
            r = self.parse(PyBytes_AS_STRING(buf), PyBytes_GET_SIZE(buf), &used)
            self._pybuf = buf[used:]
            if r == REQUEST_READY:
                events.append(self.take_request())
            elif r == SEND_CONTINUE:
                events.append("continue")
            else:
                break
        return events



# ==================================================================== responses

cdef class OutBuffer:
    """A growable byte buffer of response data waiting to be sent."""

    def __cinit__(self, Py_ssize_t cap=16384):
        self.data = <char*>malloc(cap)
        if self.data == NULL:
            raise MemoryError()
        self.cap = cap
        self.start = 0
        self.end = 0

    def __dealloc__(self):
        free(self.data)

    cdef int write(self, const char* src, Py_ssize_t n) except -1:
        cdef Py_ssize_t need, cap
        cdef char* p
        if self.end + n > self.cap:
            if self.start > 0:                  # slide unsent bytes to the front first
                memmove(self.data, self.data + self.start, self.end - self.start)
                self.end -= self.start
                self.start = 0
            need = self.end + n
            if need > self.cap:
                cap = max(need, self.cap * 2)
                p = <char*>realloc(self.data, cap)
                if p == NULL:
                    raise MemoryError()
                self.data = p
                self.cap = cap
        memcpy(self.data + self.end, src, n)
        self.end += n
        self.total += n
        return 0

    cdef int write_bytes(self, bytes b) except -1:
        return self.write(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef void consume(self, Py_ssize_t n) noexcept:
        self.start += n
        if self.start == self.end:
            self.start = 0
            self.end = 0

    def getvalue(self):
        return PyBytes_FromStringAndSize(self.data + self.start, self.end - self.start)


_REASONS = {
    100: "Continue", 200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    206: "Partial Content", 301: "Moved Permanently", 302: "Found", 303: "See Other",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict",
    410: "Gone", 418: "I'm a teapot", 411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 417: "Expectation Failed",
    422: "Unprocessable Content", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}
cdef list _STATUS_LINES = [None] * 600
for _code in range(100, 600):
    _STATUS_LINES[_code] = f"HTTP/1.1 {_code} {_REASONS.get(_code, '')}\r\n".encode("ascii")

cdef bytes _date_line = b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
cdef bytes CT_TEXT = b"Content-Type: text/plain; charset=utf-8\r\n"
cdef bytes CT_BYTES = b"Content-Type: application/octet-stream\r\n"
cdef bytes CONN_CLOSE = b"Connection: close\r\n"
cdef bytes CONN_KEEP = b"Connection: keep-alive\r\n"
cdef bytes TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
# framing is the server's: a handler cannot set these
cdef frozenset _FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


cdef void set_date(bytes date_line):
    """Called by the loop once a second with a whole "Date: ...\\r\\n" line."""
    global _date_line
    _date_line = date_line


def set_date_line(bytes date_line):
    set_date(date_line)


cdef inline int _write_length(OutBuffer out, Py_ssize_t n) except -1:
    cdef char digits[24]
    cdef int i = 24
    if n == 0:
        i -= 1
        digits[i] = c'0'
    while n > 0:
        i -= 1
        digits[i] = c'0' + n % 10
        n //= 10
    out.write(b"Content-Length: ", 16)
    out.write(digits + i, 24 - i)
    out.write(b"\r\n", 2)
    return 0


cdef inline int _write_tail(OutBuffer out, bint keep_alive, bint http11, bytes extra) except -1:
    """The server's own header lines and the end of the head."""
    if not keep_alive:
        out.write_bytes(CONN_CLOSE)
    elif not http11:
        out.write_bytes(CONN_KEEP)
    if extra is not None:
        out.write_bytes(extra)
    out.write_bytes(_date_line)
    out.write(b"\r\n", 2)
    return 0


cdef int _write_user_headers(OutBuffer out, list headers) except -1:
    cdef bytes name_b, value_b
    cdef const unsigned char* p
    cdef Py_ssize_t i, n
    for name, value in headers:
        name_b = str(name).encode("latin-1")
        value_b = str(value).encode("latin-1")
        p = <const unsigned char*>PyBytes_AS_STRING(name_b)
        n = PyBytes_GET_SIZE(name_b)
        if n == 0:
            raise ValueError("empty response header name")
        for i in range(n):
            if not TOKEN[p[i]]:
                raise ValueError(f"invalid response header name {name!r}")
        p = <const unsigned char*>PyBytes_AS_STRING(value_b)
        for i in range(PyBytes_GET_SIZE(value_b)):
            if not FIELD_VALUE[p[i]]:               # CR, LF, NUL and other controls
                raise ValueError(f"invalid character in response header {name!r}")
        if name_b.lower().decode("latin-1") in _FRAMING:
            continue
        out.write_bytes(name_b)
        out.write(b": ", 2)
        out.write_bytes(value_b)
        out.write(b"\r\n", 2)
    return 0


cdef object write_response(OutBuffer out, object result, bint keep_alive, bint head_only,
                           bint http11, bytes extra=None):
    """Append the response for a handler's result (str, bytes or Response). `extra` holds
    whole header lines the server adds (already valid). Returns the iterator to stream the body
    from, or None when the response is complete. On error nothing is left in the buffer and the
    exception propagates."""
    cdef type t = type(result)
    cdef bytes body
    cdef Response resp
    cdef Py_ssize_t mark = out.end
    cdef int status
    if t is str:
        body = PyUnicode_AsUTF8String(result)
        out.write_bytes(<bytes>_STATUS_LINES[200])
        out.write_bytes(CT_TEXT)
    elif t is bytes:
        body = <bytes>result
        out.write_bytes(<bytes>_STATUS_LINES[200])
        out.write_bytes(CT_BYTES)
    elif t is Response:
        resp = <Response>result
        status = resp.status
        if status < 200 or status > 599:
            raise ValueError(f"invalid response status {status}")
        try:
            out.write_bytes(<bytes>_STATUS_LINES[status])
            if resp.content_type is not None:
                out.write(b"Content-Type: ", 14)
                out.write_bytes(resp.content_type.encode("latin-1"))
                out.write(b"\r\n", 2)
            if resp.headers:
                _write_user_headers(out, resp.headers)
        except BaseException:
            out.end = mark
            raise
        if type(resp.body) is not bytes:     # an iterator: stream it chunked
            if http11:
                out.write_bytes(TE_CHUNKED)
            else:
                keep_alive = False           # HTTP/1.0: the body ends when the connection does
            _write_tail(out, keep_alive, http11, extra)
            return resp.body
        body = <bytes>resp.body
        if status == 204 or status == 304:
            _write_tail(out, keep_alive, http11, extra)
            return None
    else:
        raise TypeError(f"cannot send a {t.__name__} as a response")
    _write_length(out, PyBytes_GET_SIZE(body))
    _write_tail(out, keep_alive, http11, extra)
    if not head_only:
        out.write_bytes(body)
    return None


cdef int write_chunk(OutBuffer out, object chunk) except -1:
    """One chunk of a streamed body; None ends the stream."""
    cdef bytes b
    cdef char size[20]
    cdef int i = 20
    cdef Py_ssize_t n
    if chunk is None:
        out.write(b"0\r\n\r\n", 5)
        return 0
    b = chunk.encode("utf-8") if type(chunk) is str else bytes(chunk)
    n = PyBytes_GET_SIZE(b)
    if n == 0:
        return 0                       # an empty chunk would end the body early
    while n > 0:
        i -= 1
        size[i] = b"0123456789abcdef"[n % 16]
        n //= 16
    out.write(size + i, 20 - i)
    out.write(b"\r\n", 2)
    out.write_bytes(b)
    out.write(b"\r\n", 2)
    return 0


cdef dict _ERROR_BODIES = {}

cdef int write_error(OutBuffer out, int status) except -1:
    """A refusal by the server itself: short text body, and the connection closes."""
    cdef bytes body = _ERROR_BODIES.get(status)
    if body is None:
        body = f"{status} {_REASONS.get(status, 'Error')}\n".encode("ascii")
        _ERROR_BODIES[status] = body
    out.write_bytes(<bytes>_STATUS_LINES[status])
    out.write_bytes(CT_TEXT)
    _write_length(out, PyBytes_GET_SIZE(body))
    out.write_bytes(CONN_CLOSE)
    out.write_bytes(_date_line)
    out.write(b"\r\n", 2)
    out.write_bytes(body)
    return 0


cdef class Response:
    """What a handler returns when it needs more than a body: a status, headers, a type.
    body may be str, bytes, dict/list (sent as JSON), None, or an iterator of chunks."""

    def __init__(self, body=b"", int status=200, headers=None, content_type=None):
        self.status = status
        self.headers = list(headers.items() if isinstance(headers, dict) else headers or ())
        if isinstance(body, str):
            self.body = body.encode("utf-8")
            default = "text/plain; charset=utf-8"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            self.body = bytes(body)
            default = "application/octet-stream"
        elif isinstance(body, (dict, list)):
            self.body = _json.dumps(body, separators=(",", ":")).encode("utf-8")
            default = "application/json"
        elif body is None:
            self.body = b""
            default = None
        elif hasattr(body, "__iter__"):
            self.body = iter(body)
            default = "application/octet-stream"
        else:
            raise TypeError(f"cannot send a {type(body).__name__} as a response body")
        self.content_type = content_type if content_type is not None else default

    def __repr__(self):
        return f"<Response {self.status}>"


def serialize(result, bint keep_alive=True, bint head_only=False, bint http11=True):
    """The bytes the server would send for a handler's result (streamed bodies drained)."""
    cdef OutBuffer out = OutBuffer()
    it = write_response(out, result, keep_alive, head_only, http11)
    if it is not None and not head_only:
        for chunk in it:
            if http11:
                write_chunk(out, chunk)
            elif chunk:
                out.write_bytes(chunk.encode() if isinstance(chunk, str) else bytes(chunk))
        if http11:
            write_chunk(out, None)
    return out.getvalue()


def error_response(int status):
    cdef OutBuffer out = OutBuffer()
    write_error(out, status)
    return out.getvalue()
