"""The message room without sockets: Request's lazy views, Response's bodies, the JSON encoder
handlers' dicts and lists go through, and the route ids shared with the router and metrics."""
import gc
import json
import threading
import time

import pytest

from fastsock._json import configure, json_encode
from fastsock._message import METHOD_NAMES, Headers, MultiDict, Response, RouteId
from fastsock._parser import RequestParser
from fastsock.routing import Router


def request(raw: bytes):
    (req,) = RequestParser().feed(raw)
    return req


def test_request_views_are_decoded_on_first_use():
    req = request(b"GET /a%20b?x=1&x=2&y= HTTP/1.1\r\nHost: h\r\nUser-Agent: t/1\r\n"
                  b"X-Request-ID: abc\r\nAccept: a\r\nACCEPT: b\r\n\r\n")
    assert (req.method, req.path, req.raw_path, req.query_string) == (
        "GET", "/a b", b"/a%20b", b"x=1&x=2&y=")
    assert req.query.getall("x") == ["1", "2"] and req.query["y"] == ""
    assert req.headers["accept"] == "a" and req.headers.getall("Accept") == ["a", "b"]
    assert req.user_agent == "t/1" and req.request_id == "abc"
    req.request_id = "mine"                 # what the server's dispatch sets
    assert req.request_id == "mine"
    assert req.method_id == METHOD_NAMES.index("GET")


HEAD_FOR_INTERFACES = (b"POST / HTTP/1.1\r\nHost: h\r\nX-Trail: a b \t\r\nX-Empty:\r\n"
                       b"Content-Type:\ttext/plain\r\nContent-Length: 3\r\nAccept: a\r\n"
                       b"ACCEPT: b\r\nX_Sneaky: 1\r\nUpgrade: WebSocket\r\nX-L1: \xe9\r\n\r\nabc")


def test_asgi_headers_are_the_field_lines_lowercased_and_trimmed():
    req = request(HEAD_FOR_INTERFACES)
    assert req.raw_headers == [
        (b"host", b"h"), (b"x-trail", b"a b"), (b"x-empty", b""), (b"content-type", b"text/plain"),
        (b"content-length", b"3"), (b"accept", b"a"), (b"accept", b"b"), (b"x_sneaky", b"1"),
        (b"upgrade", b"WebSocket"), (b"x-l1", b"\xe9")]
    assert req.websocket


def test_cgi_headers_join_repeats_and_leave_out_underscored_names():
    assert request(HEAD_FOR_INTERFACES).cgi_headers() == {
        "HTTP_HOST": "h", "HTTP_X_TRAIL": "a b", "HTTP_X_EMPTY": "", "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "3", "HTTP_ACCEPT": "a,b", "HTTP_UPGRADE": "WebSocket",
        "HTTP_X_L1": "\xe9"}


def test_header_names_past_the_name_cache_are_still_right():
    """Names are cached up to a bound (a client making names up costs a miss, not memory)."""
    for n in range(600):
        req = request(b"GET / HTTP/1.1\r\nHost: h\r\nX-N%d: %d\r\n\r\n" % (n, n))
        assert req.raw_headers[1] == (b"x-n%d" % n, b"%d" % n)
        assert req.cgi_headers()["HTTP_X_N%d" % n] == str(n)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                    "TRACE", "PURGE", "get"])
def test_method_ids_label_known_methods_and_keep_others(method):
    target = b"*" if method == "OPTIONS" else b"/"
    req = request(method.encode() + b" " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.method == method
    assert METHOD_NAMES[req.method_id] == (method if method in METHOD_NAMES else "other")


def test_multidicts():
    q = MultiDict([("a", "1"), ("b", "2"), ("a", "3")])
    assert q["a"] == "1" and q.getall("a") == ["1", "3"] and len(q) == 3 and "b" in q
    h = Headers([("content-type", "x")])
    assert h["Content-Type"] == "x" and "CONTENT-TYPE" in h and h.get("nope") is None


def test_response_bodies():
    assert Response("é").body == "é".encode() and Response("x").content_type.startswith("text/")
    assert Response({"a": 1}).body == b'{"a":1}'
    assert Response({"a": 1}).content_type == "application/json"
    assert Response(None, 204).body == b"" and Response(None).content_type is None
    assert Response(bytearray(b"ab")).body == b"ab"
    assert list(Response(iter([b"a"])).body) == [b"a"]
    with pytest.raises(TypeError):
        Response(1.5)


@pytest.fixture
def builtin_json():
    """The built-in encoder (not orjson, when it is installed): json.dumps' bytes."""
    configure(use_orjson=False)
    yield
    configure()


JSON_VALUES = [
    {"message": "Hello, World!"}, [], {}, [1, -1, 0, 2**63 - 1, -2**63, 2**80, -(2**70)],
    {"a": [None, True, False, 1.5, 1.0, 1e300, -0.0, float("nan"), float("inf")]},
    {"é": "ü\n\"\\/", "ctl": "\x00\x1f\x7f", "emoji": "\U0001f600"}, (1, 2),
    {1: 2, "a": 3}, {"t": (1, [2, {"z": ()}])}, ["\ud800"], {"k": 10**30},
]


@pytest.mark.parametrize("value", JSON_VALUES)
def test_json_is_what_json_dumps_writes(value, builtin_json):
    assert json_encode(value) == json.dumps(value, separators=(",", ":")).encode()


def test_json_deep_circular_and_unknown_values(builtin_json):
    deep = inner = []
    for _ in range(300):
        inner.append([])
        inner = inner[0]
    assert json_encode(deep) == json.dumps(deep, separators=(",", ":")).encode()
    loop = []
    loop.append(loop)
    with pytest.raises((ValueError, RecursionError)):
        json_encode(loop)
    with pytest.raises(TypeError):
        json_encode({"a": object()})
    assert json_encode({"a": 1}) == b'{"a":1}'        # the encoder is fine afterwards


@pytest.mark.parametrize("size", [2030, 2040, 2045, 2046, 2047, 2048, 2049, 5000, 1 << 21])
def test_json_past_the_stack_buffer_of_every_size(size, builtin_json):
    value = {"s": "x" * (size - 8), "l": [1, "y" * (size // 3)]}
    assert json_encode(value) == json.dumps(value, separators=(",", ":")).encode()


class _Yielding(dict):
    """json.dumps' encoder calls items() of a dict subclass: here other threads get to run."""

    def items(self):
        time.sleep(0)               # gives up the GIL
        return super().items()


class _Collected:
    """Found by the cycle collector when it runs (an allocation can run it): its __del__ runs
    Python code, and other threads get to run."""

    def __init__(self):
        self.me = self

    def __del__(self):
        time.sleep(0)


def test_json_from_many_threads_at_once_is_each_its_own(builtin_json):
    # issue 19: threads and the loop encode at once; each body must be its own, large too
    def value(t):
        return {"t": t, "a": [t] * 5, "mid": _Yielding({"t": t, "u": [t, "x" * t]}),
                "pad": "p" * (3 << 20 if t % 4 == 0 else 100 * t), "z": {"t": t}}

    values = [value(t) for t in range(8)]
    expected = [json.dumps(v, separators=(",", ":")).encode() for v in values]
    wrong, start = [], threading.Barrier(len(values))

    def run(t):
        start.wait()
        for i in range(30):
            if i % 5 == 0:
                _Collected()        # garbage for the collector, found mid-encode
            got = json_encode(values[t])
            if got != expected[t]:
                wrong.append((t, i, got[:80]))
                return

    threshold = gc.get_threshold()
    gc.set_threshold(50)            # the collector runs often
    try:
        threads = [threading.Thread(target=run, args=(t,)) for t in range(len(values))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        gc.set_threshold(*threshold)
    assert wrong == []


def test_route_ids_are_one_enum_for_router_and_metrics():
    assert RouteId.ROUTE_NONE == 0
    assert {RouteId.ROUTE_HEALTHZ, RouteId.ROUTE_READYZ, RouteId.ROUTE_METRICS} == {1, 2, 3}
    router = Router()
    router.add("/a", ["GET"], lambda req: "a")
    assert router.match("/a")[0].id == RouteId.FIRST_APP_ROUTE


@pytest.mark.parametrize("target, authority", [
    (b"http://other.example:9000/go?x=1", "other.example:9000"),
    (b"https://other.example/go", "other.example"),
    (b"http://[::1]:8080/go", "[::1]:8080"),
    (b"http://other.example", "other.example"),
    (b"http://other.example?q=1", "other.example"),
])
def test_an_absolute_form_target_names_the_host(target, authority):
    req = request(b"GET " + target + b" HTTP/1.1\r\nHost: sent.example\r\n"
                  b"Cookie: a=1\r\n\r\n")
    assert req.authority == authority
    assert req.headers["host"] == authority and req.headers.getall("host") == [authority]
    assert dict(req.raw_headers)[b"host"] == authority.encode()
    assert [v for k, v in req.raw_headers if k == b"host"] == [authority.encode()]
    assert req.cgi_headers()["HTTP_HOST"] == authority


@pytest.mark.parametrize("target", [b"/go", b"/", b"*"])
def test_an_origin_form_target_keeps_the_host_field(target):
    method = b"OPTIONS" if target == b"*" else b"GET"
    req = request(method + b" " + target + b" HTTP/1.1\r\nHost: sent.example\r\n\r\n")
    assert req.authority is None
    assert req.headers["host"] == "sent.example"
    assert req.cgi_headers()["HTTP_HOST"] == "sent.example"


def test_repeated_cookie_lines_are_joined_with_a_semicolon_for_wsgi():
    req = request(b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\n"
                  b"Accept: x\r\nAccept: y\r\n\r\n")
    environ = req.cgi_headers()
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_ACCEPT"] == "x,y"
