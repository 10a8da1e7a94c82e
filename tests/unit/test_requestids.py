"""Request ids (fastsock/_requestids.pyx): the client's X-Request-ID or a new one, never two
alike, and the header line that echoes it: only a valid field value goes out that way."""
from fastsock._parser import RequestParser
from fastsock._requestids import ECHO_ID, RequestIds, echo_lines_of
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
    assert echo_lines_of(req, DATE) == b"X-Request-ID: from-client \xe9\r\n" + DATE


def test_new_ids_never_repeat_and_are_given_once():
    ids = RequestIds()
    reqs = [parse() for _ in range(1000)]
    for req in reqs:
        ids.assign(req)
    made = [req.request_id for req in reqs]
    assert len(set(made)) == 1000 and all(m.startswith(ids.prefix) for m in made)
    assert echo_lines_of(reqs[0], DATE) == f"X-Request-ID: {made[0]}\r\n".encode() + DATE
    ids.assign(reqs[0])
    assert reqs[0].request_id == made[0]
    assert RequestIds().prefix != ids.prefix


def test_an_id_the_app_set_that_cannot_be_a_field_value_is_not_echoed_raw():
    req = parse()
    for bad in ("a\r\nSet-Cookie: x=1", "nul\x00", "\u20ac"):
        req.request_id = bad
        assert echo_lines_of(req, DATE) is None
    assert echo_lines_of(parse(), DATE) is None        # no id at all


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
