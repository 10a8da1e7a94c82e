"""The example Flask and FastAPI apps, and a Django smoke test, served by fastsock with two
workers over real sockets: their routes, bodies both ways, the route label from the framework
(never the raw path), and prometheus_client metrics summed across workers."""
import os
import time

import httpx
import pytest

from tests.support.servers import start_server


def routes_in_metrics(server) -> set[str]:
    text = httpx.get(server.url + "/metrics").text
    return {line.split('route="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("fastsock_requests_total{")}


def counter_total(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + "_total"))


@pytest.fixture(scope="module", params=["flask", "fastapi"])
def example(request, tmp_path_factory):
    s = start_server(tmp_path_factory.mktemp(request.param), "--workers", "2",
                     app=f"examples.{request.param}_app:app")
    s.kind = request.param
    yield s
    s.stop()


def test_the_example_answers(example):
    name = {"flask": "Flask", "fastapi": "FastAPI"}[example.kind]
    assert httpx.get(example.url + "/").text == f"hello from {name}\n"
    assert httpx.get(example.url + "/users/7").json() == {"id": 7}
    r = httpx.post(example.url + "/users", json={"name": "ada"})
    assert r.status_code == 201 and r.json() == {"created": "ada"}
    assert httpx.post(example.url + "/users", json={}).status_code == 422
    assert httpx.get(example.url + "/stream").text == "".join(f"line {i}\n" for i in range(5))


def test_the_example_reads_a_large_body_as_it_streams(example):
    body = os.urandom(600_000)          # past the size read whole: streamed to the app
    r = httpx.post(example.url + "/upload", content=body, timeout=10)
    assert r.status_code == 200 and r.json() == {"bytes": len(body)}
    r = httpx.post(example.url + "/upload", content=iter([body[:1000], body[1000:]]),
                   timeout=10)                                     # chunked
    assert r.json() == {"bytes": len(body)}


def test_the_route_label_is_the_frameworks_route(example):
    for user_id in range(20):
        httpx.get(example.url + f"/users/{user_id}")
    httpx.get(example.url + "/no/such/page")
    template = "/users/<int:user_id>" if example.kind == "flask" else "/users/{user_id}"
    routes = routes_in_metrics(example)
    assert template in routes and "/" in routes
    assert "unmatched" in routes                        # the 404
    assert not any(r.startswith("/users/") and r != template for r in routes), routes
    assert "/no/such/page" not in routes


def test_app_metrics_are_summed_across_workers(example):
    before = counter_total(example, "example_users_created")
    for i in range(20):
        assert httpx.post(example.url + "/users", json={"name": f"u{i}"}).status_code == 201
    assert counter_total(example, "example_users_created") - before == 20


@pytest.mark.parametrize("attr", ["app", "asgi"])
def test_django_smoke(tmp_path, attr):
    s = start_server(tmp_path, "--workers", "2", app=f"tests.apps.django_app:{attr}")
    try:
        r = httpx.get(s.url + "/hello/world")
        assert r.status_code == 200 and r.text == "hello world"
        r = httpx.post(s.url + "/echo?q=1", content=b"payload")
        assert r.json() == {"method": "POST", "body": "payload", "query": "1"}
        assert httpx.get(s.url + "/missing").status_code == 404
        assert httpx.get(s.url + "/healthz").text == "ok\n"
    finally:
        s.stop()


TICKS_APP = '''
import asyncio
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse

app = FastAPI()


@app.api_route("/ticks", methods=["GET", "HEAD"])
async def ticks():
    async def forever():
        while True:
            yield "tick\\n"
            await asyncio.sleep(0.05)
    return StreamingResponse(forever(), media_type="text/plain")


@app.get("/tasks")
async def tasks():
    return PlainTextResponse(str(len(asyncio.all_tasks()) - 1))
'''


@pytest.mark.parametrize("how", ["head", "leave"])
def test_a_fastapi_stream_not_sent_ends_quietly(tmp_path, how):
    # Starlette turns send()'s OSError into its ClientDisconnect: still the client gone, not
    # an app failure with a traceback
    (tmp_path / "ticks_app.py").write_text(TICKS_APP)
    s = start_server(tmp_path, "--workers", "1", app="ticks_app:app",
                     env={"PYTHONPATH": f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}"})
    try:
        baseline = int(httpx.get(s.url + "/tasks").text)
        with s.connect() as c:
            c.sendall(f"{'HEAD' if how == 'head' else 'GET'} /ticks HTTP/1.1\r\nHost: t\r\n"
                      "\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got or (how == "leave" and b"tick" not in got):
                got += c.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 5        # the task ends once its next send raises
        while int(httpx.get(s.url + "/tasks").text) != baseline and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert int(httpx.get(s.url + "/tasks").text) == baseline
        assert "ASGI app failed" not in s.log(), s.log()
    finally:
        s.stop()
