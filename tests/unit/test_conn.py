"""The connection room without sockets: bytes in through feed(), bytes out, and the state and
deadline decisions the loop acts on."""
import dataclasses
import re

import pytest

from fastsock._conn import Connection
from fastsock._context import Context
from fastsock._message import Dispatcher, Response
from fastsock._shared import SharedState
from fastsock.config import Config

GET = b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n"


def connection(dispatch=None, **config):
    shared = SharedState(1)
    ctx = Context(dataclasses.replace(Config(), **config).limits(), shared, 0)
    conn = Connection(ctx, dispatch or (lambda req: f"you asked for {req.path}"))
    return conn, shared


def statuses(out: bytes) -> list[int]:
    return [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", out)]


def test_pipelined_requests_are_answered_in_order():
    conn, shared = connection()
    out = conn.feed(GET % b"a" + GET % b"b" + GET % b"c")
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b"for /a") < out.index(b"for /b") < out.index(b"for /c")
    assert conn.state_name == "idle" and conn.wants_input
    snap = shared.snapshot()
    assert sum(snap["requests"].values()) == 3


def test_a_partial_head_waits_then_completes():
    conn, _ = connection()
    assert conn.feed(b"GET /x HTTP/1.1\r\nHo") == b""
    assert conn.state_name == "head"
    assert statuses(conn.feed(b"st: h\r\n\r\n")) == [200]
    assert conn.state_name == "idle"


def test_connection_close_finishes_the_connection():
    conn, _ = connection()
    out = conn.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + GET % b"never")
    assert statuses(out) == [200] and b"Connection: close" in out and b"never" not in out
    assert conn.state_name == "closing" and conn.is_finished and not conn.wants_input


def test_a_refused_request_is_answered_counted_and_nothing_after_it_is_read():
    conn, shared = connection()
    out = conn.feed(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + GET % b"smuggled")
    assert statuses(out) == [400] and b"smuggled" not in out
    assert conn.state_name == "refused" and conn.is_finished
    from fastsock._parser import PARSE_ERRORS
    (index, count), = shared.snapshot()["parse_errors"].items()
    assert PARSE_ERRORS[index][0] == "duplicate Host" and count == 1


def test_a_body_and_100_continue():
    conn, _ = connection(lambda req: req.body)
    out = conn.feed(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 5\r\n\r\n")
    assert out == b"HTTP/1.1 100 Continue\r\n\r\n" and conn.state_name == "body"
    assert conn.feed(b"hello").endswith(b"\r\n\r\nhello")


@pytest.mark.parametrize("sent, result, reason", [
    (b"", 2, "no byte: closed on the header timeout"),
    (b"GET / HTTP/1.1\r\n", "drive", "a partial head: 408"),
])
def test_header_deadline(sent, result, reason):
    conn, _ = connection()
    conn.feed(sent)
    assert conn.expire() == result, reason
    if result == "drive":
        assert statuses(conn.feed(b"")) == [408] and conn.state_name == "refused"


def test_idle_deadline_closes_with_the_keepalive_reason():
    conn, _ = connection()
    conn.feed(GET % b"")
    assert conn.state_name == "idle" and conn.expire() == 1        # CLOSE_KEEPALIVE


def test_a_request_buffered_behind_a_response_starts_its_own_header_deadline():
    conn, _ = connection()
    conn.feed(GET % b"a" + b"GET /b HTTP/1.1\r\n")
    assert conn.state_name == "head"      # its deadline started when its parsing could start


def test_handler_errors_and_bad_results_cost_one_response():
    def dispatch(req):
        if req.path == "/raise":
            raise RuntimeError("boom")
        if req.path == "/odd":
            return object()
        return "fine"
    conn, _ = connection(dispatch)
    out = conn.feed(GET % b"raise" + GET % b"odd" + GET % b"ok")
    assert statuses(out) == [500, 500, 200] and out.endswith(b"fine")


def test_streams_are_pumped_and_a_bad_chunk_cuts_the_connection():
    conn, _ = connection(lambda req: Response(iter([b"a", "b"])))
    out = conn.feed(GET % b"")
    assert out.endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n") and conn.state_name == "idle"
    conn, _ = connection(lambda req: Response(iter([b"a", None, b"after"])))
    out = conn.feed(GET % b"")
    assert b"0\r\n\r\n" not in out and b"after" not in out
    assert conn.state_name == "refused" and conn.is_finished


def test_head_requests_get_no_body_and_completion_hooks_see_the_response():
    seen = []

    def dispatch(req):
        req.on_complete = lambda r, status, nbytes, seconds: seen.append((status, nbytes))
        return "body!"
    conn, _ = connection(dispatch)
    out = conn.feed(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert out.endswith(b"\r\n\r\n") and b"Content-Length: 5" in out
    assert seen == [(200, len(out))]


def test_http10_closes_unless_keep_alive():
    conn, _ = connection()
    out = conn.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert b"Connection: close" in out and conn.is_finished
    conn, _ = connection()
    out = conn.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive" in out and conn.state_name == "idle"


def test_proxy_protocol_header_comes_first():
    seen = []

    def dispatch(req):
        seen.append(req.client)
        return "ok"
    conn, _ = connection(dispatch, proxy_protocol=True)
    assert conn.state_name == "proxy"
    out = conn.feed(b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n" + GET % b"")
    assert statuses(out) == [200] and seen == [("203.0.113.7", 5555)]


def test_a_head_past_every_limit_is_431():
    conn, _ = connection(max_request_line=100, max_header_bytes=200)
    out = conn.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 20000)
    assert statuses(out) == [431] and conn.state_name == "refused"


def test_a_half_close_answers_what_is_whole_then_closes():
    conn, _ = connection()
    assert conn.feed(GET % b"a" + b"GET /b HTTP/1.1\r\nHo") .count(b"HTTP/1.1 200") == 1
    assert not conn.end_of_input()          # a partial request is here: not yet
    assert conn.feed(b"") == b"" and conn.is_finished and not conn.wants_input
    conn, _ = connection()
    conn.feed(GET % b"a")
    assert conn.end_of_input()              # nothing left: close at once


def test_a_stream_cut_sends_its_good_chunks_and_no_terminator():
    def gen():
        yield "good"
        yield 1.5
    conn, _ = connection(lambda req: Response(gen()))
    out = conn.feed(GET % b"s")
    assert out.endswith(b"4\r\ngood\r\n") and conn.state_name == "refused" and conn.is_finished


def test_an_idle_connection_holds_no_buffer_and_a_grown_one_shrinks():
    from fastsock._outbuf import pooled_buffers
    conn, _ = connection(lambda req: Response(iter([b"x" * 100_000])) if req.path == "/big"
                         else "small")
    conn.feed(GET % b"a")
    pooled = pooled_buffers()
    assert pooled >= 2 and conn.state_name == "idle"
    conn.feed(GET % b"a")                   # both buffers taken from the pool and given back
    assert pooled_buffers() == pooled
    conn.feed(GET % b"big")                 # a big chunk grew the output buffer: freed
    assert pooled_buffers() == pooled - 1
    conn.feed(b"GET /b HTTP/1.1\r\n")       # a partial head keeps its read buffer
    assert pooled_buffers() == pooled - 2


@pytest.mark.parametrize("body", [b"b" * 50_000, "s" * 50_000, "é" * 30_000])
def test_a_large_body_goes_out_whole_and_in_order_without_a_copy(body):
    from fastsock._outbuf import pooled_buffers
    conn, _ = connection(lambda req: body if req.path == "/big" else "small")
    conn.feed(GET % b"warm")
    pooled = pooled_buffers()
    out = conn.feed(GET % b"big" + GET % b"after")
    encoded = body if isinstance(body, bytes) else body.encode()
    first, _, rest = out.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(encoded)}".encode() in first
    assert rest.startswith(encoded) and rest[len(encoded):].startswith(b"HTTP/1.1 200 OK")
    assert rest.endswith(b"small")
    assert pooled_buffers() == pooled       # the body never grew a buffer to be freed


def test_no_route_and_an_unknown_method_are_counted_as_their_own_key():
    """Issue 19: route 0 (none) and method 0 (other) made the duration key 0, which is the
    shared table's empty marker: counted into a cell no key held, and inherited by the next
    key to claim it (here one aimed at that cell: the route and method a client picks)."""
    from tests.support.metrics import mix
    aimed = next(r for r in range(16, 10_000) if mix(r << 8 | 5) & 255 == 0)   # DELETE

    def dispatch(req):
        if req.path == "/aimed":
            req.route_id = aimed
            return Response("no", 405)
        return Response("none", 404)            # no route: route_id stays ROUTE_NONE (0)
    conn, shared = connection(dispatch)
    assert statuses(conn.feed(b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n" * 10)) == [404] * 10
    assert statuses(conn.feed(b"DELETE /aimed HTTP/1.1\r\nHost: h\r\n\r\n")) == [405]
    snap = shared.snapshot()
    assert {key: count for key, (count, _sum, _buckets) in snap["durations"].items()} == \
        {(0, 0): 10, (aimed, 5): 1}
    assert snap["requests"] == {(0, 0, 404): 10, (aimed, 5, 405): 1}


def test_a_dispatcher_called_from_c_is_its_subclass_s_and_its_failure_costs_one_response():
    class Answer(Dispatcher):           # a Python subclass: its dispatch is the one called
        def dispatch(self, req):
            if req.path == "/boom":
                raise RuntimeError("a dispatcher that fails")
            return f"dispatched {req.path}"

    conn, shared = connection(Answer())
    out = conn.feed(GET % b"a" + GET % b"boom" + GET % b"c")
    assert statuses(out) == [200, 500, 200]
    assert b"dispatched /a" in out and b"dispatched /c" in out
    assert conn.state_name == "idle"
    conn, _ = connection(Dispatcher())  # the base dispatches nothing: a 500, not a crash
    assert statuses(conn.feed(GET % b"a" + GET % b"b")) == [500, 500]
