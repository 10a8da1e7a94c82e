"""The writer room without sockets: every response shape it frames, and what it refuses."""
import random

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fastsock._message import Response
from fastsock._outbuf import OutBuffer
from fastsock._writer import EPOCH_DATE_LINE, UNKNOWN_LENGTH, error_response, serialize

DATE = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
# a write's size: small, or past the 16 KiB a buffer starts with
SIZES = st.one_of(st.integers(0, 600), st.integers(16_000, 40_000))


def test_the_date_line_is_the_callers():
    assert serialize("x", date_line=DATE).endswith(DATE + b"\r\nx")
    assert serialize("x").endswith(EPOCH_DATE_LINE + b"\r\nx")
    assert error_response(400, DATE).count(DATE) == 1


@pytest.mark.parametrize("keep_alive, http11, extra, date, connection, middle", [
    (True, True, None, DATE, b"", b""),
    (False, True, None, DATE, b"Connection: close\r\n", b""),
    (True, False, None, DATE, b"Connection: keep-alive\r\n", b""),
    (False, True, [("X-Request-ID", "abc")], DATE, b"Connection: close\r\n",
     b"X-Request-ID: abc\r\n"),
    (True, True, None, b"Date: " + b"x" * 200 + b"\r\n", b"", b""),     # longer than its room
    (True, False, [("A", "1"), ("B", "2")], b"Date: " + b"y" * 200 + b"\r\n",
     b"Connection: keep-alive\r\n", b"A: 1\r\nB: 2\r\n"),
])
def test_the_end_of_the_head_in_its_order(keep_alive, http11, extra, date, connection, middle):
    # length, the server's Connection line, its extra lines, the Date line, the blank line
    out = serialize("hello", keep_alive=keep_alive, http11=http11, extra_headers=extra,
                    date_line=date)
    assert out == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Length: 5\r\n" + connection + middle + date + b"\r\nhello")
    for status, reason in ((204, b"No Content"), (304, b"Not Modified")):   # no length
        out = serialize(Response(b"", status=status), keep_alive=keep_alive, http11=http11,
                        extra_headers=extra, date_line=date)
        assert out == (b"HTTP/1.1 %d %s\r\nContent-Type: application/octet-stream\r\n"
                       % (status, reason) + connection + middle + date + b"\r\n")


@pytest.mark.parametrize("rid", [b"abc", b"r" * 64, b"r" * 65, b"r" * 5000])
@pytest.mark.parametrize("extra, date", [
    (None, DATE), ([("A", "1")], DATE), (None, b"Date: " + b"x" * 200 + b"\r\n"),
])
def test_the_echoed_request_id_comes_whole_after_the_extra_lines_and_before_the_date(
        rid, extra, date):
    out = serialize("hello", extra_headers=extra, date_line=date, request_id=rid)
    middle = b"A: 1\r\n" if extra else b""
    assert out == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                   b"Content-Length: 5\r\n" + middle + b"X-Request-ID: " + rid + b"\r\n"
                   + date + b"\r\nhello")


def test_lengths_of_every_size_are_written_whole():
    for n in (0, 1, 9, 10, 99, 100, 12345, 1 << 20):
        out = serialize(b"a" * n)
        assert f"\r\nContent-Length: {n}\r\n".encode() in out and out.endswith(
            b"\r\n\r\n" + b"a" * n)
    assert error_response(400, DATE) == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 16\r\nConnection: close\r\n" + DATE + b"\r\n400 Bad Request\n")


def test_json_results_are_framed_as_json():
    out = serialize({"a": [1, 2]})
    assert out.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 11\r\n")
    assert out.endswith(b'\r\n\r\n{"a":[1,2]}')


def test_extra_headers_are_written_and_validated():
    out = serialize("x", extra_headers=[("X-Request-ID", "abc")])
    assert b"\r\nX-Request-ID: abc\r\n" in out
    with pytest.raises(ValueError):
        serialize("x", extra_headers=[("X-Request-ID", "a\r\nSet-Cookie: b")])


@pytest.mark.parametrize("content_type", ["text/html\r\nSet-Cookie: a=b", "a\nb", "a\x00"])
def test_content_type_is_validated(content_type):
    with pytest.raises(ValueError):
        serialize(Response("x", content_type=content_type))


def test_a_refused_response_leaves_nothing_behind():
    """The writer rolls back what it wrote of a head it then refused, in the one buffer of a
    connection that already holds a larger answer (the buffer grew past 16 KiB for it): what
    the connection sends is the answers before, a 500 for each refused one, and the answer
    after, byte for byte (serialize() makes a fresh buffer per call: it cannot show this)."""
    from fastsock._conn import Connection
    from fastsock._context import Context
    from fastsock.config import Config
    big = "y" * 20000
    refused = {"/bad-header": Response("x", headers=[("Ok-Before", "1"), ("Bad", "\n")]),
               "/bad-status": Response("x", status=99), "/bad-type": 1.5}
    with pytest.raises(ValueError):
        serialize(refused["/bad-header"])
    with pytest.raises(ValueError):
        serialize(refused["/bad-status"])
    with pytest.raises(TypeError):
        serialize(refused["/bad-type"])
    conn = Connection(Context(Config().limits()), lambda req: refused.get(req.path, big))
    paths = ["/big", *refused, "/big"]
    out = conn.feed(b"".join(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % p.encode() for p in paths))
    answer_500 = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8"
                  b"\r\nContent-Length: 22\r\n" + EPOCH_DATE_LINE + b"\r\nInternal Server Error\n")
    assert out == serialize(big) + answer_500 * 3 + serialize(big)


def test_streams_http11_chunked_and_http10_until_close():
    chunked = serialize(Response(iter(["ab", b"", bytearray(b"c"), memoryview(b"de")])))
    assert chunked.endswith(b"\r\n\r\n2\r\nab\r\n1\r\nc\r\n2\r\nde\r\n0\r\n\r\n")
    plain = serialize(Response(iter(["ab", b"cd"])), http11=False)
    assert b"Connection: close\r\n" in plain and plain.endswith(b"\r\n\r\nabcd")


class _Closable:
    def __init__(self):
        self.closed = self.pulled = False

    def __iter__(self):
        return self

    def __next__(self):
        self.pulled = True
        raise StopIteration

    def close(self):
        self.closed = True


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("http11", [True, False])
def test_a_bodiless_status_with_a_streamed_body_is_framed_as_none(status, http11):
    # issue 19: no chunked framing and no body; the stream is closed, never pulled
    body = _Closable()
    out = serialize(Response(body, status), http11=http11, date_line=DATE)
    assert out == (b"HTTP/1.1 %d %s\r\nContent-Type: application/octet-stream\r\n"
                   % (status, b"No Content" if status == 204 else b"Not Modified")
                   + (b"" if http11 else b"Connection: keep-alive\r\n") + DATE + b"\r\n")
    assert body.closed and not body.pulled


@pytest.mark.parametrize("bad", [None, 1, 1.5, {"a": 1}])
def test_a_stream_chunk_that_is_not_text_or_bytes_is_refused(bad):
    with pytest.raises(TypeError):
        serialize(Response(iter([b"ok", bad])))


def test_head_keeps_the_length_and_drops_the_body():
    out = serialize("hello", head_only=True)
    assert b"Content-Length: 5\r\n" in out and out.endswith(b"\r\n\r\n")


class OutBufferMachine(RuleBasedStateMachine):
    """OutBuffer against a model (the bytes waiting to be sent, the count ever written) under
    writes small and large (> 16 KiB: it grows, and slides what is unsent to its front),
    partial sends, large bodies by reference, marks and rollbacks (issue 19)."""

    def __init__(self):
        super().__init__()
        self.out = OutBuffer()
        self.unsent = bytearray()
        self.total = 0
        self.marks = []             # (the buffer's mark, the model's total then)
        self.writes = 0

    def _bytes(self, n):            # each write its own bytes: one out of place shows
        self.writes += 1
        return random.Random(self.writes).randbytes(n)

    @rule(n=SIZES)
    def write(self, n):
        b = self._bytes(n)
        self.out._test_write(b)
        self.unsent += b
        self.total += n

    @rule(n=SIZES)
    def write_tail(self, n):
        b = self._bytes(n)
        self.out._test_write_tail(b)
        self.unsent += b
        self.total += n

    @rule(data=st.data())
    def send(self, data):
        n = data.draw(st.integers(0, len(self.unsent)), label="sent")
        self.out._test_consume(n)
        del self.unsent[:n]

    @rule()
    def flatten(self):
        self.out._test_flatten()

    @rule()
    def release(self):
        self.out._test_release()

    @rule()
    def mark(self):
        self.marks.append((self.out._test_mark(), self.total))

    @precondition(lambda self: self.marks)
    @rule(data=st.data())
    def rollback(self, data):
        mark, total = data.draw(st.sampled_from(self.marks), label="mark")
        if self.total - total > len(self.unsent):
            # some of it is sent: write_response never asks that; refused, nothing changed
            with pytest.raises(AssertionError):
                self.out._test_rollback(mark)
            return
        self.out._test_rollback(mark)
        del self.unsent[len(self.unsent) - (self.total - total):]
        self.total = total
        self.marks = [m for m in self.marks if m[1] <= total]

    @invariant()
    def matches_the_model(self):
        assert self.out.getvalue() == self.unsent
        assert self.out._test_state() == (len(self.unsent), self.total)


OutBufferMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                              deadline=None)
test_out_buffer_against_a_model = OutBufferMachine.TestCase


@pytest.mark.parametrize("name", ["Date", "date", "DATE"])
def test_the_apps_date_replaces_the_servers(name):
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    out = serialize(Response(b"x", headers=[(name, stamp)]))
    assert out.lower().count(b"\r\ndate: ") == 1
    assert f"{name}: {stamp}\r\n".encode() in out
    assert EPOCH_DATE_LINE not in out


def test_the_apps_date_keeps_the_echoed_request_id():
    out = serialize(Response(b"x", headers=[("Date", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                    request_id=b"abc")
    assert b"\r\nX-Request-ID: abc\r\n" in out and EPOCH_DATE_LINE not in out


def test_a_response_without_a_date_gets_the_servers():
    out = serialize(Response(b"x", headers=[("X-Dated", "no")]), extra_headers=[("A", "b")])
    assert out.count(EPOCH_DATE_LINE) == 1


@pytest.mark.parametrize("http11", [True, False])
def test_head_announces_what_get_sends_or_no_framing_when_its_length_is_unknown(http11):
    out = serialize(Response(UNKNOWN_LENGTH), head_only=True, http11=http11)
    assert b"Content-Length" not in out and b"Transfer-Encoding" not in out
    assert out.endswith(b"\r\n\r\n")
    out = serialize(Response(iter([b"abc"]), headers=[("Content-Length", "3")]),
                    head_only=True, http11=http11)
    assert b"Content-Length: 3\r\n" in out and out.endswith(b"\r\n\r\n")
    out = serialize(Response(iter([b"abc"])), head_only=True, http11=http11)
    assert (b"Transfer-Encoding: chunked\r\n" in out) == http11      # as its GET
    assert out.endswith(b"\r\n\r\n") and b"abc" not in out
