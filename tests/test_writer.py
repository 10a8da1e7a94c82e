"""The writer room without sockets: every response shape it frames, and what it refuses."""
import pytest

from fastsock._message import Response
from fastsock._writer import EPOCH_DATE_LINE, error_response, serialize

DATE = b"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"


def test_the_date_line_is_the_callers():
    assert serialize("x", date_line=DATE).endswith(DATE + b"\r\nx")
    assert serialize("x").endswith(EPOCH_DATE_LINE + b"\r\nx")
    assert error_response(400, DATE).count(DATE) == 1


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
    # the writer rolls back what it wrote of a head it then refused
    with pytest.raises(ValueError):
        serialize(Response("x", headers=[("Ok", "1"), ("Bad", "\n")]))
    with pytest.raises(ValueError):
        serialize(Response("x", status=99))
    with pytest.raises(TypeError):
        serialize(1.5)


def test_streams_http11_chunked_and_http10_until_close():
    chunked = serialize(Response(iter(["ab", b"", bytearray(b"c"), memoryview(b"de")])))
    assert chunked.endswith(b"\r\n\r\n2\r\nab\r\n1\r\nc\r\n2\r\nde\r\n0\r\n\r\n")
    plain = serialize(Response(iter(["ab", b"cd"])), http11=False)
    assert b"Connection: close\r\n" in plain and plain.endswith(b"\r\n\r\nabcd")


@pytest.mark.parametrize("bad", [None, 1, 1.5, {"a": 1}])
def test_a_stream_chunk_that_is_not_text_or_bytes_is_refused(bad):
    with pytest.raises(TypeError):
        serialize(Response(iter([b"ok", bad])))


def test_head_keeps_the_length_and_drops_the_body():
    out = serialize("hello", head_only=True)
    assert b"Content-Length: 5\r\n" in out and out.endswith(b"\r\n\r\n")
