"""The access log's C formatter (fastsock/_accesslog.pyx) writes the same lines, byte for byte,
as the Python one it replaced (tests/support/accesslog_reference.py), for requests parsed by the
real parser from a corpus of hostile paths, user agents, ids and clients; its batches are whole
lines of at most PIPE_BUF bytes."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from fastsock._accesslog import AccessLog
from fastsock._parser import RequestParser
from fastsock._requestids import RequestIds
from tests.support.accesslog_reference import line as reference_line

PIPE_BUF = 4096
NOW = 1_733_299_199.9996        # a second's last instant: the milliseconds round the wrong way

PATHS = [b"/", b"/plain", b"/a%20b", b"/%0A%0Dforged%20line", b"/q%22uote%5Cback",
         b"/%00nul%01%1F%7F", b"/caf%C3%A9", b"/bad%FF%FEutf8", b"/%E2%80%A8sep",
         b"/%F0%9F%92%A9", b'/raw"quote\\back', b"/x?" + b"q=%0A" * 20,
         b"/" + b"%41" * 2000, b"/" + b"y" * 6000, b"http://h.example:1/abs?x", b"http://h.example",
         b"/%ED%A0%80half-surrogate"]
AGENTS = [None, b"", b"curl/8", b'quo"te \\ back', b"tab\there", b"\x80\xff\xe9latin",
          b"x" * 3000, b"{\"json\":1}", b"\xc3\xa9 utf-8 read as latin-1"]
IDS = [None, b"", b"abc-123", b'evil" id\\', b"\xe9t\xe9", b"with space", b"long-" * 1000,
       b"tab\there"]
CLIENTS = [("127.0.0.1", 5), ("::1", 6), ("", 0), None, (),
           ("h\u00e9\u2028\"\\\udc80\x01\x7f", 1)]


def parse(path: bytes, ua: bytes | None, rid: bytes | None, version: bytes = b"1.1"):
    head = b"GET " + path + b" HTTP/" + version + b"\r\nHost: h\r\n"
    if ua is not None:
        head += b"User-Agent: " + ua + b"\r\n"
    if rid is not None:
        head += b"X-Request-ID: " + rid + b"\r\n"
    (req,) = RequestParser(max_request_line=1 << 16).feed(head + b"\r\n")
    assert not isinstance(req, str), req
    return req


def corpus():
    n = 0
    ids = RequestIds()
    for path in PATHS:
        for ua in AGENTS:
            for rid in IDS:
                n += 1
                req = parse(path, ua, rid, b"1.0" if n % 5 == 0 else b"1.1")
                req.client = CLIENTS[n % len(CLIENTS)]
                if n % 7 == 0:
                    req.request_id = "given-\udcff\u00e9\U0001f4a9\x1f\x08" if n % 2 else f"{n:x}"
                elif n % 3:
                    ids.assign(req)         # (none when the client sent one): its counter's
                    if n % 3 == 2:
                        req.request_id      # noqa: B018 (read: its str made before the line)
                yield req, n


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_the_lines_equal_the_python_formatters_byte_for_byte(fmt):
    log = AccessLog(fmt, fd=-1)
    checked = 0
    for req, n in corpus():
        status, nbytes, seconds = 100 + n % 500, n * 7919, (n % 97) * 0.0123456 + n * 1e-7
        now = NOW + n * 0.0371
        got = log.line(req, status, nbytes, seconds, now)   # first: the reference reads the id
        assert got == reference_line(req, status, nbytes, seconds, now, fmt == "json"), (
            req.path, n)
        checked += 1
    assert checked == len(PATHS) * len(AGENTS) * len(IDS)
    assert log.pending == 0


def test_json_lines_parse_and_keep_what_came():
    log = AccessLog("json", fd=-1)
    req = parse(b"/%0A%22x%5C", b'ua "q"\tx', b"id\\1")
    req.client = ("10.1.2.3", 9)
    entry = json.loads(log.line(req, 404, 12, 0.5, NOW))
    assert entry["path"] == '/\n"x\\' and entry["user_agent"] == 'ua "q"\tx'
    assert entry["request_id"] == "id\\1" and entry["client"] == "10.1.2.3"
    assert entry["duration_ms"] == 500.0 and entry["status"] == 404


def test_a_text_line_cannot_be_forged_by_a_decoded_newline():
    log = AccessLog("text", fd=-1)
    out = log.line(parse(b"/a%0Ab", b"ua\tx", None), 200, 1, 0.001, NOW)
    assert out.count(b"\n") == 1 and b"/a%0Ab" in out and b'"ua\\tx"' in out


def test_batches_are_whole_lines_of_at_most_pipe_buf_bytes():
    r, w = os.pipe()
    try:
        log = AccessLog("json", fd=w)
        lines = []
        for i, path in enumerate([b"/short", b"/" + b"z" * 5000, b"/m" * 900] * 3):
            req = parse(path, b"ua", None)
            req.client = ("127.0.0.1", i)
            lines.append(log.line(req, 200, i, 0.001, NOW))
            log.log(req, 200, i, 0.001)
        assert log.pending == sum(len(x) for x in lines)
        log.flush()
        assert log.pending == 0
        os.set_blocking(r, False)
        writes = []
        while True:
            try:
                writes.append(os.read(r, 1 << 20))
            except BlockingIOError:
                break
    finally:
        os.close(r)
        os.close(w)
    data = b"".join(writes)
    assert data.count(b"\n") == len(lines) and len(data) == sum(len(x) for x in lines)
    assert [json.loads(x)["bytes"] for x in data.splitlines()] == list(range(len(lines)))


def test_a_closed_stdout_drops_the_lines_not_the_worker():
    r, w = os.pipe()
    os.close(r)
    log = AccessLog("text", fd=w)
    try:
        log.log(parse(b"/", None, None), 200, 1, 0.0)
        log.flush()                 # EPIPE: dropped
        assert log.pending == 0
    finally:
        os.close(w)



@pytest.mark.parametrize("fmt", ["json", "text"])
def test_numbers_are_written_as_python_writes_them(fmt):
    log = AccessLog(fmt, fd=-1)
    req = parse(b"/n", b"ua", None)
    req.client = ("10.0.0.1", 1)
    for n in [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 9999, 10000, 123456789, 10**17, -1, -10,
              -999, -1000, -123456]:
        for seconds in [0.0, 0.0004, 0.0009999, 1.5, 123.456789, 1e-7, 86400.0005]:
            expected = reference_line(req, 200, n, seconds, NOW, fmt == "json")
            assert log.line(req, 200, n, seconds, NOW) == expected, (n, seconds)


def test_a_line_is_stamped_with_the_wall_clock_of_its_answer():
    import calendar
    import time

    r, w = os.pipe()
    try:
        log = AccessLog("json", fd=w)
        before = time.time()
        log.log(parse(b"/", None, None), 200, 1, 0.0)
        after = time.time()
        log.flush()
        stamp = json.loads(os.read(r, 4096))["time"]
    finally:
        os.close(r)
        os.close(w)
    seconds = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    at = seconds + int(stamp[20:23]) / 1000
    assert before - 0.002 <= at <= after + 0.002, (before, stamp, after)


# bytes each format writes as they are, and bytes it encodes, mixed at every offset of the
# 8-byte words the runs are scanned by
TRICKY = list(b'aZ~ /"\\\t\x00\x1f\x7f\x80\xe9\xff')
FIELD_VALUE = [c for c in TRICKY if c == 9 or 32 <= c < 127 or c >= 128]    # what the parser takes
UAS = st.lists(st.sampled_from(FIELD_VALUE), max_size=40).map(bytes)
RAW_PATHS = st.one_of(st.lists(st.sampled_from(TRICKY), max_size=40).map(bytes),
                      st.binary(max_size=40))
HOSTS = st.one_of(st.text(alphabet='a1."\\\x01\x7f\u00e9\u2028\udc80\U0001f4a9', max_size=30),
                  st.text(max_size=20))


@settings(max_examples=500, deadline=None)
@given(fmt=st.sampled_from(["json", "text"]), ua=UAS, raw_path=RAW_PATHS, host=HOSTS,
       given_id=st.booleans())
def test_any_bytes_in_any_place_are_written_as_the_python_formatter_writes_them(
        fmt, ua, raw_path, host, given_id):
    # every byte at every offset of the 8-byte words the runs are scanned by
    path = b"/" + b"".join(b"%%%02X" % c for c in raw_path)
    req = parse(path, ua, None)
    req.client = (host, 1)
    if given_id:
        RequestIds().assign(req)
    log = AccessLog(fmt, fd=-1)
    got = log.line(req, 200, 5, 0.25, NOW)
    assert got == reference_line(req, 200, 5, 0.25, NOW, fmt == "json")
