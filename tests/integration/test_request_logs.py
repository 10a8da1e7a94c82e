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


def test_a_stream_that_fails_midway_is_logged_with_what_was_sent(serve):
    server = serve("--access-log", "json")
    received = fetch(server, "/stream-fails")
    assert received.startswith(b"HTTP/1.1 200") and b"first" in received
    wait_until(lambda: any(line["path"] == "/stream-fails" for line in access_lines(server)),
               what="the failed stream's access line", server=server)
    (line,) = [line for line in access_lines(server) if line["path"] == "/stream-fails"]
    assert line["status"] == 200 and line["bytes"] == len(received), line


def test_a_long_client_request_id_is_echoed_and_logged_whole(serve):
    server = serve("--access-log", "json")
    rid = "r" * 3000
    r = server.get("/", headers={"X-Request-ID": rid})
    assert r.status_code == 200 and r.headers["x-request-id"] == rid
    assert "date" in r.headers
    wait_until(lambda: rid in server.stdout(), what="the access line", server=server)
    (line,) = access_lines(server)
    assert line["request_id"] == rid


# ---------------------------------------------------------------- the request on every record

LOGGED = ["/logs/inline", "/logs/async", "/logs/thread", "/logs/stream"]


def error_entries(server) -> list[dict]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def test_json_records_carry_the_request_id_and_route_and_the_apps_levels(serve):
    server = serve("--log-format", "json", "--access-log", "json")
    ids = {}
    for path in LOGGED:
        r = server.get(path)
        assert r.status_code == 200 and r.text == path
        ids[path] = r.headers["x-request-id"]
    boom = server.get("/logs/boom/7")
    assert boom.status_code == 500
    wait_until(lambda: sum(e.get("logger") == "myapp" for e in error_entries(server))
               == 2 * len(LOGGED) and "boom 7" in server.log(),
               what="the app's records", server=server)
    entries = error_entries(server)
    for path in LOGGED:
        mine = [e for e in entries if e["logger"] == "myapp" and e["message"].endswith(path)]
        assert sorted(e["level"] for e in mine) == ["INFO", "WARNING"], mine     # INFO kept
        assert all(e["request_id"] == ids[path] and e["route"] == path for e in mine), mine
    (failed,) = [e for e in entries if "boom 7" in e.get("exception", "")]
    assert failed["request_id"] == boom.headers["x-request-id"]
    assert failed["route"] == "/logs/boom/{n:int}"
    # the traceback joins its access line
    wait_until(lambda: any(line["request_id"] == failed["request_id"]
                           for line in access_lines(server)), what="the access line")
    (line,) = [x for x in access_lines(server) if x["request_id"] == failed["request_id"]]
    assert line["status"] == 500 and line["path"] == "/logs/boom/7"
    # a record made outside any request has no request
    started = [e for e in entries if "serving on" in e["message"]]
    assert started and all("request_id" not in e and "route" not in e for e in started)


def test_text_records_carry_the_request_id_and_route(serve):
    server = serve("--access-log", "text")
    r = server.get("/logs/thread", headers={"X-Request-ID": "join-me-42"})
    assert r.headers["x-request-id"] == "join-me-42"
    wait_until(lambda: "warning from /logs/thread" in server.log(), what="the app's warning",
               server=server)
    (warning,) = [x for x in server.log().splitlines() if "warning from /logs/thread" in x]
    assert " WARNING [join-me-42 /logs/thread] warning from" in warning, warning
    assert "INFO [join-me-42 /logs/thread] info from /logs/thread" in server.log()
    wait_until(lambda: "join-me-42" in server.stdout(), what="the access line")
    (line,) = server.stdout().splitlines()
    assert line.endswith(" join-me-42")


# ---------------------------------------------------------------- hostile ids and streams

HOSTILE = "tests.apps.hostile:app"
RID_KINDS = ["crlf", "lf", "nul", "wide", "int", "bytes", "empty", "space"]


def test_an_id_the_app_sets_to_garbage_never_splits_or_forges_a_text_access_line(serve):
    """req.request_id = "a\\nforged" (or CR/LF, NUL...): one access line per request whatever
    the app put there, its control characters escaped as JSON escapes them; never raw on the
    wire either (a 500)."""
    server = serve("--access-log", "text", app=HOSTILE)
    for kind in RID_KINDS:
        received = fetch(server, f"/rid/{kind}")
        head = received.partition(b"\r\n\r\n")[0]
        assert b"Set-Cookie" not in head and b"forged" not in head and b"\0" not in head
        if kind in ("crlf", "lf", "nul", "wide"):   # not a field value: a 500, never sent
            assert received.startswith(b"HTTP/1.1 500 "), received
    wait_until(lambda: server.stdout().count(" 127.0.0.1 ") == len(RID_KINDS),
               what="every access line", server=server)
    lines = server.stdout().rstrip("\n").split("\n")     # as a log shipper splits them
    assert len(lines) == len(RID_KINDS), lines          # one line per request, none forged
    assert all(line.startswith("20") and ' "GET /rid/' in line for line in lines), lines
    assert all(not any(c < " " for c in line) for line in lines), lines
    by_kind = {line.split()[3].rpartition("/")[2]: line for line in lines}
    assert by_kind["lf"].endswith(" a\\nforged"), by_kind["lf"]      # escaped as JSON does
    assert by_kind["crlf"].endswith(" a\\r\\nSet-Cookie: x=1"), by_kind["crlf"]
    assert by_kind["nul"].endswith(" a\\u0000b"), by_kind["nul"]
    assert by_kind["space"].endswith(" a b") and by_kind["int"].endswith(" 12345")


@pytest.mark.parametrize("path, error", [
    ("/gen/raises", "RuntimeError: gen failed"),            # a plain generator, in the pool
    ("/agen/raises", "RuntimeError: agen failed"),          # an async generator
    ("/gen/nonbytes", "TypeError: a stream yielded a int"),
])
def test_a_stream_that_fails_is_logged_once(serve, path, error):
    """The failure of a stream is one record (one traceback) of the error log, not two."""
    server = serve("--access-log", "text", app=HOSTILE)
    received = fetch(server, path)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"1\r\na\r\n")  # cut
    wait_until(lambda: error in server.log() and path in server.stdout(),
               what="the failure logged", server=server)
    assert server.get("/hello").text == "hello\n"     # the worker lives; anything logged since
    assert server.log().count(error) == 1, server.log()
    assert server.log().count("Traceback") == 1, server.log()


@pytest.mark.parametrize("kind", ["deep", "deepdict", "cycle", "dictcycle", "dccycle", "bigint",
                                  "opaque", "bytes"])
def test_a_return_value_json_cannot_take_is_a_500_before_any_head(serve, kind):
    """Nesting past the recursion limit, a list, dict or dataclass that holds itself, an int
    past Python's digits limit, a json_default that hands its value back, bytes: a whole 500
    (no 200 head sent first), logged, and the worker answers the next request."""
    server = serve("--access-log", "text", app=HOSTILE)
    received = fetch(server, f"/json/{kind}")
    assert received.startswith(b"HTTP/1.1 500 ") and received.count(b"HTTP/1.1") == 1, received
    assert received.endswith(b"\r\n\r\nInternal Server Error\n"), received
    wait_until(lambda: "invalid response for GET /json/" in server.log(), what="the error line",
               server=server)
    assert server.get("/hello").text == "hello\n"


def test_an_empty_client_request_id_is_replaced_by_a_new_one(serve):
    """`X-Request-ID:` with no value is no id: the request gets one made by the server (as with
    no header), echoed and logged, instead of an empty one that no log line can be found by."""
    server = serve("--access-log", "json", app=HOSTILE)
    r = server.get("/hello", headers={"X-Request-ID": ""})
    rid = r.headers["x-request-id"]
    assert r.status_code == 200 and rid, r.headers
    wait_until(lambda: rid in server.stdout(), what="the access line", server=server)
    (line,) = access_lines(server)
    assert line["request_id"] == rid
