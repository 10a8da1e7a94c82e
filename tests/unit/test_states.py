"""The compiled core's tables and the connection's states, without sockets: every enum gives its
names from one table (the strings metrics and logs print must not move), and a request whose body
streams to its handler is a state of its own (stream_in) until the body is all in (wait)."""
import dataclasses

from fastsock._conn import STATE_NAMES, Connection
from fastsock._context import Context
from fastsock._handoff import BodyIn, Deferred
from fastsock._message import METHOD_NAMES
from fastsock._shared import CLOSE_REASONS, SharedState
from fastsock.config import Config

POST = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"


def test_the_names_come_from_the_tables_and_say_what_they_said():
    assert CLOSE_REASONS == ("client", "keepalive_timeout", "header_timeout", "body_timeout",
                             "error", "server", "response_length", "ping_timeout",
                             "close_timeout", "tls_handshake")
    assert METHOD_NAMES == ("other", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                            "OPTIONS", "TRACE", "CONNECT")
    assert STATE_NAMES == ("proxy", "handshake", "head", "body", "idle", "wait", "stream_in", "write",
                           "stream_out", "websocket", "closing", "refused", "linger", "closed")


def streaming(**config):
    """A connection whose every request streams its body to a handler that answers later."""
    ctx = Context(dataclasses.replace(Config(), **config).limits(), SharedState(1), 0)
    bodies, answers = [], []
    ctx.on_head = lambda req: bodies.append(BodyIn(1 << 20)) or bodies[-1]

    def dispatch(req):
        answers.append(Deferred())
        return answers[-1]
    return Connection(ctx, dispatch), ctx, bodies, answers


def test_a_streamed_body_is_its_own_state_then_the_handler_waits():
    conn, ctx, bodies, answers = streaming()
    assert conn.feed(POST + b"abcd") == b""
    assert conn.state_name == "stream_in" and conn.wants_input and ctx.waiting == 1
    assert bodies[0].take() == b"abcd"
    conn.feed(b"efghij")
    assert conn.state_name == "wait" and not conn.wants_input
    assert bodies[0].take() == b"efghij"
    answers[0].complete("stored")
    out = conn.feed(b"")
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"stored")
    assert conn.state_name == "idle" and ctx.waiting == 0


def test_an_answer_before_the_body_is_in_closes_after_it():
    conn, ctx, bodies, answers = streaming()
    conn.feed(POST + b"abcd")
    answers[0].complete("too soon")
    out = conn.feed(b"")
    assert b"Connection: close" in out and conn.state_name == "closing"


def test_a_streamed_body_that_stops_coming_times_out_as_a_body():
    """A 408 as for a gathered body; the handler's wait is cancelled."""
    conn, ctx, bodies, answers = streaming()
    conn.feed(POST + b"abcd")
    cancelled = []
    answers[0].on_cancel = lambda: cancelled.append(True)
    assert conn.expire() == "drive"
    assert conn.state_name == "refused" and ctx.waiting == 0 and cancelled == [True]


def test_a_handler_that_waits_has_no_server_deadline_and_a_hang_up_cancels_it():
    conn, ctx, _, answers = streaming()
    conn.feed(POST + b"abcdefghij")
    cancelled = []
    answers[0].on_cancel = lambda: cancelled.append(True)
    assert conn.state_name == "wait"
    conn.hang_up()
    assert cancelled == [True] and conn.state_name == "closed" and ctx.waiting == 0


# ---------------------------------------------------------------- streaming out

GET = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


async def _never():
    yield b""


def pushing(**config):
    """A connection whose responses stream from asyncio: the Feed they are pushed through is
    kept, so a test can push chunks (or not) and look at the state in between."""
    from fastsock._message import Response
    ctx = Context(dataclasses.replace(Config(), **config).limits(), SharedState(1), 0)
    feeds = []
    ctx.on_stream = lambda feed, it: feeds.append(feed)
    return Connection(ctx, lambda req: Response(_never())), feeds


def test_a_streamed_response_is_its_own_state_and_the_next_request_waits_for_its_end():
    conn, feeds = pushing()
    out = conn.feed(GET + GET)
    assert out.startswith(b"HTTP/1.1 200 OK") and b"chunked" in out
    assert conn.state_name == "stream_out" and not conn.wants_input
    assert feeds[0].write(b"abc") and conn.feed(b"") == b"3\r\nabc\r\n"
    feeds[0].end()
    out = conn.feed(b"")                # its end, then the pipelined request's head
    assert out.startswith(b"0\r\n\r\nHTTP/1.1 200 OK") and conn.state_name == "stream_out"
    feeds[1].end()
    assert conn.feed(b"") == b"0\r\n\r\n" and conn.state_name == "idle"


def test_the_last_response_streams_then_the_connection_closes():
    conn, feeds = pushing()
    conn.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert conn.state_name == "stream_out" and not conn.is_finished
    feeds[0].end()
    conn.feed(b"")
    assert conn.state_name == "closing" and conn.is_finished


def test_a_stream_that_fails_cuts_the_connection_and_one_gone_tells_its_producer():
    conn, feeds = pushing()
    conn.feed(GET)
    feeds[0].fail("producer failed")
    conn.feed(b"")
    assert conn.state_name == "refused" and conn.is_finished
    conn, feeds = pushing()
    conn.feed(GET)
    cancelled = []
    feeds[0].on_cancel = lambda: cancelled.append(True)
    conn.hang_up()
    assert cancelled == [True] and conn.state_name == "closed" and feeds[0].closed
