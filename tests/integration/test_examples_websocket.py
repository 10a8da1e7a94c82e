"""The WebSocket examples as a user runs them: the native chat room and the FastAPI echo
route, over real sockets."""
import json
from contextlib import ExitStack

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.servers import ROOT, start_server


def test_the_chat_example_reaches_everyone_in_the_room(tmp_path):
    s = start_server(tmp_path, app="examples.chat:app")
    try:
        assert "new WebSocket" in s.get("/").text
        with ExitStack() as stack:
            ann, bob = (stack.enter_context(connect(f"ws://127.0.0.1:{s.port}/chat",
                                                    subprotocols=["chat.v1"]))
                        for _ in range(2))
            assert ann.subprotocol == "chat.v1"
            ann.send(json.dumps({"name": "ann", "text": "hi bob"}))
            assert json.loads(bob.recv(timeout=5)) == {"from": "ann", "text": "hi bob"}
            assert json.loads(ann.recv(timeout=5)) == {"from": "ann", "text": "hi bob"}
            bob.send("not json")
            try:
                bob.recv(timeout=5)
                raise AssertionError("a message that is not JSON must close the socket")
            except ConnectionClosed as closed:
                assert closed.rcvd.code == 1003
    finally:
        s.stop()


def test_the_fastapi_examples_websocket_route(tmp_path):
    s = start_server(tmp_path, app="examples.fastapi_app:app")
    try:
        with connect(f"ws://127.0.0.1:{s.port}/ws/echo") as ws:
            ws.send("over FastAPI")
            assert ws.recv(timeout=5) == "over FastAPI"
        assert s.get("/users/7").json() == {"id": 7}
    finally:
        s.stop()


def test_the_readmes_first_service_as_written(tmp_path):
    """README's "A first service", copied as a user would, serves its routes and its WebSocket."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split("# myservice.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "myservice.py").write_text(code)
    s = start_server(tmp_path, app="myservice:app", env={"PYTHONPATH": str(tmp_path)})
    try:
        assert s.get("/users/7").json() == {"id": 7}
        assert s.get("/slow").text == "done"
        with connect(f"ws://127.0.0.1:{s.port}/echo") as ws:
            ws.send("from the README")
            assert ws.recv(timeout=5) == "from the README"
            ws.send(b"\x00bytes")
            assert ws.recv(timeout=5) == b"\x00bytes"
    finally:
        s.stop()
