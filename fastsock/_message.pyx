# cython: language_level=3, boundscheck=False, wraparound=False
"""What a handler sees and returns: Request and Response, and the methods' names and ids.

Built by the parser, filled in by dispatch, read by the writer; no I/O here. A dict or list
body is encoded by _json; the headers and query are read into _fields' multi-dicts.
"""
cimport cython
from libc.string cimport memcmp

from fastsock._fields cimport split_fields, raw_fields, cgi_fields
from fastsock._json cimport json_bytes

import json as _json
from sys import intern as _intern
from urllib.parse import parse_qsl as _parse_qsl

# the multi-dicts are _fields'; a handler's code imports them from here too
from fastsock._fields import Headers, MultiDict

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


def _with_host(list fields, name, value):
    """The fields with the Host an absolute-form target names in place of the sent ones."""
    return [field for field in fields if field[0] != name] + [(name, value)]


class BadRequest(ValueError):
    """What the client sent cannot be used: answered 400, as a client error, not a 500."""
    status = 400


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

    def close_after(self):
        """The connection closes once this request is answered: what the client sent after it
        is never read as a request (a WebSocket handshake that is refused)."""
        self.keep_alive = False

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
            fields = split_fields(self._head, self.fields_off)
            authority = self._authority()
            if authority is not None:
                fields = _with_host(fields, "host", authority)
            self._headers = Headers(fields)
        return self._headers

    cdef str _authority(self):
        """The authority of an absolute-form target (GET http://host:port/path), else None:
        RFC 9112 §3.2.2 has it stand for the Host field, which is then ignored. (The target
        was validated by the parser: ASCII, a scheme of http or https, a host, no userinfo.)"""
        cdef const char* p
        cdef Py_ssize_t start, i, end, n
        if self._head is None:
            return None
        p = self._head
        n = len(self._head)
        start = len(self.method) + 1
        if start >= n or p[start] == c'/' or p[start] == c'*':
            return None                     # origin-form (nearly every request), or "*"
        i = start
        while i < n and p[i] != c':':
            i += 1
        i += 3                              # past "://"
        end = i
        while end < n and p[end] != c'/' and p[end] != c'?' and p[end] != c' ':
            end += 1                        # (the parser refused userinfo and an empty host)
        if end <= i:
            return None
        return self._head[i:end].decode("ascii")

    @property
    def authority(self):
        """The host of an absolute-form target, else None (req.headers["host"] is it then)."""
        return self._authority()

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
        cdef bint websocket = False
        fields = raw_fields(self._head, self.fields_off, &websocket)
        if websocket:
            self.websocket = True
        authority = self._authority()
        if authority is not None:
            fields = _with_host(fields, b"host", authority.encode("ascii"))
        return fields

    def cgi_headers(self):
        """The header fields as a WSGI environ's CGI variables (a new dict)."""
        environ = cgi_fields(self._head, self.fields_off)
        authority = self._authority()
        if authority is not None:
            environ["HTTP_HOST"] = authority
        return environ

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
        """This request's id: the one set or given it (a str made on first read of one the
        server gave), else the client's X-Request-ID."""
        if self._request_id is not None:
            return self._request_id
        if self.id_len:
            self._request_id = self.id_text[:self.id_len].decode("ascii")
            return self._request_id
        if self.rid_off < 0:
            return None
        return self._head[self.rid_off:self.rid_off + self.rid_len].decode("latin-1")

    @request_id.setter
    def request_id(self, value):
        self._request_id = value
        self.id_len = 0                 # one given before is not its id any more

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"


cdef class Dispatcher:
    """A dispatch callable, dispatch(req) -> the result, that a connection calls from C: the
    ~80 instructions per request of a Python call (a bound method, its arguments parsed) not
    paid. A Python subclass's dispatch is the one called, from C too."""

    cpdef object dispatch(self, Request req):
        raise NotImplementedError

    def __call__(self, Request req not None):
        return self.dispatch(req)


cdef class Response:
    """What a handler returns when it needs more than a body: a status, headers, a type.
    body may be str, bytes, dict/list/set or a dataclass (sent as JSON), None, or an iterator
    or async iterator of chunks (str or bytes-like), each sent as soon as it is made."""

    def __init__(self, body=b"", int status=200, headers=None, content_type=None):
        self.status = status
        self.headers = list(headers.items() if isinstance(headers, dict) else headers or ())
        if isinstance(body, str):
            self.body = body.encode("utf-8")
            default = "text/plain; charset=utf-8"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            self.body = bytes(body)
            default = "application/octet-stream"
        elif isinstance(body, (dict, list, set, frozenset)) or (
                hasattr(type(body), "__dataclass_fields__") and not isinstance(body, type)):
            self.body = json_bytes(body)        # (a set, a dataclass: as _json encodes them)
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

    def copy(self):
        """A Response of its own: the same status, body and type, a copy of the headers (what
        middleware sees of a Response a handler may share between requests)."""
        cdef Response c = Response.__new__(Response)
        c.status, c.body, c.content_type = self.status, self.body, self.content_type
        c.headers = list(self.headers) if self.headers is not None else []
        return c

    def __repr__(self):
        return f"<Response {self.status}>"
