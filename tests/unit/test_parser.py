"""The sans-IO parser on its own: bytes in, requests or a refusal out. No sockets.

Every case is fed whole, byte by byte, and in random splits; all three must agree."""
import random

import pytest

from fastsock._parser import PARSE_ERRORS, RequestParser
from tests.support.vectors import SMUGGLED, VECTORS

SPLITS = ["whole", "bytewise", "random1", "random2", "random3"]


def feed(data: bytes, split: str, **limits):
    parser = RequestParser(**limits)
    if split == "whole":
        pieces = [data]
    elif split == "bytewise":
        pieces = [data[i:i + 1] for i in range(len(data))]
    else:
        rng = random.Random(f"{split}-{len(data)}")
        pieces, i = [], 0
        while i < len(data):
            n = rng.randint(1, 40)
            pieces.append(data[i:i + n])
            i += n
    events = []
    for piece in pieces:
        events += [e for e in parser.feed(piece) if e != "continue"]
    return events, parser


def summary(req):
    return (req.method, req.path, req.query_string, req.http_version, req.keep_alive,
            req.headers.items(), req.body)


@pytest.mark.parametrize("split", SPLITS)
def test_simple_get(split):
    (req,), p = feed(b"GET /a/b?x=1&x=2&y= HTTP/1.1\r\nHost: example.com\r\nX-Multi: 1\r\n"
                     b"x-multi: 2\r\nUser-Agent:  t  \r\n\r\n", split)
    assert p.error_status == 0
    assert (req.method, req.path, req.raw_path, req.query_string) == (
        "GET", "/a/b", b"/a/b", b"x=1&x=2&y=")
    assert req.http_version == "1.1" and req.keep_alive
    assert req.headers["host"] == "example.com"
    assert req.headers["HOST"] == "example.com"
    assert req.headers.getall("X-MULTI") == ["1", "2"]
    assert req.headers["user-agent"] == "t"          # optional whitespace trimmed both sides
    assert req.query.getall("x") == ["1", "2"] and req.query["y"] == ""
    assert req.body == b""


@pytest.mark.parametrize("split", SPLITS)
def test_content_length_body(split):
    body = bytes(range(256)) * 40
    (req,), _ = feed(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body, split)
    assert req.method == "POST" and req.body == body


@pytest.mark.parametrize("split", SPLITS)
def test_chunked_body_with_extensions_and_trailers(split):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
           b"5;name=value;flag\r\nhello\r\n"
           b"6 ; q=\"a \\\" b\"\r\n world\r\n"
           b"0000A\r\n0123456789\r\n"
           b"0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n")
    (req,), p = feed(raw, split)
    assert p.error_status == 0
    assert req.body == b"hello world0123456789"


@pytest.mark.parametrize("split", SPLITS)
def test_pipelined_requests_in_order(split):
    raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20))
    raw += b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    raw += b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ndef\r\n0\r\n\r\n"
    raw += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    events, p = feed(raw, split)
    assert [e.path for e in events] == [f"/{i}" for i in range(20)] + ["/p", "/c", "/last"]
    assert events[20].body == b"abc" and events[21].body == b"def"
    assert not events[-1].keep_alive and events[-2].keep_alive


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("raw, keep_alive", [
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade, CLOSE\r\n\r\n", False),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
])
def test_connection_semantics(split, raw, keep_alive):
    (req,), _ = feed(raw, split)
    assert req.keep_alive is keep_alive


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("version", [b"1.0", b"1.1"])
@pytest.mark.parametrize("fields", [
    b"Connection: keep-alive, close\r\n",
    b"Connection: close, keep-alive\r\n",
    b"Connection: Keep-Alive,CLOSE\r\n",
    b"Connection: keep-alive\r\nConnection: close\r\n",
    b"Connection: close\r\nConnection: keep-alive\r\n",
])
def test_close_wins_wherever_it_appears(split, version, fields):
    # issue 19: an HTTP/1.0 keep-alive next to a close was kept open
    raw = b"GET / HTTP/" + version + b"\r\nHost: x\r\n" + fields + b"\r\n"
    after = b"GET /2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"    # its own request
    (req, req2), _ = feed(raw + after, split)
    assert not req.keep_alive and req2.keep_alive


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("raw, path, query", [
    (b"GET http://example.com/x/y?z=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", "/x/y", b"z=1"),
    (b"GET https://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", "/", b""),
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "*", b""),
    (b"\r\n\r\nGET /after-crlf HTTP/1.1\r\nHost: x\r\n\r\n", "/after-crlf", b""),
    (b"GET /caf%C3%A9%20x HTTP/1.1\r\nHost: x\r\n\r\n", "/caf\u00e9 x", b""),
    (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "/", b""),              # empty Host is allowed
    (b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\nX: caf\xc3\xa9\r\nE:\r\n\r\n", "/", b""),
])
def test_accepted_forms(split, raw, path, query):
    (req,), p = feed(raw, split)
    assert p.error_status == 0
    assert req.path == path and req.query_string == query


def test_obs_text_value_is_latin1():
    (req,), _ = feed(b"GET / HTTP/1.1\r\nHost: x\r\nX: caf\xe9\r\n\r\n", "whole")
    assert req.headers["x"] == "caf\u00e9"


def test_expect_100_continue_once_before_body():
    p = RequestParser()
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    assert p.feed(head) == ["continue"]
    assert p.feed(b"hel") == []
    (req,) = p.feed(b"lo")
    assert req.body == b"hello"


def test_expect_100_continue_not_sent_when_body_already_here():
    p = RequestParser()
    events = p.feed(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 5\r\n\r\nhello")
    assert [type(e).__name__ for e in events] == ["Request"]


def test_expect_100_continue_ignored_for_http10():
    p = RequestParser()
    events = p.feed(b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert events == []


def test_expect_on_oversized_body_is_413_without_continue():
    p = RequestParser(max_body_size=10)
    assert p.feed(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 11\r\n\r\n") == []
    assert p.error_status == 413


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name, raw, status", VECTORS, ids=[v[0] for v in VECTORS])
def test_malformed_and_smuggling_vectors_are_refused(split, name, raw, status):
    events, p = feed(raw + SMUGGLED, split)
    assert p.error_status == status, p.error_reason
    assert all(e.path != "/smuggled" for e in events)
    assert p.feed(SMUGGLED) == []                 # nothing is parsed after a refusal


# ---------------------------------------------------------------- limits

@pytest.mark.parametrize("split", ["whole", "random1"])
def test_request_line_limit_414(split):
    (req,), p = feed(b"GET /" + b"a" * 80 + b" HTTP/1.1\r\nHost: x\r\n\r\n", split,
                     max_request_line=100)
    assert p.error_status == 0
    events, p = feed(b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: x\r\n\r\n", split,
                     max_request_line=100)
    assert events == [] and p.error_status == 414


def test_request_line_limit_without_newline():
    p = RequestParser(max_request_line=100)
    p.feed(b"GET /" + b"a" * 200)                   # no end of line in sight: refuse early
    assert p.error_status == 414


@pytest.mark.parametrize("split", ["whole", "random2"])
def test_header_bytes_limit_431(split):
    big = b"X-Big: " + b"v" * 2000 + b"\r\n"
    events, p = feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", split, max_header_bytes=1024)
    assert events == [] and p.error_status == 431
    (req,), p = feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", split,
                     max_header_bytes=4096)
    assert len(req.headers["x-big"]) == 2000


def test_header_bytes_limit_without_end_of_head():
    p = RequestParser(max_header_bytes=1024)
    p.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 2000)
    assert p.error_status == 431


@pytest.mark.parametrize("count, status", [(100, 0), (101, 431)])
def test_header_count_limit(count, status):
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))
    _, p = feed(b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n", "whole")
    assert p.error_status == status


@pytest.mark.parametrize("split", ["whole", "random3"])
def test_body_limit_413_from_content_length(split):
    events, p = feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n", split,
                     max_body_size=1024)
    assert events == [] and p.error_status == 413
    (req,), p = feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n" + b"b" * 1024,
                     split, max_body_size=1024)
    assert len(req.body) == 1024


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_body_limit_413_while_decoding_chunks(split):
    chunks = b"200\r\n" + b"c" * 512 + b"\r\n"
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    (req,), p = feed(raw + chunks * 2 + b"0\r\n\r\n", split, max_body_size=1024)
    assert len(req.body) == 1024
    events, p = feed(raw + chunks * 3 + b"0\r\n\r\n", split, max_body_size=1024)
    assert events == [] and p.error_status == 413


def test_chunk_extension_limit():
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;" + b"e" * 100
    _, p = feed(raw + b"\r\nhello\r\n0\r\n\r\n", "whole", max_chunk_ext=200)
    assert p.error_status == 0
    _, p = feed(raw + b"\r\nhello\r\n0\r\n\r\n", "whole", max_chunk_ext=50)
    assert p.error_status == 400
    _, p = feed(raw + b"e" * 1000, "whole", max_chunk_ext=50)   # no end of line yet
    assert p.error_status == 400


def test_one_mebibyte_bodies_both_framings():
    body = random.Random(1).randbytes(1 << 20)
    (req,), _ = feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body, "random1")
    assert req.body == body
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                       for i in range(0, len(body), 65536))
    (req,), _ = feed(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + chunked + b"0\r\n\r\n", "random2")
    assert req.body == body


def test_error_table_names_statuses_and_labels_each_error_once():
    (none, *errors) = PARSE_ERRORS
    assert none == ("", 0, "")
    assert len(PARSE_ERRORS) <= 64                  # N_PARSE_REASONS in _shared.pxd
    names = [name for name, _, _ in errors]
    labels = [label for _, _, label in errors]
    assert len(set(names)) == len(names) and len(set(labels)) == len(labels)
    for name, status, label in errors:
        assert status in (400, 413, 414, 417, 431, 501, 505), (name, status)
        assert label.replace("_", "").isalnum() and label == label.lower(), label


@pytest.mark.parametrize("raw, status, reason", [
    (b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, "bare LF"),
    (b"GET / HTTP/1.1\r\n\r\n", 400, "missing Host"),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "unsupported HTTP version"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
     "unsupported transfer coding"),
])
def test_refusal_reports_its_table_row(raw, status, reason):
    parser = RequestParser()
    assert parser.feed(raw) == []
    assert (parser.error_status, parser.error_reason) == (status, reason)
    assert PARSE_ERRORS[parser.error][:2] == (reason, status)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("target", [
    b"http:///go", b"https://", b"http://?q", b"http://:80/x",       # no host (RFC 9110 §4.2.1)
    b"http://user@evil.example/x", b"http://a:b@host/",            # userinfo (§4.2.4)
    b"http://ho\"st/", b"http://host#frag", b"http://ho<st>/",     # not Host's characters
])
def test_absolute_form_needs_a_host_and_no_userinfo(split, target):
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    events, p = feed(raw, split)
    assert events == [] and (p.error_status, p.error_reason) == (400, "invalid request target")


@pytest.mark.parametrize("target, authority", [
    (b"http://other.example:9000/go", "other.example:9000"),
    (b"https://[::1]:8443?x=1", "[::1]:8443"),
    (b"HTTP://Example.COM", "Example.COM"),
])
def test_absolute_form_authority_is_the_host(target, authority):
    (req,), p = feed(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n", "whole")
    assert p.error_status == 0 and req.authority == authority
    assert req.headers["host"] == authority
