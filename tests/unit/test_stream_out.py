"""A streamed response body against an OutBuffer, without a connection or a socket: how each
framing writes it, and what each way of ending comes to (the connection's state follows it)."""
import pytest

from fastsock._stream_out import STEP_NAMES, StreamOut
from fastsock._outbuf import OutBuffer


class Source:
    """An iterator that records whether it was closed (close_stream tells it so)."""

    def __init__(self, *chunks, fail=False):
        self.chunks, self.fail, self.closed = list(chunks), fail, False

    def __iter__(self):
        return self

    def __next__(self):
        if self.chunks:
            return self.chunks.pop(0)
        if self.fail:
            raise RuntimeError("producer failed")
        raise StopIteration

    def close(self):
        self.closed = True


def test_the_steps_have_their_names_from_one_table():
    assert STEP_NAMES == ("going", "quiet", "done", "broken", "cut")


def test_chunked_each_pull_writes_one_chunk_and_the_end_its_terminator():
    out, src = OutBuffer(), Source(b"ab", b"", "cd")
    s = StreamOut(src, -1, True)
    assert s.pull_into(out) == "going" and out.getvalue() == b"2\r\nab\r\n"
    assert s.pull_into(out) == "going"          # the empty chunk is skipped, not sent
    assert out.getvalue() == b"2\r\nab\r\n2\r\ncd\r\n"
    assert s.pull_into(out) == "done" and out.getvalue().endswith(b"0\r\n\r\n")
    assert src.closed and not s.open


def test_a_stream_that_keeps_yielding_nothing_is_quiet_and_asked_again_later():
    out = OutBuffer()
    s = StreamOut(iter(lambda: b"", None), -1, True)
    assert s.pull_into(out) == "quiet" and out.getvalue() == b"" and s.open


def test_counted_by_its_content_length_exactly_is_done_with_no_terminator():
    out = OutBuffer()
    s = StreamOut(Source(b"abc", b"de"), 5, False)
    assert s.pull_into(out) == "going" and s.pull_into(out) == "going"
    assert s.pull_into(out) == "done" and out.getvalue() == b"abcde"


def test_more_bytes_than_declared_are_cut_at_the_declared_length():
    out, src = OutBuffer(), Source(b"abcdef")
    s = StreamOut(src, 4, False)
    assert s.pull_into(out) == "broken" and out.getvalue() == b"abcd" and src.closed


def test_fewer_bytes_than_declared_break_the_length_and_what_was_sent_stays():
    out = OutBuffer()
    s = StreamOut(Source(b"abc"), 10, False)
    assert s.pull_into(out) == "going" and s.pull_into(out) == "broken"
    assert out.getvalue() == b"abc"


@pytest.mark.parametrize("chunked, kept", [(True, b"2\r\nab\r\n"), (False, b"")])
def test_a_failing_producer_is_cut_and_a_close_delimited_body_drops_what_is_queued(chunked, kept):
    out, src = OutBuffer(), Source(b"ab", fail=True)
    s = StreamOut(src, -1, chunked)
    assert s.pull_into(out) == "going"
    assert s.pull_into(out) == "cut" and src.closed
    assert out.getvalue() == kept               # never a terminator: the body looks broken


def test_a_chunk_that_is_not_bytes_or_text_is_cut():
    out = OutBuffer()
    s = StreamOut(Source(), -1, True)
    assert s.chunk_into(out, 42) == "cut" and out.getvalue() == b""
