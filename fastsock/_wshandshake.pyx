# cython: language_level=3, boundscheck=False, wraparound=False
"""The WebSocket opening handshake (RFC 6455 §4.2), sans-IO: whether a parsed request is one
(else the status to answer, and why), the key's accept value, what the client offers
(subprotocols, extensions), and the 101 head of an accepted one.

A refusal (400, 426) is an ordinary response through the writer; a 426 carries
VERSION_HEADER. The request's field lines are read from its validated head, in C.
"""
from base64 import b64encode
from hashlib import sha1

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1

from fastsock._chars cimport fs_init_char_classes, is_token, is_field_value, _eq_ci
from fastsock._fields cimport next_field
from fastsock._message cimport M_GET, Request
from fastsock._outbuf cimport OutBuffer

fs_init_char_classes()

# the extra header of a 426: the version this server speaks (RFC 6455 §4.4)
VERSION_HEADER = ("Sec-WebSocket-Version", "13")
cdef bytes GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
cdef bytes HEAD_101 = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\n")

# why a handshake is refused: its index is what _check answers
cdef tuple REASONS = (
    "",
    "a WebSocket handshake must be a GET",
    "a WebSocket handshake must be HTTP/1.1",
    "Upgrade does not name websocket",
    "Connection does not name upgrade",
    "a WebSocket handshake has no body",
    "Sec-WebSocket-Key is missing or repeated",
    "Sec-WebSocket-Key is not 16 bytes in base64",
    "Sec-WebSocket-Version is not 13",
)
cdef enum:
    OK, NOT_GET, NOT_HTTP11, NO_UPGRADE, NO_CONNECTION, HAS_BODY, KEY_COUNT, KEY_BAD, VERSION
cdef tuple STATUSES = (0, 400, 400, 400, 400, 400, 400, 400, 426)

# the field names the checks look for (lowercase)
cdef enum:
    F_OTHER, F_UPGRADE, F_CONNECTION, F_KEY, F_VERSION, F_LENGTH, F_TE, F_PROTOCOL, F_EXTENSIONS


cdef int _field(const char* p, Py_ssize_t n) noexcept:
    if _eq_ci(p, n, b"upgrade", 7):
        return F_UPGRADE
    if _eq_ci(p, n, b"connection", 10):
        return F_CONNECTION
    if _eq_ci(p, n, b"sec-websocket-key", 17):
        return F_KEY
    if _eq_ci(p, n, b"sec-websocket-version", 21):
        return F_VERSION
    if _eq_ci(p, n, b"content-length", 14):
        return F_LENGTH
    if _eq_ci(p, n, b"transfer-encoding", 17):
        return F_TE
    if _eq_ci(p, n, b"sec-websocket-protocol", 22):
        return F_PROTOCOL
    if _eq_ci(p, n, b"sec-websocket-extensions", 24):
        return F_EXTENSIONS
    return F_OTHER


cdef bint _has_element(const char* p, Py_ssize_t s, Py_ssize_t e, const char* lit,
                       Py_ssize_t ln) noexcept:
    """The comma list p[s:e] has an element that is lit (lowercase), in any case."""
    cdef Py_ssize_t i = s, a, b
    while i <= e:
        a = i
        while i < e and p[i] != c',':
            i += 1
        b = i
        while a < b and (p[a] == c' ' or p[a] == c'\t'):
            a += 1
        while b > a and (p[b - 1] == c' ' or p[b - 1] == c'\t'):
            b -= 1
        if _eq_ci(p + a, b - a, lit, ln):
            return True
        i += 1
    return False


cdef inline int _b64(unsigned char c) noexcept:
    if c'A' <= c <= c'Z':
        return c - c'A'
    if c'a' <= c <= c'z':
        return c - c'a' + 26
    if c'0' <= c <= c'9':
        return c - c'0' + 52
    if c == c'+':
        return 62
    if c == c'/':
        return 63
    return -1


cdef bint _key_valid(const char* p, Py_ssize_t n) noexcept:
    """Base64 of exactly 16 bytes: 22 characters of the alphabet, then "==" (RFC 6455 §4.1)."""
    cdef Py_ssize_t i
    if n != 24 or p[22] != c'=' or p[23] != c'=':
        return False
    for i in range(22):
        if _b64(<unsigned char>p[i]) < 0:
            return False
    return True


cdef int _check(Request req) noexcept:
    """OK, or why the request is no WebSocket opening handshake (an index of REASONS)."""
    cdef const char* p
    cdef Py_ssize_t n, i, ns, colon, vs, ve
    cdef bint upgrade = False, connection = False, version = False
    cdef int keys = 0, key_bad = 0, versions = 0, f
    if req.method_id != M_GET:
        return NOT_GET
    if not req.is_http11:
        return NOT_HTTP11
    if req._head is None:
        return NO_UPGRADE
    p = PyBytes_AS_STRING(req._head)
    n = PyBytes_GET_SIZE(req._head)
    i = req.fields_off
    while next_field(p, n, &i, &ns, &colon, &vs, &ve):
        f = _field(p + ns, colon - ns)
        if f == F_UPGRADE:
            upgrade = upgrade or _has_element(p, vs, ve, b"websocket", 9)
        elif f == F_CONNECTION:
            connection = connection or _has_element(p, vs, ve, b"upgrade", 7)
        elif f == F_KEY:
            keys += 1
            key_bad = key_bad or not _key_valid(p + vs, ve - vs)
        elif f == F_VERSION:
            versions += 1
            version = ve - vs == 2 and p[vs] == c'1' and p[vs + 1] == c'3'
        elif f == F_TE:
            return HAS_BODY
        elif f == F_LENGTH:             # (the parser has checked its digits: "0", "00"... is none)
            while vs < ve and p[vs] == c'0':
                vs += 1
            if vs < ve:
                return HAS_BODY
    if not upgrade:
        return NO_UPGRADE
    if not connection:
        return NO_CONNECTION
    if keys != 1:
        return KEY_COUNT
    if key_bad:
        return KEY_BAD
    if versions != 1 or not version:
        return VERSION
    return OK


cpdef int check(Request req):
    """0 if req is a valid WebSocket opening handshake, else the status to answer: 400, or 426
    when it asks for a version other than 13 (the answer then carries VERSION_HEADER)."""
    return STATUSES[_check(req)]


def refusal(Request req):
    """(status, reason) of check(): the reason for the log line ("" when it is valid)."""
    cdef int r = _check(req)
    return STATUSES[r], REASONS[r]


def accept_value(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2): base64 of the SHA-1 of
    the key and the protocol's GUID."""
    if isinstance(key, str):
        key = (<str>key).encode("latin-1")
    return b64encode(sha1(key + GUID).digest()).decode("ascii")


def request_accept_value(Request req):
    """accept_value() of the request's Sec-WebSocket-Key (check() let it through: one line),
    read off its head: the headers' dict is not built for it."""
    cdef list found = _field_values(req, F_KEY)
    if not found:
        return accept_value(b"")
    vs, ve = found[0]
    return accept_value(req._head[vs:ve])


cdef list _field_values(Request req, int which):
    """The values (bytes slices of the head) of every line of one field, in order."""
    cdef const char* p
    cdef Py_ssize_t n, i, ns, colon, vs, ve
    cdef list out = []
    if req._head is None:
        return out
    p = PyBytes_AS_STRING(req._head)
    n = PyBytes_GET_SIZE(req._head)
    i = req.fields_off
    while next_field(p, n, &i, &ns, &colon, &vs, &ve):
        if _field(p + ns, colon - ns) == which:
            out.append((vs, ve))
    return out


def subprotocols(Request req):
    """The subprotocols the client offers (Sec-WebSocket-Protocol), in order over its repeated
    lines; an element that is no token (RFC 6455 §4.1) is left out."""
    cdef const char* p = PyBytes_AS_STRING(req._head) if req._head is not None else NULL
    cdef Py_ssize_t vs, ve, i, a, b, k
    cdef bint token
    cdef list out = []
    for vs, ve in _field_values(req, F_PROTOCOL):
        i = vs
        while i <= ve:
            a = i
            while i < ve and p[i] != c',':
                i += 1
            b = i
            i += 1
            while a < b and (p[a] == c' ' or p[a] == c'\t'):
                a += 1
            while b > a and (p[b - 1] == c' ' or p[b - 1] == c'\t'):
                b -= 1
            token = b > a
            for k in range(a, b):
                token = token and is_token(<unsigned char>p[k])
            if token:
                out.append(PyUnicode_DecodeLatin1(p + a, b - a, NULL))
    return out


def extensions(Request req):
    """The client's Sec-WebSocket-Extensions value, its repeated lines joined with ", " ("" for
    none): what _wsdeflate.negotiate reads."""
    cdef const char* p = PyBytes_AS_STRING(req._head) if req._head is not None else NULL
    cdef Py_ssize_t vs, ve
    return ", ".join([PyUnicode_DecodeLatin1(p + vs, ve - vs, NULL)
                      for vs, ve in _field_values(req, F_EXTENSIONS)])


def choose_subprotocol(list offered, subprotocol):
    """The app's pick checked against what the client offered: it, or None for None; a
    subprotocol the client did not offer is a ValueError (RFC 6455 §4.2.2: the server answers
    with one of the client's). The connection calls this before write_accept."""
    if subprotocol is None:
        return None
    if subprotocol not in offered:
        raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client "
                         f"(it offered {offered!r})")
    return subprotocol


# the header names the server writes itself in a 101 (lowercase): the app may not set them
cdef frozenset _SERVERS_OWN = frozenset({
    b"upgrade", b"connection", b"content-length", b"transfer-encoding",
    b"sec-websocket-accept", b"sec-websocket-protocol", b"sec-websocket-extensions"})


cdef bytes _checked(object s, bint token, str what):
    cdef bytes b = s if type(s) is bytes else str(s).encode("latin-1")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    if token and n == 0:
        raise ValueError(f"empty {what}")
    for i in range(n):
        if not (is_token(p[i]) if token else is_field_value(p[i])):
            raise ValueError(f"invalid {what} {s!r}")
    return b


cdef int _line(OutBuffer out, const char* name, Py_ssize_t nn, bytes value) except -1:
    out.write(name, nn)
    out.write(b": ", 2)
    out.write_bytes(value)
    return out.write(b"\r\n", 2)


cdef int write_accept(OutBuffer out, str accept, str subprotocol, str extensions,
                      list extra_headers, bytes date_line) except -1:
    cdef unsigned long long mark = out.mark()
    cdef bint app_date = False
    cdef bytes name_b, value_b
    try:
        out.write_bytes(HEAD_101)
        _line(out, b"Sec-WebSocket-Accept", 20, _checked(accept, False, "Sec-WebSocket-Accept"))
        if subprotocol is not None:
            _line(out, b"Sec-WebSocket-Protocol", 22, _checked(subprotocol, True, "subprotocol"))
        if extensions is not None:
            _line(out, b"Sec-WebSocket-Extensions", 24,
                  _checked(extensions, False, "Sec-WebSocket-Extensions"))
        for name, value in extra_headers or ():
            name_b = _checked(name, True, "response header name")
            value_b = _checked(value, False, f"value of response header {name!r}:")
            if name_b.lower() in _SERVERS_OWN:
                raise ValueError(f"response header {name!r} is the server's to set in a 101")
            app_date = app_date or name_b.lower() == b"date"
            _line(out, PyBytes_AS_STRING(name_b), PyBytes_GET_SIZE(name_b), value_b)
        if not app_date and date_line is not None:
            out.write_bytes(date_line)
        return out.write(b"\r\n", 2)
    except BaseException:
        out.rollback(mark)              # nothing half-written stays in the output
        raise


def accept_head(accept, subprotocol=None, extensions=None, extra_headers=None,
                bytes date_line=None, OutBuffer out=None):
    """write_accept from Python (for tests): what out holds after it (a new buffer by default)."""
    if out is None:
        out = OutBuffer()
    write_accept(out, accept, subprotocol, extensions, extra_headers, date_line)
    return out.getvalue()
