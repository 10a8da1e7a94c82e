# cython: language_level=3, boundscheck=False, wraparound=False
"""A request's header fields and query as a handler and the interfaces read them: the
multi-dicts (Headers, MultiDict), and the field lines read back out of the validated head
(for req.headers, ASGI's raw headers, a WSGI environ). No I/O here.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_DecodeLatin1


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


cdef list split_fields(bytes head, Py_ssize_t fields_off):
    """The request's field lines -> [(lowercased name, value), ...] as str (req.headers)."""
    cdef const char* p = head
    cdef Py_ssize_t n = len(head), i = fields_off, ns, colon, vs, ve
    cdef list out = []
    while next_field(p, n, &i, &ns, &colon, &vs, &ve):
        out.append((p[ns:colon].decode("ascii").lower(),
                    PyUnicode_DecodeLatin1(p + vs, ve - vs, NULL)))
    return out


cdef list raw_fields(bytes head, Py_ssize_t fields_off, bint* websocket):
    """The request's field lines -> [(lowercased name, value), ...] as bytes, as ASGI's
    scope["headers"] has them; notes an Upgrade: websocket on the way."""
    cdef const char* p = head
    cdef Py_ssize_t n = len(head), i = fields_off, ns, colon, vs, ve
    cdef list out = []
    while next_field(p, n, &i, &ns, &colon, &vs, &ve):
        name = PyBytes_FromStringAndSize(p + ns, colon - ns)
        lower = _ASGI_NAMES.get(name)
        if lower is None:
            lower = name.lower()
            if len(_ASGI_NAMES) < NAMES_CACHED:
                _ASGI_NAMES[name] = lower
        value = PyBytes_FromStringAndSize(p + vs, ve - vs)
        if lower == b"upgrade" and value.lower() == b"websocket":
            websocket[0] = True
        out.append((lower, value))
    return out


cdef dict cgi_fields(bytes head, Py_ssize_t fields_off):
    """Field lines -> the CGI variables of a WSGI environ: HTTP_NAME (repeated fields joined
    with ",", Cookie with "; "), CONTENT_TYPE and CONTENT_LENGTH. A name with "_" is left out:
    it would pass for the one with "-" (X_Forwarded_For for X-Forwarded-For), as gunicorn and
    nginx do."""
    cdef const char* p = head
    cdef Py_ssize_t n = len(head), i = fields_off, ns, colon, vs, ve
    cdef dict out = {}
    while next_field(p, n, &i, &ns, &colon, &vs, &ve):
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
            if earlier is not None:     # a repeated Cookie joined as one (RFC 9113 §8.2.3)
                value = earlier + ("; " if key == "HTTP_COOKIE" else ",") + value
            out[key] = value
    return out
