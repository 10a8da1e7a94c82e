"""ASGI's websocket scope over real sockets: Starlette and FastAPI WebSocket routes served
unchanged, the denial-response extension, a close before accepting, an app that neither accepts
nor closes, send after close; with the `websockets` client library as the peer."""
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.servers import start_server
from tests.support.waiting import wait_for_log


@pytest.fixture(scope="module")
def starlette(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("ws-starlette"), "--workers", "2",
                     app="tests.apps.websockets_asgi:starlette_app")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp("ws-raw"), app="tests.apps.websockets_asgi:denial_app")
    yield s
    s.stop()


def url(server, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def test_starlette_echo_with_a_subprotocol(starlette):
    with connect(url(starlette, "/echo"), subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat"
        ws.send("text")
        assert ws.recv() == "text"
        ws.send(b"\x00\xff")
        assert ws.recv() == b"\x00\xff"


def test_starlette_json_query_and_close_code(starlette):
    with connect(url(starlette, "/json?q=find")) as ws:
        ws.send('{"a": 1}')
        assert ws.recv() == '{"got":{"a":1},"path":"/json","query":"find"}'
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 4001 and closed.value.rcvd.reason == "bye"


def test_close_before_accept_is_403(starlette):
    with pytest.raises(InvalidStatus) as denied:
        connect(url(starlette, "/refuse"))
    assert denied.value.response.status_code == 403


def test_an_unknown_websocket_path_is_refused(starlette):
    with pytest.raises(InvalidStatus) as denied:
        connect(url(starlette, "/nowhere"))
    assert denied.value.response.status_code == 403     # Starlette closes: the spec's 403


def test_fastapi_websocket_route_and_http_side_by_side(tmp_path):
    s = start_server(tmp_path, app="tests.apps.websockets_asgi:fastapi_app")
    try:
        with connect(url(s, "/ws/lobby")) as ws:
            ws.send("hi")
            assert ws.recv() == "lobby: hi"
        assert s.get("/hello").json() == {"hello": "world"}
    finally:
        s.stop()


def test_the_denial_response_extension(raw):
    with pytest.raises(InvalidStatus) as denied:
        connect(url(raw, "/denied"))
    response = denied.value.response
    assert response.status_code == 401 and response.body == b"no token"
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_app_that_neither_accepts_nor_closes_is_500(raw):
    with pytest.raises(InvalidStatus) as failed:
        connect(url(raw, "/silent"))
    assert failed.value.response.status_code == 500
    wait_for_log(raw, "returned without accepting or closing the WebSocket")


def test_accept_headers_send_and_send_after_close(raw):
    with connect(url(raw, "/ok")) as ws:
        assert ws.response.headers["x-asgi"] == "yes"
        ws.send("one")
        assert ws.recv() == "one"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv()
    assert closed.value.rcvd.code == 1000
    assert "ASGI app failed" not in raw.log() and "Traceback" not in raw.log()
