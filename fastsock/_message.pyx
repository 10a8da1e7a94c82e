# cython: language_level=3, boundscheck=False, wraparound=False
"""What a handler sees and returns: Request, Response, and the multi-dicts of headers and query.

Built by the parser, filled in by dispatch, read by the writer; no I/O here.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdlib cimport malloc, realloc, free
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memchr, memcmp, memcpy

import json as _json
from sys import intern as _intern
from _json import make_encoder as _make_encoder     # json.dumps' C encoder
from json.encoder import encode_basestring_ascii as _encode_str
from urllib.parse import parse_qsl as _parse_qsl

# interned method names, so a request costs no new str for them; ids label metrics (0: other)
METHOD_NAMES = tuple([_intern(fs_method_names[_i].decode("ascii")) for _i in range(N_METHODS)])
cdef tuple _METHOD_STRS = METHOD_NAMES


cdef str method_name(int method_id):
    return <str>_METHOD_STRS[method_id]


cdef int method_id(const char* p, Py_ssize_t n) noexcept:
    """The id of a method name (case-sensitive, as RFC 9110 says); M_OTHER for any other."""
    if n == 3:
        if memcmp(p, b"GET", 3) == 0:
            return M_GET
        if memcmp(p, b"PUT", 3) == 0:
            return M_PUT
    elif n == 4:
        if memcmp(p, b"HEAD", 4) == 0:
            return M_HEAD
        if memcmp(p, b"POST", 4) == 0:
            return M_POST
    elif n == 6:
        if memcmp(p, b"DELETE", 6) == 0:
            return M_DELETE
    elif n == 5:
        if memcmp(p, b"PATCH", 5) == 0:
            return M_PATCH
        if memcmp(p, b"TRACE", 5) == 0:
            return M_TRACE
    elif n == 7:
        if memcmp(p, b"OPTIONS", 7) == 0:
            return M_OPTIONS
        if memcmp(p, b"CONNECT", 7) == 0:
            return M_CONNECT
    return M_OTHER


def _json_default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

# json.dumps(value, separators=(",", ":")) without building an encoder per call: for what the
# fast encoder below hands on (subclasses, non-str keys, other types, deep nesting)
_encode_json = _make_encoder(None, _json_default, _encode_str, None, ":", ",", False, False, True)


# ---------------------------------------------------------------- JSON
# A handler's dict or list is encoded here, straight into a buffer of its own: exact dicts
# with str keys, lists, tuples, ASCII strs, ints, bools and None, the same bytes as
# json.dumps(value, separators=(",", ":")); anything else (floats too) is handed to the C
# encoder above.
#
# The buffer is the encoding's, on its C stack, never the module's: pool threads and the loop
# encode at once, and the GIL can change hands mid-encode (the C encoder calls a dict
# subclass's items(), a collection runs a __del__), so a shared one mixed two bodies.

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object s)
    void* PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)

cdef enum:
    JSON_MAX_DEPTH = 64         # deeper: the C encoder (and its recursion check) takes over
    JSON_STACK = 2048           # bytes an encoding starts with, on the stack: most bodies fit

cdef struct JBuf:               # one encoding's output
    char* p                     # the stack's bytes, or malloc'd once they outgrow them
    Py_ssize_t n, cap
    bint heap

# read-only once the module is imported: safe from any thread
cdef unsigned char _json_plain[128]     # ASCII chars a JSON string holds unescaped
for _c in range(128):
    _json_plain[_c] = 32 <= _c < 127 and _c != 34 and _c != 92


cdef int _grow(JBuf* b, Py_ssize_t n) except -1:
    cdef Py_ssize_t cap = max(b.n + n, b.cap * 2)
    cdef char* p
    if b.heap:
        p = <char*>realloc(b.p, cap)
    else:
        p = <char*>malloc(cap)
        if p != NULL:
            memcpy(p, b.p, b.n)
    if p == NULL:
        raise MemoryError()
    b.p, b.cap, b.heap = p, cap, True
    return 0


cdef inline int _put(JBuf* b, const char* s, Py_ssize_t n) except -1:
    if n == 0:
        return 0
    if b.n + n > b.cap:
        _grow(b, n)
    memcpy(b.p + b.n, s, n)
    b.n += n
    return 0


cdef inline int _put_char(JBuf* b, char c) except -1:
    if b.n + 1 > b.cap:
        _grow(b, 1)
    b.p[b.n] = c
    b.n += 1
    return 0


cdef int _put_ascii(JBuf* b, str s) except -1:
    return _put(b, <const char*>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s))


cdef int _json_str(JBuf* b, str s) except -1:
    cdef const unsigned char* p
    cdef Py_ssize_t i, n
    if PyUnicode_IS_ASCII(s):
        p = <const unsigned char*>PyUnicode_DATA(s)
        n = PyUnicode_GET_LENGTH(s)
        for i in range(n):
            if not _json_plain[p[i]]:
                break
        else:
            _put_char(b, c'"')
            _put(b, <const char*>p, n)
            return _put_char(b, c'"')
    return _put_ascii(b, _encode_str(s))    # escapes, and \uXXXX for non-ASCII


cdef int _json_int(JBuf* b, object v) except -1:
    cdef int overflow = 0
    cdef long long x = PyLong_AsLongLongAndOverflow(v, &overflow)
    cdef char digits[24]
    cdef int i = 24
    cdef bint negative = x < 0
    cdef unsigned long long u
    if overflow:
        return _put_ascii(b, int.__repr__(v))
    u = <unsigned long long>(-(x + 1)) + 1 if negative else <unsigned long long>x
    while True:
        i -= 1
        digits[i] = c'0' + u % 10
        u //= 10
        if u == 0:
            break
    if negative:
        i -= 1
        digits[i] = c'-'
    return _put(b, digits + i, 24 - i)


cdef int _json_value(JBuf* b, object v, int depth) except -1:
    cdef type t = type(v)
    cdef Py_ssize_t mark = b.n
    cdef bint first = True
    if t is str:
        return _json_str(b, <str>v)
    if v is None:
        return _put(b, b"null", 4)
    if v is True:
        return _put(b, b"true", 4)
    if v is False:
        return _put(b, b"false", 5)
    if t is int:
        return _json_int(b, v)
    if depth < JSON_MAX_DEPTH:
        if t is dict:
            _put_char(b, c'{')
            for key, item in (<dict>v).items():
                if type(key) is not str:        # json.dumps turns such keys into strings
                    return _json_fallback(b, v, mark)
                if not first:
                    _put_char(b, c',')
                first = False
                _json_str(b, <str>key)
                _put_char(b, c':')
                _json_value(b, item, depth + 1)
            return _put_char(b, c'}')
        if t is list or t is tuple:
            _put_char(b, c'[')
            for item in v:
                if not first:
                    _put_char(b, c',')
                first = False
                _json_value(b, item, depth + 1)
            return _put_char(b, c']')
    return _json_fallback(b, v, mark)


cdef int _json_fallback(JBuf* b, object v, Py_ssize_t mark) except -1:
    b.n = mark
    return _put_ascii(b, "".join(_encode_json(v, 0)))


cdef bytes json_bytes(object value):
    """value as compact JSON (ASCII, as json.dumps writes it by default)."""
    cdef char stack[JSON_STACK]
    cdef JBuf b
    b.p, b.n, b.cap, b.heap = stack, 0, JSON_STACK, False
    try:
        _json_value(&b, value, 0)
        return PyBytes_FromStringAndSize(b.p, b.n)
    finally:
        if b.heap:
            free(b.p)


def json_encode(value):
    """json_bytes for tests: the body a handler's dict or list is sent as."""
    return json_bytes(value)


class BadRequest(ValueError):
    """What the client sent cannot be used: answered 400, as a client error, not a 500."""
    status = 400


class MultiDict:
    """Keeps every (key, value) pair in order; `d[key]` and `get` give the first value."""

    __slots__ = ("_items", "_first")

    def __init__(self, items):
        self._items = items
        self._first = {}
        for key, value in items:
            self._first.setdefault(self._key(key), value)

    @staticmethod
    def _key(key):
        return key

    def __getitem__(self, key):
        return self._first[self._key(key)]

    def get(self, key, default=None):
        return self._first.get(self._key(key), default)

    def getall(self, key):
        key = self._key(key)
        return [v for k, v in self._items if self._key(k) == key]

    def __contains__(self, key):
        return isinstance(key, str) and self._key(key) in self._first

    def __iter__(self):
        return iter(self._first)

    def __len__(self):
        return len(self._items)

    def items(self):
        return list(self._items)

    def keys(self):
        return self._first.keys()

    def __eq__(self, other):
        return isinstance(other, MultiDict) and self._items == other._items

    def __repr__(self):
        return f"{type(self).__name__}({self._items!r})"


class Headers(MultiDict):
    """Request header fields: names compare case-insensitively; items() gives lowercase names."""

    __slots__ = ()

    @staticmethod
    def _key(key):
        return key.lower()


# field name as sent -> what the interfaces call it; bounded, so names a client makes up cost
# a miss, never memory. Read by pool threads (a WSGI environ) and the loop at once: each get or
# set is one dict operation under the GIL, and racing threads store the same value (at worst a
# few entries past the bound)
cdef dict _ASGI_NAMES = {}          # -> the name lowercased (bytes)
cdef dict _CGI_KEYS = {}            # -> "HTTP_NAME", "CONTENT_TYPE", ... or None (left out)
cdef Py_ssize_t NAMES_CACHED = 256


cdef inline bint _next_field(const char* p, Py_ssize_t n, Py_ssize_t* i, Py_ssize_t* ns,
                             Py_ssize_t* colon, Py_ssize_t* vs, Py_ssize_t* ve) noexcept:
    """The next field line of a validated head from i: its name is p[ns:colon], its value
    p[vs:ve] (the whitespace around it left out); i moves past the line. False at the end."""
    cdef const char* cr
    cdef Py_ssize_t end
    while i[0] < n:
        cr = <const char*>memchr(p + i[0], c'\r', n - i[0])
        end = n if cr == NULL else cr - p
        if end == i[0]:                 # the empty line that ends the head
            i[0] = end + 2
            continue
        ns[0] = colon[0] = i[0]
        while colon[0] < end and p[colon[0]] != c':':
            colon[0] += 1
        vs[0] = colon[0] + 1
        while vs[0] < end and (p[vs[0]] == c' ' or p[vs[0]] == c'\t'):
            vs[0] += 1
        ve[0] = end
        while ve[0] > vs[0] and (p[ve[0] - 1] == c' ' or p[ve[0] - 1] == c'\t'):
            ve[0] -= 1
        i[0] = end + 2
        return True
    return False


cdef list _split_fields(Request req):
    """The request's field lines -> [(lowercased name, value), ...] as str (req.headers)."""
    cdef bytes head = req._head
    cdef const char* p = head
    cdef Py_ssize_t n = len(head), i = req.fields_off, ns, colon, vs, ve
    cdef list out = []
    while _next_field(p, n, &i, &ns, &colon, &vs, &ve):
        out.append((p[ns:colon].decode("ascii").lower(),
                    PyUnicode_DecodeLatin1(p + vs, ve - vs, NULL)))
    return out


cdef list _raw_fields(Request req):
    """The request's field lines -> [(lowercased name, value), ...] as bytes, as ASGI's
    scope["headers"] has them; notes an Upgrade: websocket on the way."""
    cdef bytes head = req._head
    cdef const char* p = head
    cdef Py_ssize_t n = len(head), i = req.fields_off, ns, colon, vs, ve
    cdef list out = []
    while _next_field(p, n, &i, &ns, &colon, &vs, &ve):
        name = PyBytes_FromStringAndSize(p + ns, colon - ns)
        lower = _ASGI_NAMES.get(name)
        if lower is None:
            lower = name.lower()
            if len(_ASGI_NAMES) < NAMES_CACHED:
                _ASGI_NAMES[name] = lower
        value = PyBytes_FromStringAndSize(p + vs, ve - vs)
        if lower == b"upgrade" and value.lower() == b"websocket":
            req.websocket = True
        out.append((lower, value))
    return out


cdef dict _cgi_fields(Request req):
    """Field lines -> the CGI variables of a WSGI environ: HTTP_NAME (repeated fields joined
    with ","), CONTENT_TYPE and CONTENT_LENGTH. A name with "_" is left out: it would pass
    for the one with "-" (X_Forwarded_For for X-Forwarded-For), as gunicorn and nginx do."""
    cdef bytes head = req._head
    cdef const char* p = head
    cdef Py_ssize_t n = len(head), i = req.fields_off, ns, colon, vs, ve
    cdef dict out = {}
    while _next_field(p, n, &i, &ns, &colon, &vs, &ve):
        name = PyBytes_FromStringAndSize(p + ns, colon - ns)
        key = _CGI_KEYS.get(name, False)
        if key is False:
            if b"_" in name:
                key = None
            else:               # a field name is a token: ASCII
                key = (<bytes>name).decode("ascii").upper().replace("-", "_")
                if key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
                    key = "HTTP_" + key
            if len(_CGI_KEYS) < NAMES_CACHED:
                _CGI_KEYS[name] = key
        if key is not None:
            value = PyUnicode_DecodeLatin1(p + vs, ve - vs, NULL)
            earlier = out.get(key)
            out[key] = value if earlier is None else earlier + "," + value
    return out


from types import SimpleNamespace as _Namespace


class _WholeBody:
    """req.stream() of a body that was gathered whole: one chunk."""

    def __init__(self, body):
        self.body = body

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.body:
            raise StopAsyncIteration
        body, self.body = self.body, None
        return body


# a request object per request: reuse their memory. The freelist is module state; its alloc and
# dealloc run no Python code, so under the GIL each is whole in whichever thread frees one
@cython.freelist(32)
cdef class Request:
    """One HTTP request, as the handler sees it. Headers and query are decoded on first use."""

    @property
    def http_version(self):
        return "1.1" if self.is_http11 else "1.0"

    @property
    def state(self):
        """A namespace for what hooks and middleware hand along with this request."""
        if self._state is None:
            self._state = _Namespace()
        return self._state

    @property
    def raw_path(self):
        """The path as it came, percent-encoding and all."""
        if self.path_len == 0:
            return b"/"
        return self._head[self.path_off:self.path_off + self.path_len]

    @property
    def query_string(self):
        if self.query_off < 0:
            return b""
        return self._head[self.query_off:self.query_off + self.query_len]

    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers(_split_fields(self))
        return self._headers

    @property
    def scheme(self):
        """"http", or what a trusted proxy says the client used (X-Forwarded-Proto)."""
        return "http" if self._scheme is None else self._scheme

    @scheme.setter
    def scheme(self, value):
        self._scheme = value

    @property
    def raw_headers(self):
        """[(lowercased name, value), ...] as bytes, in their order (ASGI's headers); also
        sets `websocket` when the request asks to upgrade to one."""
        return _raw_fields(self)

    def cgi_headers(self):
        """The header fields as a WSGI environ's CGI variables (a new dict)."""
        return _cgi_fields(self)

    @property
    def query(self):
        if self._query is None:
            self._query = MultiDict(_parse_qsl(self.query_string.decode("latin-1"),
                                               keep_blank_values=True))
        return self._query

    def stream(self):
        """The body as an async iterator of chunks: on a route with stream=True, each as it
        arrives (the body is never gathered whole; req.body stays empty); elsewhere, the
        whole body as one chunk."""
        if self.body_stream is not None:
            return self.body_stream
        return _WholeBody(self.body)

    def json(self):
        """The body parsed as JSON; BadRequest (a 400 answer, a ValueError) when it is not."""
        try:
            return _json.loads(self.body)
        except ValueError as e:             # JSONDecodeError, UnicodeDecodeError
            raise BadRequest(f"malformed JSON body: {e}") from None

    @property
    def user_agent(self):
        if self.ua_off < 0:
            return None
        return self._head[self.ua_off:self.ua_off + self.ua_len].decode("latin-1")

    @property
    def request_id(self):
        """This request's id: the one the server gave it, else the client's X-Request-ID."""
        if self._request_id is not None:
            return self._request_id
        if self.rid_off < 0:
            return None
        return self._head[self.rid_off:self.rid_off + self.rid_len].decode("latin-1")

    @request_id.setter
    def request_id(self, value):
        self._request_id = value

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"


cdef class Response:
    """What a handler returns when it needs more than a body: a status, headers, a type.
    body may be str, bytes, dict/list (sent as JSON), None, or an iterator or async iterator
    of chunks (str or bytes-like), each sent as soon as it is made."""

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
            self.body = json_bytes(body)
            default = "application/json"
        elif body is None:
            self.body = b""
            default = None
        elif hasattr(body, "__iter__"):
            self.body = iter(body)
            default = "application/octet-stream"
        elif hasattr(body, "__aiter__"):       # streamed from the worker's asyncio loop
            self.body = body.__aiter__()
            default = "application/octet-stream"
        else:
            raise TypeError(f"cannot send a {type(body).__name__} as a response body")
        self.content_type = content_type if content_type is not None else default

    def __repr__(self):
        return f"<Response {self.status}>"
