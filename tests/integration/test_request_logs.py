"""What a request leaves in the logs and metrics: a streamed response's access line, duration and
size end at its last byte (native, ASGI and WSGI streams)."""
import json

import pytest

from tests.support.metrics import samples
from tests.support.sockets import read_until_close
from tests.support.waiting import wait_until

EVENTS = 4
DELAY = 0.1             # between events: a stream of EVENTS takes at least (EVENTS - 1) * DELAY
AT_LEAST_MS = (EVENTS - 1) * DELAY * 1000


def access_lines(server) -> list[dict]:
    return [json.loads(line) for line in server.stdout().splitlines() if line.strip()]


def fetch(server, path: str) -> bytes:
    """Everything the client received for one request on its own connection."""
    with server.connect(timeout=10) as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        return read_until_close(c, timeout=10)


@pytest.mark.parametrize("app, path", [
    ("tests.apps.native:app", f"/events?n={EVENTS}&delay={DELAY}"),
    ("tests.apps.native:app", f"/events/sync?n={EVENTS}&delay={DELAY}"),
    ("tests.apps.asgi:app", f"/stream?n={EVENTS}&delay={DELAY}"),
    ("tests.apps.wsgi:app", f"/stream?n={EVENTS}&delay={DELAY}"),
], ids=["native-async", "native-sync", "asgi", "wsgi"])
def test_a_streamed_response_is_logged_and_timed_to_its_last_byte(serve, tmp_path, app, path):
    server = serve("--access-log", "json", app=app, env={"FASTSOCK_TEST_DIR": str(tmp_path)})
    received = fetch(server, path)
    assert received.startswith(b"HTTP/1.1 200") and received.count(b"\n") > EVENTS, received
    wait_until(lambda: any(line["path"] == path.partition("?")[0]
                           for line in access_lines(server)),
               what="the stream's access line", server=server)
    (line,) = [line for line in access_lines(server) if line["path"] == path.partition("?")[0]]
    assert line["status"] == 200
    assert line["duration_ms"] >= AT_LEAST_MS, line          # its last event, not its head
    assert line["bytes"] == len(received), line             # head and whole body
    # the duration histogram saw the same: the stream's observation is in its sum
    durations = samples(server.get("/metrics").text, "fastsock_request_duration_seconds_sum")
    assert sum(durations.values()) >= AT_LEAST_MS / 1000, durations


def test_a_stream_the_client_leaves_is_logged_with_what_went_out(serve):
    server = serve("--access-log", "json")
    with server.connect(timeout=10) as c:
        c.sendall(b"GET /events?n=100000&delay=0.02 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = b""
        while got.count(b"data:") < 3:
            got += c.recv(65536)
    wait_until(lambda: any(line["path"] == "/events" for line in access_lines(server)),
               what="the access line of the stream the client left", server=server)
    (line,) = [line for line in access_lines(server) if line["path"] == "/events"]
    assert line["bytes"] >= len(got) and line["duration_ms"] >= 2 * 20, line
