"""The Python layer without sockets: routing, return values, the serializer's rules."""
import pytest

from fastsock import App, HTTPError, Response
from fastsock._writer import error_response, serialize
from fastsock.routing import Router
from fastsock.testing import TestClient


def test_router_exact_and_params():
    r = Router()
    r.add("/a", ["GET"], "exact")
    r.add("/u/{id:int}", ["GET"], "int")
    r.add("/s/{name}/x", ["GET"], "str")
    r.add("/p/{rest:path}", ["GET"], "path")
    assert r.match("/a")[0].handlers["GET"] == "exact"
    route, params = r.match("/u/17")
    assert params == {"id": 17} and type(params["id"]) is int
    assert r.match("/u/x") == (None, None)
    assert r.match("/s/bob/x")[1] == {"name": "bob"}
    assert r.match("/s/bob/y/x") == (None, None)
    assert r.match("/p/a/b/c")[1] == {"rest": "a/b/c"}
    with pytest.raises(ValueError):
        r.add("/bad/{x:float}", ["GET"], "nope")


def test_return_values():
    app = App()
    app.get("/s")(lambda req: "text")
    app.get("/b")(lambda req: b"raw")
    app.get("/d")(lambda req: {"a": 1})
    app.get("/l")(lambda req: [1, 2])
    app.get("/t")(lambda req: ("made", 201))
    app.get("/t3")(lambda req: ("made", 202, {"X-A": "b"}))
    app.get("/r")(lambda req: Response(b"x", status=409, content_type="text/x"))
    app.get("/e")(lambda req: (_ for _ in ()).throw(HTTPError(418, "teapot")))
    app.get("/n")(lambda req: None)
    with TestClient(app) as client:
        assert client.get("/s").text == "text" and client.get("/b").content == b"raw"
        r = client.get("/d")
        assert r.content == b'{"a":1}' and r.headers["content-type"] == "application/json"
        assert client.get("/l").content == b"[1,2]"
        assert (client.get("/t").status_code, client.get("/t").text) == (201, "made")
        r = client.get("/t3")
        assert r.status_code == 202 and r.headers["x-a"] == "b"
        r = client.get("/r")
        assert r.status_code == 409 and r.headers["content-type"] == "text/x"
        assert (client.get("/e").status_code, client.get("/e").text) == (418, "teapot")
        assert client.get("/n").status_code == 204


def test_serializer_framing():
    date = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    assert serialize("hi", date_line=date) == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                               b"Content-Length: 2\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nhi")
    assert serialize("hi", keep_alive=False).count(b"Connection: close\r\n") == 1
    assert b"Connection: keep-alive" in serialize("hi", http11=False)
    assert serialize("hi", head_only=True).endswith(b"\r\n\r\n")
    assert b"Content-Length: 2\r\n" in serialize("hi", head_only=True)
    streamed = serialize(Response(iter(["ab", b"", b"cde"])))
    assert streamed.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in streamed
    assert b"Content-Length" not in serialize(Response(None, 204))


@pytest.mark.parametrize("name, value", [
    ("X-A", "a\r\nSet-Cookie: x"), ("X-A", "a\nb"), ("X-A", "a\rb"), ("X-A", "a\x00b"),
    ("X A", "v"), ("X\r\nB", "v"), ("", "v"),
])
def test_serializer_refuses_cr_lf_and_bad_names(name, value):
    with pytest.raises(ValueError):
        serialize(Response("x", headers=[(name, value)]))


def test_handler_framing_headers_are_the_servers():
    out = serialize(Response("abc", headers=[("Transfer-Encoding", "chunked"),
                                             ("Connection", "upgrade"), ("X-Ok", "1")]))
    assert b"Content-Length: 3\r\n" in out and b"X-Ok: 1\r\n" in out
    assert b"chunked" not in out and b"upgrade" not in out


def test_a_handlers_content_length_is_a_promise():
    out = serialize(Response("abc", headers=[("Content-Length", "3")]))
    assert out.count(b"Content-Length: 3\r\n") == 1
    for bad in ("99", "-3", "3x", "0x3", ""):
        with pytest.raises(ValueError):
            serialize(Response("abc", headers=[("Content-Length", bad)]))
    with pytest.raises(ValueError, match="disagree"):
        serialize(Response(iter([b"abc"]), headers=[("Content-Length", "3"),
                                                    ("content-length", "4")]))


def test_error_response_closes():
    out = error_response(431)
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close\r\n" in out


def test_a_plain_auth_middleware_shuts_async_routes_too():
    # issue 21: a plain-def middleware skipped async def routes (every one of them open)
    app = App()
    ran = []

    @app.middleware
    def auth(req, call_next):
        if req.headers.get("authorization") != "yes":
            return "denied", 401
        return call_next(req)

    @app.get("/secret")
    async def secret(req):
        ran.append(1)
        return "secret"
    with TestClient(app) as client:
        assert client.get("/secret").status_code == 401 and ran == []
        assert client.get("/secret", headers={"Authorization": "yes"}).text == "secret"


SHARED = Response(b"shared", 200)


def test_middleware_and_after_hooks_get_a_response_of_their_own():
    app = App()
    seen = []

    @app.middleware
    async def tag(req, call_next):
        response = await call_next(req)
        seen.append(type(response).__name__)
        response.headers.append(("X-Tag", "1"))
        return response

    @app.after_request
    def after(req, response):
        seen.append(type(response).__name__)

    app.get("/shared")(lambda req: SHARED)
    app.get("/forbidden")(lambda req: (_ for _ in ()).throw(HTTPError(403, "no")))
    app.get("/dict")(lambda req: {"a": 1})
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/shared").headers.get_list("x-tag") == ["1"]
        assert SHARED.headers == []                 # the module's Response never changed
        r = client.get("/forbidden")                # an HTTPError: a response it sees
        assert (r.status_code, r.text, r.headers["x-tag"]) == (403, "no", "1")
        r = client.get("/dict")
        assert r.json() == {"a": 1} and r.headers["content-type"] == "application/json"
    assert set(seen) == {"Response"}
