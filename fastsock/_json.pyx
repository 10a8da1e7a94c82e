# cython: language_level=3, boundscheck=False, wraparound=False
"""JSON for a handler's dict or list, encoded in C: exact dicts, lists and tuples of ASCII strs,
ints, bools and None straight into a buffer, the same bytes as json.dumps(value,
separators=(",", ":")); any other value in it (floats, subclasses, the types below) by orjson
when it is installed (one call per such value: cheaper than orjson's own call for the whole of
a small body), else by json.dumps' C encoder. Beyond what json.dumps takes: datetime, date and
time (ISO 8601), UUID and Decimal (as strings: a Decimal keeps every digit), Enum (its value),
dataclasses (their fields), set and frozenset (lists); then the app's json_default(o); bytes
are refused (their encoding is the app's to choose). Used by Response and by the writer; no
I/O here.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_AsLongLongAndOverflow
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

import dataclasses
import datetime
import decimal
import enum
import importlib
import uuid

from _json import make_encoder as _make_encoder     # json.dumps' C encoder
from json.encoder import encode_basestring_ascii as _encode_str

# The process's encoder (configure(): an app sets it when its dispatcher is built): read by
# any thread, written at start-up only.
cdef object _app_default = None         # the app's json_default, or None
cdef object _orjson_dumps = None        # orjson.dumps, when installed and not declined
cdef int _orjson_options = 0


def _json_default(o):
    """A value neither encoder takes as it is, made into one it takes (or TypeError)."""
    if isinstance(o, (datetime.date, datetime.time)):      # datetime is a date
        return o.isoformat()
    if isinstance(o, (uuid.UUID, decimal.Decimal)):
        return str(o)
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (set, frozenset)):
        return list(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    if _app_default is not None:
        return _app_default(o)
    if isinstance(o, (bytes, bytearray, memoryview)):
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable: decode "
                        "it (or base64 it) to a str in the handler, or give App(json_default=)")
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def configure(default=None, use_orjson=None):
    """The process's JSON encoder: default(o) for values of other types (App(json_default=));
    use_orjson: True, False, or None (when it is installed). -> whether orjson is used."""
    global _app_default, _orjson_dumps, _orjson_options
    _app_default = default
    _orjson_dumps = None
    if use_orjson is None or use_orjson:
        try:
            orjson = importlib.import_module("orjson")
        except ImportError:
            if use_orjson:
                raise
        else:
            _orjson_dumps = orjson.dumps
            # int keys as json.dumps writes them ("1"); dataclasses, datetimes, UUIDs, enums
            # natively, the rest through _json_default
            _orjson_options = orjson.OPT_NON_STR_KEYS
    return _orjson_dumps is not None


# json.dumps(value, separators=(",", ":"), default=_json_default) without building an encoder
# per call: for what the fast encoder below hands on (subclasses, non-str keys, other types,
# deep nesting)
_encode_json = _make_encoder(None, _json_default, _encode_str, None, ":", ",", False, False, True)


# A handler's dict or list is encoded here, straight into a buffer of its own: exact dicts
# with str keys, lists, tuples, ASCII strs, ints, bools and None, the same bytes as
# json.dumps(value, separators=(",", ":")); anything else (floats too) is handed to orjson or
# the C encoder above.
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
    cdef bytes data
    b.n = mark
    if _orjson_dumps is not None:
        try:
            data = _orjson_dumps(v, default=_json_default, option=_orjson_options)
        except TypeError:
            pass                        # json.dumps' answer: its bytes (an int past 64 bits
        else:                           # in a subclass), or its TypeError
            return _put(b, data, len(data))
    return _put_ascii(b, "".join(_encode_json(v, 0)))


cdef bytes json_bytes(object value):
    """value as compact JSON: what the encoder above takes as json.dumps writes it (ASCII),
    the rest as orjson writes it (UTF-8) when configured, else as json.dumps does."""
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


configure()
