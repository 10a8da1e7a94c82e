# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
"""Sans-IO HTTP/1.1 request parsing: a strict, incremental state machine over bytes.

Bytes in, requests or a refusal out. No sockets, no clocks, no responses: a connection feeds it
the bytes it has read and takes out Request objects, or the ParseError it refused for.

RequestParser is the state machine and the body's framing: a body of Content-Length bytes, or
chunked (strict size lines, extensions and terminators, then the trailer section). The head is
HeadParser's (_head), which RequestParser extends.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdlib cimport realloc, free
from libc.string cimport memchr, memcpy

from fastsock._chars cimport fs_init_char_classes, is_token, is_field_value, _is_ows
from fastsock._message cimport Request

cdef enum:
    MAX_CHUNK_DIGITS = 15

cdef bytes EMPTY = b""

fs_init_char_classes()      # this module's own copy of the table (see _chars.pxd)

# (name, status, metric label) of every ParseError, indexed by its value; [0] is E_NONE
# (module state written only at import, as fs_char_class above: read-only for every thread)
cdef list _errors = []
cdef int _e
for _e in range(<int>N_PARSE_ERRORS):
    _errors.append((fs_error_table[_e].name.decode("ascii"), fs_error_table[_e].status,
                    fs_error_table[_e].label.decode("ascii")))
PARSE_ERRORS = tuple(_errors)

cdef class RequestParser(HeadParser):
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
        self.error = E_NONE
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

    @property
    def error_status(self):
        """The status the refusal is answered with (0: not refused)."""
        return fs_error_table[<int>self.error].status

    @property
    def error_reason(self):
        return fs_error_table[<int>self.error].name.decode("ascii") if self.error else None

    # ---------------------------------------------------------------- the state machine

    cdef int parse(self, const char* buf, Py_ssize_t n, Py_ssize_t* consumed) except -1:
        """Parse buf[:n], the unconsumed bytes of the current request onward. Sets consumed[0] to
        how many bytes the caller may drop, and returns NEED_DATA, REQUEST_READY, SEND_CONTINUE,
        PARSE_ERROR, or — with announce_heads — HEAD_READY once a head with a body is in
        (pending holds the request; set max_body_size for it, then parse on)."""
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
            if self.state == S_HEAD_DONE:
                return HEAD_READY
            if self.expect_continue and pos == n:
                # the body has not started: the client is waiting to be told to send it
                return SEND_CONTINUE
        elif self.state == S_HEAD_DONE:     # announced: the caller has set max_body_size
            if self.content_length > self.max_body_size:
                return self._fail(E_BODY_TOO_LARGE)
            self.state = S_CHUNK_SIZE if self.chunked else S_BODY_CL
            if self.expect_continue and n == 0:
                return SEND_CONTINUE
        r = self._parse_body(buf, n, &pos)
        consumed[0] = pos
        return r

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
        if n == 0:                  # no buffer may exist yet: memcpy from/to NULL is UB
            return 0
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
                        return self._fail(E_CHUNK_LINE_TOO_LONG)
                    pos[0] = p
                    return NEED_DATA
                line_end = nl - buf
                if line_end == p or buf[line_end - 1] != c'\r':
                    return self._fail(E_BARE_LF_IN_CHUNK_LINE)
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
                        return self._fail(E_BAD_CHUNK_TERMINATOR)
                    pos[0] = p
                    return NEED_DATA
                if buf[p] != c'\r' or buf[p + 1] != c'\n':
                    return self._fail(E_BAD_CHUNK_TERMINATOR)
                p += 2
                self.state = S_CHUNK_SIZE

            elif self.state == S_TRAILERS:
                nl = <const char*>memchr(buf + p, c'\n', n - p)
                if nl == NULL:
                    if self.trailer_bytes + n - p > self.max_header_bytes:
                        return self._fail(E_TRAILERS_TOO_LARGE)
                    pos[0] = p
                    return NEED_DATA
                line_end = nl - buf
                if line_end == p or buf[line_end - 1] != c'\r':
                    return self._fail(E_BARE_LF_IN_TRAILER)
                self.trailer_bytes += line_end + 1 - p
                if self.trailer_bytes > self.max_header_bytes:
                    return self._fail(E_TRAILERS_TOO_LARGE)
                if line_end - 1 == p:           # the empty line ends the message
                    pos[0] = line_end + 1
                    return self._body_done()
                if self._field_line(buf + p, line_end - 1 - p, True) == PARSE_ERROR:
                    return PARSE_ERROR
                p = line_end + 1
            else:
                pos[0] = p
                return NEED_DATA

    cdef int _chunk_size_line(self, const char* s, Py_ssize_t n) noexcept:
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
                return self._fail(E_CHUNK_SIZE_OVERFLOW)
            size = size * 16 + d
            i += 1
        if i == 0:
            return self._fail(E_INVALID_CHUNK_SIZE)
        if n - i > self.max_chunk_ext:
            return self._fail(E_CHUNK_EXT_TOO_LONG)
        if i < n and self._chunk_ext(s + i, n - i) == PARSE_ERROR:
            return PARSE_ERROR
        if self.body_len + size > self.max_body_size:
            return self._fail(E_BODY_TOO_LARGE)
        self.remaining = size
        return 0

    cdef int _chunk_ext(self, const char* s, Py_ssize_t n) noexcept:
        """*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )"""
        cdef Py_ssize_t i = 0, t0
        while i < n:
            while i < n and _is_ows(s[i]):
                i += 1
            if i >= n or s[i] != c';':
                return self._fail(E_INVALID_CHUNK_EXT)
            i += 1
            while i < n and _is_ows(s[i]):
                i += 1
            t0 = i
            while i < n and is_token(<unsigned char>s[i]):
                i += 1
            if i == t0:
                return self._fail(E_INVALID_CHUNK_EXT)
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
                        if i < n and not is_field_value(<unsigned char>s[i]):
                            return self._fail(E_INVALID_CHUNK_EXT)
                        i += 1
                    if i >= n:
                        return self._fail(E_INVALID_CHUNK_EXT)
                    i += 1
                else:
                    t0 = i
                    while i < n and is_token(<unsigned char>s[i]):
                        i += 1
                    if i == t0:
                        return self._fail(E_INVALID_CHUNK_EXT)
        return 0

    cdef bytes take_body(self):
        """The body bytes gathered since the last call (a body streamed as it comes)."""
        cdef bytes chunk
        if self.body_len == 0:
            return EMPTY
        chunk = PyBytes_FromStringAndSize(self.body_buf, self.body_len)
        self.body_len = 0
        return chunk

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
