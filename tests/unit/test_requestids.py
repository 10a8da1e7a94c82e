"""Request ids (fastsock/_requestids.pyx): the client's X-Request-ID or a new one, never two
alike, and the header line that echoes it: only a valid field value goes out that way."""
import re

from fastsock._message import Response
from fastsock._parser import RequestParser
from fastsock._requestids import ECHO_ID, RequestIds, echo_of
from tests.unit.test_conn import connection

DATE = b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n"


def parse(rid: bytes | None = None):
    head = b"GET / HTTP/1.1\r\nHost: h\r\n"
    if rid is not None:
        head += b"X-Request-ID: " + rid + b"\r\n"
    (req,) = RequestParser().feed(head + b"\r\n")
    return req


def test_the_clients_id_is_kept_and_echoed_as_it_came():
    ids = RequestIds()
    req = parse(b"from-client \xe9")
    ids.assign(req)
    assert req.request_id == "from-client \u00e9"
    assert echo_of(req) == (b"from-client \xe9", None)


def test_new_ids_never_repeat_and_are_given_once():
    ids = RequestIds()
    reqs = [parse() for _ in range(1000)]
    for req in reqs:
        ids.assign(req)
    made = [req.request_id for req in reqs]
    assert len(set(made)) == 1000 and all(m.startswith(ids.prefix) for m in made)
    assert echo_of(reqs[0]) == (made[0].encode(), None)
    ids.assign(reqs[0])
    assert reqs[0].request_id == made[0]
    assert RequestIds().prefix != ids.prefix


def test_an_id_the_app_set_that_cannot_be_a_field_value_is_not_echoed_raw():
    req = parse()
    for bad in ("a\r\nSet-Cookie: x=1", "nul\x00", "\u20ac"):
        req.request_id = bad
        assert echo_of(req) == (None, [("X-Request-ID", bad)])     # the writer checks it
    assert echo_of(parse()) == (None, None)        # no id at all


def test_the_connection_echoes_the_id_in_the_head():
    def dispatch(req):
        RequestIds().assign(req) if req.path == "/new" else None
        req.response_headers = ECHO_ID
        if req.path == "/bad":
            req.request_id = "x\r\nInjected: 1"
        return "ok"

    conn, _shared = connection(dispatch)
    out = conn.feed(b"GET /given HTTP/1.1\r\nHost: h\r\nX-Request-ID: abc\r\n\r\n"
                    b"GET /new HTTP/1.1\r\nHost: h\r\n\r\n"
                    b"GET /bad HTTP/1.1\r\nHost: h\r\n\r\n")
    given, new, bad = out.split(b"HTTP/1.1 ")[1:]
    assert given.startswith(b"200") and b"\r\nX-Request-ID: abc\r\nDate: " in given
    assert new.startswith(b"200") and b"\r\nX-Request-ID: " in new
    assert bad.startswith(b"500") and b"Injected" not in bad      # checked, refused


def test_an_apps_own_date_keeps_the_echoed_id():
    # the app's Date replaces the server's (RFC 9110 §6.6.1: one), never the id's line before it
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"

    def dispatch(req):
        RequestIds().assign(req)
        req.response_headers = ECHO_ID
        return Response(b"x", headers=[("Date", stamp)])

    conn, _shared = connection(dispatch)
    out = conn.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Request-ID: abc\r\n\r\n"
                    b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    given, new = out.split(b"HTTP/1.1 ")[1:]
    assert b"\r\nX-Request-ID: abc\r\n" in given
    assert re.search(rb"\r\nX-Request-ID: [0-9a-f]{12}-1\r\n", new), new
    for head in (given, new):
        assert head.lower().count(b"\r\ndate: ") == 1 and stamp.encode() in head


def test_a_given_id_is_made_a_str_only_when_read_and_then_stays_the_same():
    ids = RequestIds()
    req = parse()
    ids.assign(req)
    echoed, _ = echo_of(req)                    # written from the counter: no str made
    assert echoed == f"{ids.prefix}1".encode()
    first = req.request_id
    assert first == echoed.decode() and req.request_id is first    # made once
    assert echo_of(req) == (echoed, None)


def test_an_id_set_after_one_was_given_replaces_it_everywhere():
    ids = RequestIds()
    req = parse()
    ids.assign(req)
    req.request_id = "mine"
    assert req.request_id == "mine" and echo_of(req) == (b"mine", None)
    ids.assign(req)                             # never given twice, never over the app's
    assert req.request_id == "mine"
    req.request_id = None                       # the app takes it away: no id at all
    assert req.request_id is None and echo_of(req) == (None, None)
    client = parse(b"theirs")
    ids.assign(client)
    client.request_id = None
    assert client.request_id == "theirs"        # the client's, as it came


def test_ids_in_hex_across_digit_counts():
    ids = RequestIds()
    reqs = [parse() for _ in range(300)]
    for req in reqs:
        ids.assign(req)
    for n in (1, 15, 16, 255, 256, 300):
        assert echo_of(reqs[n - 1])[0] == f"{ids.prefix}{n:x}".encode()
    ids = RequestIds(issued=2**64 - 3)          # the count's last ids, then round again
    reqs = [parse() for _ in range(3)]
    for req in reqs:
        ids.assign(req)
    assert [req.request_id for req in reqs] == [
        f"{ids.prefix}{'f' * 15}e", f"{ids.prefix}{'f' * 16}", f"{ids.prefix}1"]
