"""`@app.websocket` routes inside the app's middleware (async and plain), before/after hooks and
error handlers, over real sockets with the `websockets` client: a before hook or a middleware
denies the handshake, call_next returns the 101 the layers add headers to, an error handler's
response is the denial for what the handler raised before accepting; the request id on the
101 and on the records the handler logs while the WebSocket is open; and what a hostile layer
or handler does costs one handshake, never the worker."""
import re

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.servers import start_server
from tests.support.waiting import wait_for_log

APP = "tests.apps.websockets_layers:app"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("wsapp"), "--access-log", "text", app=APP)
    yield s
    s.stop()


def url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def denial(server, path: str, **kw):
    """The response that refused the handshake."""
    with pytest.raises(InvalidStatus) as refused:
        with connect(url(server, path), open_timeout=10, **kw):
            pass
    return refused.value.response


def still_serving(server):
    assert server.get("/http").text == "plain HTTP\n"
    with connect(url(server, "/echo"), open_timeout=10) as ws:
        ws.send("still here")
        assert ws.recv() == "still here"


def test_the_layers_see_the_101_and_their_headers_go_into_it(server):
    with connect(url(server, "/echo"), open_timeout=10) as ws:
        headers = ws.response.headers
        # the innermost first: the after hook, then the plain middleware, the async one
        assert headers["X-After"] == "101"
        assert headers["X-Plain-MW"] == "101" and headers["X-Async-MW"] == "101"
        ws.send("through the layers")
        assert ws.recv() == "through the layers"


def test_a_before_hook_denies_the_handshake_with_its_response(server):
    response = denial(server, "/private/echo")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.body == b"missing token\n"
    # its answer goes through the after hook and the middleware as any other
    assert response.headers["X-After"] == "401" and response.headers["X-Async-MW"] == "401"
    with connect(url(server, "/private/echo?token=secret"), open_timeout=10) as ws:
        assert ws.response.headers["X-Handler"] == "private"
        assert ws.response.headers["X-After"] == "101"


def test_a_hooks_denial_closes_the_connection_what_follows_is_never_a_request(server):
    s = server.connect()
    s.sendall(b"GET /private/echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n"
              b"GET /http HTTP/1.1\r\nHost: t\r\n\r\n")   # (frames, to a proxy that erred)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert b"Connection: close\r\n" in answer and b"plain HTTP" not in answer


def test_a_middleware_denies_without_calling_call_next(server):
    response = denial(server, "/mw-deny")
    assert response.status_code == 403 and response.body == b"not here\n"
    assert response.headers["X-Denied-By"] == "middleware"
    assert "X-After" not in response.headers        # inside it: never ran
    still_serving(server)
    assert "mw-deny: the handler ran" not in server.log()


def test_a_middleware_that_denies_after_the_handler_accepted(server):
    response = denial(server, "/mw-deny-after")
    assert response.status_code == 409 and response.body == b"changed my mind\n"
    wait_for_log(server, "mw-deny-after: the handler was told 1006")


def test_an_error_handler_answers_what_the_handler_raised_before_accepting(server):
    response = denial(server, "/raise-before")
    assert response.status_code == 409
    assert response.body == b"no seat: the room is full\n"
    assert response.headers["X-After"] == "409"


def test_an_exception_nobody_handles_before_accepting_is_a_logged_500(server):
    response = denial(server, "/raise-before-unhandled")
    assert response.status_code == 500
    log = wait_for_log(server, "KeyError: 'nobody handles this'")
    assert "WebSocket handshake of raise_before_unhandled failed" in log
    still_serving(server)


def test_after_accepting_an_exception_closes_with_1011_not_the_error_handler(server):
    with connect(url(server, "/raise-after"), open_timeout=10) as ws:
        assert ws.recv() == "accepted"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1011
    wait_for_log(server, "NoSeat: too late for the error handler")


def test_the_handlers_own_refusal_passes_through_the_layers(server):
    response = denial(server, "/refuse")
    assert response.status_code == 403
    assert response.headers["X-After"] == "403" and response.headers["X-Plain-MW"] == "403"


def test_a_plain_request_to_a_websocket_route_gets_426_through_the_layers(server):
    response = server.get("/echo")
    assert response.status_code == 426
    assert response.headers["X-After"] == "426"


# -- the request id


def test_the_request_id_is_echoed_on_the_101_and_tags_the_handlers_records(server):
    with connect(url(server, "/private/echo?token=secret"), open_timeout=10,
                 additional_headers={"X-Request-ID": "ws-id-1234"}) as ws:
        assert ws.response.headers["X-Request-ID"] == "ws-id-1234"
        ws.send("tagged")
        assert ws.recv() == "tagged"
        # made in the handler while the WebSocket is open: the handshake's id and route
        log = wait_for_log(server, "got tagged")
    assert "[ws-id-1234 /private/echo] got tagged" in log
    assert "[ws-id-1234 /private/echo] opened /private/echo" in log


def test_a_request_id_the_server_made_is_on_the_101(server):
    with connect(url(server, "/echo"), open_timeout=10) as ws:
        made = ws.response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made)
    wait_for_log(server, made, stream="stdout")     # the access line at its close


def test_a_denial_carries_the_request_id_too(server):
    response = denial(server, "/private/echo",
                      additional_headers={"X-Request-ID": "denied-5678"})
    assert response.headers["X-Request-ID"] == "denied-5678"


# -- hostile layers and handlers


def test_a_middleware_that_raises_is_a_500_and_the_worker_serves_on(server):
    response = denial(server, "/mw-raise")
    assert response.status_code == 500
    wait_for_log(server, "RuntimeError: a middleware failed")
    assert "mw-raise: the handler ran" not in server.log()
    still_serving(server)


def test_a_before_hook_that_returns_what_is_no_response_is_a_500(server):
    response = denial(server, "/hook-nonsense")
    assert response.status_code == 500
    wait_for_log(server, "cannot send a int as a response body")
    assert "hook-nonsense: the handler ran" not in server.log()
    still_serving(server)


def test_a_header_a_101_cannot_have_from_a_middleware_is_a_500(server):
    response = denial(server, "/mw-bad-header")
    assert response.status_code == 500
    wait_for_log(server, "a hook or middleware gave the 101 of /mw-bad-header a header")
    wait_for_log(server, "mw-bad-header: the handler was told 1006")
    still_serving(server)


def test_a_handler_that_accepts_twice_closes_with_1011(server):
    with connect(url(server, "/accept-twice"), open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1011
    wait_for_log(server, "already accepted or refused")
    still_serving(server)


def test_a_handler_that_returns_after_accepting_closes_with_1000(server):
    with connect(url(server, "/accept-then-return"), open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1000


def test_a_middleware_that_calls_call_next_twice_is_a_500(server):
    response = denial(server, "/mw-twice")
    assert response.status_code == 500
    wait_for_log(server, "call_next twice for one WebSocket handshake")
    wait_for_log(server, "mw-twice: the handler was told 1006")
    still_serving(server)


def test_a_hook_that_answers_101_itself_is_a_500(server):
    response = denial(server, "/hook-101")
    assert response.status_code == 500
    wait_for_log(server, "answered 101 to a WebSocket handshake its handler did not accept")
    assert "hook-101: the handler ran" not in server.log()
    still_serving(server)


def test_a_middleware_that_never_answers_meets_the_handshake_timeout(tmp_path):
    s = start_server(tmp_path, "--ws-handshake-timeout", "0.5", app=APP)
    try:
        response = denial(s, "/mw-slow")
        assert response.status_code == 504
        wait_for_log(s, "a hook or middleware did not answer a WebSocket handshake within 0.5s")
        assert "mw-slow: the handler ran" not in s.log()
        still_serving(s)
    finally:
        s.stop()


def test_a_client_that_leaves_during_the_layers_cancels_them(server):
    s = server.connect()
    s.sendall(b"GET /mw-slow HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    wait_for_log(server, "mw-slow: in the middleware")
    s.close()
    wait_for_log(server, "mw-slow: the middleware was cancelled")
    assert "mw-slow: the handler ran" not in server.log()
    still_serving(server)


def test_an_asgi_apps_101_carries_the_request_id(tmp_path):
    s = start_server(tmp_path, "--access-log", "text",     # (request ids come with it)
                     app="tests.apps.websockets_asgi:starlette_app")
    try:
        with connect(url(s, "/echo"), open_timeout=10,
                     additional_headers={"X-Request-ID": "asgi-id-42"}) as ws:
            assert ws.response.headers["X-Request-ID"] == "asgi-id-42"
            ws.send("ok")
            assert ws.recv() == "ok"
    finally:
        s.stop()
