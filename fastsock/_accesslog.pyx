# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The access log: one line per answered request to stdout, as text or JSON.

A line is formatted in C straight into one buffer (the date once a second, numbers by hand, JSON
strings escaped here), read from the request's own fields: no str is made for it. The buffer is
written at most once per loop tick (or when FLUSH_AT bytes pile up), each write whole lines of
at most PIPE_BUF bytes, so lines of several workers never interleave. Text as it is encoded by
UTF-8 with backslashreplace: a lone surrogate is written as its escape, never as bad UTF-8.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.tuple cimport PyTuple_GET_SIZE
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from fastsock._message cimport Request, ID_TEXT_ROOM
from fastsock._putbytes cimport _put, _put_var, _plain8, _put_int, _put_3digits, _put_hex4
from fastsock._sys cimport write, errno, monotonic, EAGAIN, EINTR

import logging

cdef extern from "Python.h":
    void* PyTuple_GET_ITEM(object t, Py_ssize_t i)
    bint PyUnicode_IS_ASCII(object s)
    int PyUnicode_KIND(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    unsigned int PyUnicode_READ(int kind, void* data, Py_ssize_t i) nogil

cdef extern from "<string.h>" nogil:
    void* memrchr(const void* s, int c, size_t n)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLOUT
    int poll(pollfd* fds, unsigned long n, int timeout)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    struct tm:
        pass
    enum:
        CLOCK_REALTIME
    int clock_gettime(int clk, timespec* ts)
    tm* gmtime_r(const time_t* t, tm* out)
    size_t strftime(char* s, size_t n, const char* fmt, const tm* t)

error_log = logging.getLogger("fastsock.error")

cdef Py_ssize_t START_CAP = 65536
# bytes copied as they are: in JSON, the ASCII a string holds unescaped (json's encode_basestring
# escapes " \ and < 0x20); in text, the ASCII that is no control character (a control one is
# escaped as JSON does: an id the app set to "a\nb" never splits or forges a line). The rest is
# encoded (_put_cp).
cdef unsigned char _plain[256]
cdef unsigned char _ascii[256]
for _c in range(256):
    _plain[_c] = 32 <= _c < 128 and _c != 34 and _c != 92
    _ascii[_c] = 32 <= _c < 128


cdef double wall_clock() noexcept nogil:
    """time.time(), to the bit: the seconds since the epoch as Python's clock makes them."""
    cdef timespec ts
    cdef long long ns
    clock_gettime(CLOCK_REALTIME, &ts)
    ns = ts.tv_sec * 1000000000LL + ts.tv_nsec
    if ns % 1000000000LL == 0:
        return <double>(ns // 1000000000LL)
    return <double>ns / 1e9


# ------------------------------------------------------ text into reserved room (_putbytes.pxd)

cdef char* _put_cp(char* p, unsigned int c, bint json) noexcept nogil:
    """One code point, as UTF-8 (a surrogate as backslashreplace's \\udcXX), JSON-escaped
    as json's encode_basestring does when json (else only a control character): at most 6
    bytes."""
    if c < 128:
        if _plain[c] or (c >= 32 and not json):
            p[0] = <char>c
            return p + 1
        p[0] = c'\\'
        if c == 34 or c == 92:
            p[1] = <char>c
        elif c == 8:
            p[1] = c'b'
        elif c == 12:
            p[1] = c'f'
        elif c == 10:
            p[1] = c'n'
        elif c == 13:
            p[1] = c'r'
        elif c == 9:
            p[1] = c't'
        else:
            return _put_hex4(_put(p, b"\\u", 2), c)
        return p + 2
    if c < 0x800:
        p[0] = <char>(0xc0 | (c >> 6))
        p[1] = <char>(0x80 | (c & 0x3f))
        return p + 2
    if 0xd800 <= c <= 0xdfff:
        return _put_hex4(_put(p, b"\\u", 2), c)
    if c < 0x10000:
        p[0] = <char>(0xe0 | (c >> 12))
        p[1] = <char>(0x80 | ((c >> 6) & 0x3f))
        p[2] = <char>(0x80 | (c & 0x3f))
        return p + 3
    p[0] = <char>(0xf0 | (c >> 18))
    p[1] = <char>(0x80 | ((c >> 12) & 0x3f))
    p[2] = <char>(0x80 | ((c >> 6) & 0x3f))
    p[3] = <char>(0x80 | (c & 0x3f))
    return p + 4


cdef inline char* _put_latin1(char* p, const char* s, Py_ssize_t n, bint json) noexcept nogil:
    """Bytes read as Latin-1 (a header's value, as req.user_agent decodes it)."""
    cdef const unsigned char* table = _ascii
    if json:
        table = _plain
    cdef const unsigned char* u = <const unsigned char*>s
    cdef Py_ssize_t i = 0, run
    while i < n:
        run = i
        while run + 8 <= n and _plain8(s + run, json):     # a run copied as it is, in one go
            run += 8
        while run < n and table[u[run]]:
            run += 1
        p = _put_var(p, s + i, run - i)
        if run == n:
            break
        p = _put_cp(p, u[run], json)
        i = run + 1
    return p


cdef inline char* _put_str(char* p, str s, bint json) noexcept:
    cdef int kind = PyUnicode_KIND(s)
    cdef void* data = PyUnicode_DATA(s)
    cdef Py_ssize_t i
    if kind == 1:
        return _put_latin1(p, <const char*>data, PyUnicode_GET_LENGTH(s), json)
    for i in range(PyUnicode_GET_LENGTH(s)):
        p = _put_cp(p, PyUnicode_READ(kind, data, i), json)
    return p


cdef inline char* _put_checked(char* p, str s) noexcept:
    """A str the parser checked (a method), in text: ASCII copied as it is (a control
    character never is one)."""
    if PyUnicode_IS_ASCII(s):
        return _put_var(p, <const char*>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))
    return _put_str(p, s, False)


cdef inline char* _put_json(char* p, str s) noexcept:
    p[0] = c'"'
    p = _put_str(p + 1, s, True)
    p[0] = c'"'
    return p + 1


cdef char* _put_duration(char* p, double seconds) noexcept nogil:
    """Milliseconds to the microsecond, as f"{us // 1000}.{us % 1000:03}" writes them."""
    cdef double x = seconds * 1e6
    cdef long long us = <long long>x if -9e18 < x < 9e18 else 0
    cdef long long q = us / 1000, r = us % 1000
    if r < 0:                           # Python's floor division
        r += 1000
        q -= 1
    p = _put_int(p, q)
    p[0] = c'.'
    return _put_3digits(p + 1, r)


cdef class AccessLog:
    """AccessLog(fmt, fd): fmt "json" or "text". Called as a request's on_complete
    (req, status, nbytes, seconds); the connection calls write() itself, from C."""

    def __cinit__(self, str fmt="text", int fd=1):
        self.fd = fd
        self.json = fmt == "json"
        self.buf = <char*>malloc(START_CAP)
        if self.buf == NULL:
            raise MemoryError()
        self.cap = START_CAP
        self.second = -1
        self.wall_offset = wall_clock() - monotonic()

    def __dealloc__(self):
        free(self.buf)

    def __call__(self, Request req not None, int status, long long nbytes, double seconds):
        self.add(req, status, nbytes, seconds, monotonic())

    def log(self, Request req not None, int status, long long nbytes, double seconds):
        """The line of one answered request, into the buffer."""
        self.add(req, status, nbytes, seconds, monotonic())

    def line(self, Request req not None, int status, long long nbytes, double seconds,
             double now):
        """-> the line add() makes at time `now` (time.time()), as bytes; for tests."""
        cdef Py_ssize_t before = self.n
        self._format(req, status, nbytes, seconds, now)
        out = PyBytes_FromStringAndSize(self.buf + before, self.n - before)
        self.n = before
        return out

    @property
    def pending(self):
        """Bytes of lines not written yet."""
        return self.n

    cdef int _reserve(self, Py_ssize_t more) except -1:
        cdef Py_ssize_t cap = self.cap
        cdef char* p
        while cap - self.n < more:
            cap *= 2
        if cap != self.cap:
            p = <char*>realloc(self.buf, cap)
            if p == NULL:
                raise MemoryError()
            self.buf, self.cap = p, cap
        return 0

    cdef void _stamp(self, double now) noexcept:
        """The cached "YYYY-MM-DDTHH:MM:SS." of now's second."""
        cdef time_t second = <time_t>now
        cdef tm t
        if second != self.second:
            self.second = second
            gmtime_r(&second, &t)
            self.stamp_len = strftime(self.stamp, STAMP_ROOM, b"%Y-%m-%dT%H:%M:%S.", &t)

    cdef int add(self, Request req, int status, long long nbytes, double seconds,
                 double end) except -1:
        """The line of one answered request, answered at `end` (the monotonic clock), into the
        buffer (written once FLUSH_AT bytes pile up, else at the loop's tick)."""
        self._format(req, status, nbytes, seconds, end + self.wall_offset)
        if self.n > FLUSH_AT:
            self.flush()
        return 0

    cdef int _format(self, Request req, int status, long long nbytes, double seconds,
                     double now) except -1:
        cdef bint json = self.json
        cdef bytes raw = req._head if req._head is not None else b""
        cdef const char* head = PyBytes_AS_STRING(raw)
        cdef Py_ssize_t ua_off = req.ua_off if req._head is not None else -1
        cdef Py_ssize_t rid_off = req.rid_off if req._head is not None else -1
        cdef Py_ssize_t path_len = req.path_len if req._head is not None else 0
        cdef object client = req.client
        cdef object rid = req._request_id       # else the one given, or the client's, if any
        cdef Py_ssize_t rid_len = 0, need
        cdef Py_ssize_t given_n = 0             # the id the server gave (hex and '-': plain)
        cdef str method = req.method, path = req.path
        cdef char* p
        if type(client) is tuple and PyTuple_GET_SIZE(client) > 0:
            host = <object>PyTuple_GET_ITEM(client, 0)
        else:
            host = client[0] if client else "-"
        if type(host) is not str:
            host = str(host)
        if rid is not None:
            if type(rid) is not str:
                rid = str(rid)
            rid_len = PyUnicode_GET_LENGTH(rid)
        elif req.id_len:
            given_n = req.id_len
        elif rid_off >= 0:
            rid_len = req.rid_len
        # the room it can take: every char 6 bytes at most (an escape), raw bytes 1, and room
        # past the end for a whole stamp or id copied (STAMP_ROOM, ID_TEXT_ROOM)
        need = (320 + STAMP_ROOM + ID_TEXT_ROOM + path_len + 6 * (
            PyUnicode_GET_LENGTH(path) + PyUnicode_GET_LENGTH(<str>host)
            + PyUnicode_GET_LENGTH(method) + (req.ua_len if ua_off >= 0 else 0) + rid_len))
        if self.cap - self.n < need:
            self._reserve(need)
        if <time_t>now != self.second:
            self._stamp(now)
        p = self.buf + self.n
        if json:
            p = _put(p, b'{"time":"', 9)
        memcpy(p, self.stamp, STAMP_ROOM)      # all of it: one move, not a call
        p += self.stamp_len
        p = _put_3digits(p, <long long>((now - <double>self.second) * 1000) % 1000)
        if json:
            p = _put(p, b'Z","method":"', 13)
            p = _put_checked(p, method)
            p = _put(p, b'","path":', 9)
            p = _put_json(p, path)
            p = _put(p, b',"status":', 10)
            p = _put_int(p, status)
            p = _put(p, b',"bytes":', 9)
            p = _put_int(p, nbytes)
            p = _put(p, b',"duration_ms":', 15)
            p = _put_duration(p, seconds)
            p = _put(p, b',"client":', 10)
            p = _put_json(p, <str>host)
            p = _put(p, b',"user_agent":', 14)
            if ua_off < 0:
                p = _put(p, b"null", 4)
            else:
                p[0] = c'"'
                p = _put_latin1(p + 1, head + ua_off, req.ua_len, True)
                p[0] = c'"'
                p += 1
            p = _put(p, b',"request_id":', 14)
            if rid is not None:
                p = _put_json(p, <str>rid)
            elif given_n:
                p[0] = c'"'
                memcpy(p + 1, req.id_text, ID_TEXT_ROOM)   # (as the stamp)
                p += 1 + given_n
                p[0] = c'"'
                p += 1
            elif rid_off >= 0:
                p[0] = c'"'
                p = _put_latin1(p + 1, head + rid_off, req.rid_len, True)
                p[0] = c'"'
                p += 1
            else:
                p = _put(p, b"null", 4)
            if status == 101:               # a WebSocket, logged at its close
                p = _put(p, b',"ws_messages_in":', 18)
                p = _put_int(p, <long long>req.ws_in)
                p = _put(p, b',"ws_messages_out":', 19)
                p = _put_int(p, <long long>req.ws_out)
                p = _put(p, b',"ws_close":', 12)
                p = _put_int(p, req.ws_close or 1006)
            p = _put(p, b"}\n", 2)
        else:
            p = _put(p, b"Z ", 2)
            p = _put_str(p, <str>host, False)      # (X-Forwarded-For may name it)
            p = _put(p, b' "', 2)
            p = _put_checked(p, method)
            p[0] = c' '
            p = _put(p + 1, head + req.path_off, path_len) if path_len else \
                _put(p + 1, b"/", 1)
            p = _put(p, b" HTTP/1.1\" " if req.is_http11 else b" HTTP/1.0\" ", 11)
            p = _put_int(p, status)
            p[0] = c' '
            p = _put_int(p + 1, nbytes)
            p[0] = c' '
            p = _put_duration(p + 1, seconds)
            if ua_off >= 0 and req.ua_len > 0:
                p = _put(p, b'ms "', 4)
                p = _put_latin1(p, head + ua_off, req.ua_len, True)
                p = _put(p, b'" ', 2)
            else:
                p = _put(p, b'ms "-" ', 7)
            if rid is not None and rid_len:
                p = _put_str(p, <str>rid, False)
            elif given_n:
                memcpy(p, req.id_text, ID_TEXT_ROOM)
                p += given_n
            elif rid is None and rid_off >= 0 and req.rid_len:
                p = _put_latin1(p, head + rid_off, req.rid_len, False)
            else:
                p[0] = c'-'
                p += 1
            if status == 101:               # a WebSocket, logged at its close
                p = _put(p, b" ws_in=", 7)
                p = _put_int(p, <long long>req.ws_in)
                p = _put(p, b" ws_out=", 8)
                p = _put_int(p, <long long>req.ws_out)
                p = _put(p, b" ws_close=", 10)
                p = _put_int(p, req.ws_close or 1006)
            p[0] = c'\n'
            p += 1
        self.n = p - self.buf
        return 0

    cpdef flush(self):
        """Write the lines out: whole lines, at most PIPE_BUF bytes a write (a longer line
        alone, in PIPE_BUF pieces). A full pipe is waited for; stdout gone drops the lines
        rather than the service."""
        cdef Py_ssize_t start = 0, end
        cdef const char* nl
        cdef ssize_t w
        cdef pollfd pfd
        while start < self.n:
            end = self.n
            if end - start > PIPE_BUF:
                nl = <const char*>memrchr(self.buf + start, c'\n', PIPE_BUF)
                end = nl - self.buf + 1 if nl != NULL else start + PIPE_BUF
            w = write(self.fd, self.buf + start, end - start)
            if w >= 0:
                start += w
            elif errno == EAGAIN:
                pfd.fd, pfd.events = self.fd, POLLOUT
                poll(&pfd, 1, 1000)
            elif errno != EINTR:
                break
        self.n = 0
        self.wall_offset = wall_clock() - monotonic()   # a stepped clock: from the next tick
        if self.cap > 4 * START_CAP:        # a burst of long lines: give the memory back
            free(self.buf)
            self.buf = <char*>malloc(START_CAP)
            self.cap = START_CAP
            if self.buf == NULL:
                self.cap = 0
                raise MemoryError()


cdef int run_hook(Request req, int status, long long nbytes, double seconds,
                  double end) except -1:
    """Call req.on_complete (an AccessLog from C, any other callable as Python); a hook that
    fails costs its request's line, logged, never the connection."""
    try:
        if type(req.on_complete) is AccessLog:
            (<AccessLog>req.on_complete).add(req, status, nbytes, seconds, end)
        else:
            req.on_complete(req, status, nbytes, seconds)
    except Exception:
        error_log.exception("completion hook failed for %s %s", req.method, req.path)
    return 0
