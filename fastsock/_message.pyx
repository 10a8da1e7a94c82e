# cython: language_level=3, boundscheck=False, wraparound=False
"""What a handler sees and returns: Request, Response, and the multi-dicts of headers and query.

Built by the parser, filled in by dispatch, read by the writer; no I/O here.
"""
from libc.string cimport memcmp

import json as _json
from json.encoder import encode_basestring_ascii as _encode_str
from urllib.parse import parse_qsl as _parse_qsl

try:                                    # the C encoder json.dumps uses, made once, not per call
    from _json import make_encoder as _make_encoder
except ImportError:                     # pragma: no cover - CPython always has it
    _make_encoder = None

# interned method names, so a request costs no new str for them; ids label metrics (0: other)
METHOD_NAMES = ("other", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                "CONNECT")
assert len(METHOD_NAMES) == N_METHODS
cdef tuple _METHOD_STRS = METHOD_NAMES


cdef str method_name(int method_id):
    return <str>_METHOD_STRS[method_id]


cdef int method_id(const char* p, Py_ssize_t n) noexcept:
    """The id of a method name (case-sensitive, as RFC 9110 says); 0 for any other."""
    if n == 3:
        if memcmp(p, b"GET", 3) == 0:
            return 1
        if memcmp(p, b"PUT", 3) == 0:
            return 4
    elif n == 4:
        if memcmp(p, b"HEAD", 4) == 0:
            return 2
        if memcmp(p, b"POST", 4) == 0:
            return 3
    elif n == 6:
        if memcmp(p, b"DELETE", 6) == 0:
            return 5
    elif n == 5:
        if memcmp(p, b"PATCH", 5) == 0:
            return 6
        if memcmp(p, b"TRACE", 5) == 0:
            return 8
    elif n == 7:
        if memcmp(p, b"OPTIONS", 7) == 0:
            return 7
        if memcmp(p, b"CONNECT", 7) == 0:
            return 9
    return 0


def _json_default(o):
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

# json.dumps(value, separators=(",", ":")) without building an encoder per call
_encode_json = (_make_encoder(None, _json_default, _encode_str, None, ":", ",", False, False,
                              True) if _make_encoder is not None else None)


cdef bytes json_bytes(object value):
    if _encode_json is None:
        return _json.dumps(value, separators=(",", ":")).encode("utf-8")
    return "".join(_encode_json(value, 0)).encode("utf-8")


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


cdef list _split_fields(bytes head):
    """Field lines of an already validated head -> [(lowercased name, value), ...]."""
    cdef list out = []
    cdef bytes line
    for line in head.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))
    return out


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
            self.body = json_bytes(body)
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
