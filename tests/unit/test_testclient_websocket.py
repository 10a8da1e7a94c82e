"""TestClient.websocket_connect: a WebSocket to the app in this process, through the server's
own connection, handshake, frame reader/writer and session (fed bytes, no socket), with wsproto
as the client. For a native App (with and without middleware and hooks) and for Starlette and
FastAPI apps; denials, server closes, limits, the app's exceptions, and sessions a test leaves
open (closed by the client, never a hang)."""
import pytest

from fastsock.testing import TestClient, WebSocketDenied
from fastsock.websocket import WebSocketDisconnect
from tests.apps import websockets_layers, websockets_native
from tests.apps.websockets_asgi import denial_app, fastapi_app, starlette_app


@pytest.fixture
def client():
    with TestClient(websockets_native.app) as c:
        yield c


def test_messages_both_ways_of_every_kind(client):
    with client.websocket_connect("/echo") as ws:
        ws.send_text("héllo")
        assert ws.receive_text() == "héllo"
        ws.send_bytes(b"\x00\xff" * 40000)          # several frames' worth, 16- and 64-bit
        assert ws.receive_bytes() == b"\x00\xff" * 40000
        ws.send_json({"n": [1, 2]})
        assert ws.receive_json() == {"n": [1, 2]}
        ws.send_json({"b": True}, mode="binary")
        assert ws.receive_json(mode="binary") == {"b": True}
        ws.send({"type": "websocket.receive", "text": "asgi-style"})
        assert ws.receive() == {"type": "websocket.send", "text": "asgi-style"}


def test_subprotocol_headers_and_query_reach_the_app(client):
    with client.websocket_connect("/proto?room=1", subprotocols=["chat.v1", "chat.v2"],
                                  headers={"Origin": "http://example.test"}) as ws:
        assert ws.accepted_subprotocol == "chat.v2"
        assert (b"x-room", b"lobby") in ws.extra_headers
        assert ws.receive_text() == "chat.v2|room=1|http://example.test"


def test_a_server_close_is_a_disconnect_with_its_code_and_reason(client):
    with client.websocket_connect("/item/lamp") as ws:
        assert ws.receive_text() == "lamp"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert (closed.value.code, closed.value.reason) == (4000, "done")
        with pytest.raises(WebSocketDisconnect):    # and stays closed
            ws.send_text("anyone?")
    with client.websocket_connect("/item/lamp") as ws:
        ws.receive_text()
        assert ws.receive() == {"type": "websocket.close", "code": 4000, "reason": "done"}


def test_a_denied_handshake_raises_with_its_status_and_response(client):
    with pytest.raises(WebSocketDenied) as denied:
        client.websocket_connect("/deny")
    assert denied.value.status_code == 403
    assert denied.value.response.text == "WebSocket refused\n"
    assert isinstance(denied.value, WebSocketDisconnect)     # as Starlette's tests catch it


def test_the_client_closing_is_what_the_handler_sees(client):
    seen = len(websockets_native.stats["disconnects"])
    with client.websocket_connect("/watch") as ws:
        ws.send_text("x")
        assert ws.receive_text() == "x"
        ws.close(4321, "bye")
    assert websockets_native.stats["disconnects"][seen:] == [4321]


def test_the_servers_limits_apply_its_frames_are_the_servers(client):
    with TestClient(websockets_native.app, ws_max_message=1000) as small:
        with small.websocket_connect("/echo") as ws:
            ws.send_bytes(b"x" * 1000)
            assert ws.receive_bytes() == b"x" * 1000
            ws.send_bytes(b"x" * 1001)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_bytes()
            assert closed.value.code == 1009


def test_what_the_app_does_not_read_yet_waits_nothing_is_lost():
    # the handler runs only while the session waits: 30 messages sent at once fill its inbox
    # (--ws-max-queue) and the connection's buffer; the rest waits in the session's
    with TestClient(websockets_native.app, ws_max_queue=1024) as client:
        with client.websocket_connect("/echo") as ws:
            for i in range(30):
                ws.send_bytes(bytes([i]) * 1000)
            assert [ws.receive_bytes() for _ in range(30)] == [bytes([i]) * 1000
                                                              for i in range(30)]


def test_what_the_handler_raises_is_raised_in_the_test():
    with TestClient(websockets_native.app) as client:
        with pytest.raises(RuntimeError, match="failed after accepting"):
            with client.websocket_connect("/fail-after") as ws:
                ws.send_text("go")
                ws.receive_text()
    with TestClient(websockets_native.app, raise_server_exceptions=False) as client:
        with client.websocket_connect("/fail-after") as ws:
            ws.send_text("go")
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1011
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/fail-before")
        assert denied.value.status_code == 500


# -- the app's middleware and hooks, as the server runs them


def test_the_layers_headers_are_on_the_101_and_their_denials_raise():
    with TestClient(websockets_layers.app) as client:
        with client.websocket_connect("/echo") as ws:
            headers = dict(ws.extra_headers)
            assert headers[b"x-after"] == headers[b"x-plain-mw"] == b"101"
            ws.send_text("layered")
            assert ws.receive_text() == "layered"
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/private/echo")
        assert denied.value.status_code == 401
        assert denied.value.response.headers["www-authenticate"] == "Bearer"
        with client.websocket_connect("/private/echo?token=secret") as ws:
            assert dict(ws.extra_headers)[b"x-handler"] == b"private"
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/raise-before")
        assert denied.value.status_code == 409
        assert denied.value.response.text == "no seat: the room is full\n"


def test_a_handler_that_never_answers_is_a_504_the_layers_see():
    with TestClient(websockets_layers.app, ws_handshake_timeout=0.2) as client:
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/never-answers")
        assert denied.value.status_code == 504
        assert denied.value.response.headers["x-after"] == "504"


def test_a_failing_middleware_raises_in_the_test_or_is_a_500():
    with TestClient(websockets_layers.app) as client:
        with pytest.raises(RuntimeError, match="a middleware failed"):
            client.websocket_connect("/mw-raise")
    with TestClient(websockets_layers.app, raise_server_exceptions=False) as client:
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/mw-raise")
        assert denied.value.status_code == 500


# -- ASGI apps


def test_a_starlette_app():
    with TestClient(starlette_app) as client:
        with client.websocket_connect("/echo", subprotocols=["chat"]) as ws:
            assert ws.accepted_subprotocol == "chat"
            ws.send_bytes(b"raw")
            assert ws.receive_bytes() == b"raw"
        with client.websocket_connect("/json?q=7") as ws:
            ws.send_json({"a": 1})
            assert ws.receive_json() == {"got": {"a": 1}, "path": "/json", "query": "7"}
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert (closed.value.code, closed.value.reason) == (4001, "bye")
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/refuse")
        assert denied.value.status_code == 403


def test_a_fastapi_app():
    with TestClient(fastapi_app) as client:
        with client.websocket_connect("/ws/lobby") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "lobby: hi"
        assert client.get("/hello").json() == {"hello": "world"}


def test_an_asgi_denial_response():
    with TestClient(denial_app) as client:
        with pytest.raises(WebSocketDenied) as denied:
            client.websocket_connect("/denied")
        assert denied.value.status_code == 401
        assert denied.value.response.text == "no token"
        with client.websocket_connect("/open") as ws:
            assert (b"x-asgi", b"yes") in ws.extra_headers
            ws.send_text("one")
            assert ws.receive_text() == "one"


# -- what a test may do wrong: never a hang


def test_a_session_never_closed_is_ended_by_the_client():
    seen = len(websockets_native.stats["disconnects"])
    client = TestClient(websockets_native.app)
    ws = client.websocket_connect("/watch")
    ws.send_text("left open")
    assert ws.receive_text() == "left open"
    client.close()                  # the test forgot the session
    assert websockets_native.stats["disconnects"][seen:] == [1006]


def test_a_handler_that_sends_nothing_is_a_timeout_not_a_hang(client):
    with client.websocket_connect("/deaf", timeout=0.2) as ws:
        with pytest.raises(TimeoutError):
            ws.receive_text()


def test_a_handshake_never_answered_is_a_timeout_not_a_hang(client):
    with pytest.raises(TimeoutError, match="did not answer the handshake of /never"):
        client.websocket_connect("/never", timeout=0.2)
    # its handler, left waiting, is cancelled by the client's close (the fixture)


def test_a_handler_that_ignores_the_end_does_not_hold_the_test(client):
    with client.websocket_connect("/deaf", timeout=0.2) as ws:
        ws.send_text("never read")
    # the Close was answered (the protocol's), the handler sleeps on: the client cancels it
