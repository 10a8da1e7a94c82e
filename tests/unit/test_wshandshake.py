"""The WebSocket opening handshake's room without sockets (RFC 6455 §4.2): requests through the
real parser, each refusal with its status, the accept value, what the client offers, and the
exact bytes of the 101."""
import pytest
from hypothesis import given, settings, strategies as st

from fastsock._outbuf import OutBuffer
from fastsock._wshandshake import (VERSION_HEADER, accept_head, accept_value, check,
                                   choose_subprotocol, extensions, refusal, subprotocols)
from tests.support.requests import SAMPLE_ACCEPT, SAMPLE_KEY, parse_request, upgrade_request

DATE = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"


def test_rfc_6455_example_key_gets_its_accept_value():
    assert accept_value(SAMPLE_KEY) == SAMPLE_ACCEPT
    assert accept_value(SAMPLE_KEY.encode()) == SAMPLE_ACCEPT


@pytest.mark.parametrize("fields", [
    {},
    {"Upgrade": "WebSocket", "Connection": "keep-alive, UPGRADE"},
    {"Upgrade": "h2c, websocket", "Connection": "Upgrade ,close"},
    {"Content_Length": "0"},
    {"Content_Length": "000"},
])
def test_valid_handshakes_pass(fields):
    req = upgrade_request(**fields)
    assert check(req) == 0 and refusal(req) == (0, "")


def test_connection_and_upgrade_tokens_may_come_on_repeated_lines():
    req = upgrade_request(("Connection", "Upgrade"), ("Upgrade", "websocket"),
                          Connection="keep-alive", Upgrade="h2c")
    assert check(req) == 0


@pytest.mark.parametrize("request_kwargs, status, reason", [
    ({"method": "POST"}, 400, "GET"),
    ({"method": "HEAD"}, 400, "GET"),
    ({"version": "HTTP/1.0"}, 400, "HTTP/1.1"),
    ({"Upgrade": None}, 400, "Upgrade"),
    ({"Upgrade": "websockets"}, 400, "Upgrade"),
    ({"Upgrade": "web socket"}, 400, "Upgrade"),
    ({"Connection": None}, 400, "Connection"),
    ({"Connection": "keep-alive"}, 400, "Connection"),
    ({"Connection": "upgraded"}, 400, "Connection"),
    ({"Sec_WebSocket_Key": None}, 400, "Key"),
    ({"Sec_WebSocket_Key": ""}, 400, "Key"),
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ"}, 400, "base64"),        # no padding
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZQ=" + "="}, 0, ""),          # (the sample)
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZXg="}, 400, "base64"),       # 17 bytes
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25j"}, 400, "base64"),           # 15 bytes
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZ!=="}, 400, "base64"),       # not base64
    ({"Sec_WebSocket_Key": "dGhlIHNhbXBsZSBub25jZ==="}, 400, "base64"),
    ({"Sec_WebSocket_Version": None}, 426, "13"),
    ({"Sec_WebSocket_Version": "8"}, 426, "13"),
    ({"Sec_WebSocket_Version": "13, 8"}, 426, "13"),
    ({"Sec_WebSocket_Version": "013"}, 426, "13"),
    ({"Content_Length": "5", "body": b"hello"}, 400, "body"),
    ({"Content_Length": "010", "body": b"0123456789"}, 400, "body"),
    ({"Transfer_Encoding": "chunked", "body": b"0\r\n\r\n"}, 400, "body"),
])
def test_each_refusal_has_its_status_and_reason(request_kwargs, status, reason):
    req = upgrade_request(**request_kwargs)
    got_status, got_reason = refusal(req)
    assert check(req) == got_status == status
    assert reason in got_reason and (status == 0) == (got_reason == "")


def test_a_repeated_key_or_version_is_refused():
    assert refusal(upgrade_request(("Sec-WebSocket-Key", SAMPLE_KEY)))[0] == 400
    assert refusal(upgrade_request(("Sec-WebSocket-Version", "13")))[0] == 426


def test_the_426_answer_names_version_13():
    assert VERSION_HEADER == ("Sec-WebSocket-Version", "13")


def test_a_plain_request_is_no_handshake():
    req = parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert refusal(req) == (400, "Upgrade does not name websocket")


def test_subprotocols_in_order_over_repeated_lines():
    req = upgrade_request(("Sec-WebSocket-Protocol", "chat, superchat"),
                          ("Sec-WebSocket-Protocol", " v2.x ,,  bad/one , last"))
    assert subprotocols(req) == ["chat", "superchat", "v2.x", "last"]
    assert subprotocols(upgrade_request()) == []


def test_extensions_joined_over_repeated_lines():
    req = upgrade_request(
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("sec-websocket-extensions", "x-foo"))
    assert extensions(req) == "permessage-deflate; client_max_window_bits, x-foo"
    assert extensions(upgrade_request()) == ""


def test_the_app_picks_only_an_offered_subprotocol():
    assert choose_subprotocol(["chat", "v2"], "v2") == "v2"
    assert choose_subprotocol(["chat"], None) is None
    with pytest.raises(ValueError, match="not offered"):
        choose_subprotocol(["chat"], "superchat")


def test_the_101_head_byte_for_byte():
    assert accept_head(SAMPLE_ACCEPT, date_line=DATE) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" + DATE + b"\r\n")
    assert accept_head(SAMPLE_ACCEPT, "chat", "permessage-deflate; server_no_context_takeover",
                       [("X-Trace", "1"), (b"Set-Cookie", b"a=b")], DATE) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        b"X-Trace: 1\r\nSet-Cookie: a=b\r\n" + DATE + b"\r\n")


def test_a_date_of_the_apps_replaces_the_servers():
    head = accept_head(SAMPLE_ACCEPT, extra_headers=[("date", "mine")], date_line=DATE)
    assert head.endswith(b"date: mine\r\n\r\n") and DATE not in head


@pytest.mark.parametrize("headers, named", [
    ([("X-Bad", "a\r\nInjected: 1")], "X-Bad"),
    ([("X-Bad", "nul\x00")], "X-Bad"),
    ([("Bad Name", "v")], "Bad Name"),
    ([("", "v")], "empty"),
    ([("X:y", "v")], "X:y"),
    ([("Upgrade", "h2c")], "Upgrade"),
    ([("CONNECTION", "close")], "CONNECTION"),
    ([("Sec-WebSocket-Accept", "x")], "Sec-WebSocket-Accept"),
    ([("content-length", "0")], "content-length"),
    ([("Transfer-Encoding", "chunked")], "Transfer-Encoding"),
    ([("Sec-WebSocket-Protocol", "chat")], "Sec-WebSocket-Protocol"),
    ([("X-Ok", "1"), ("X-Snowman", "\u2603")], None),         # not latin-1: an encode error
])
def test_invalid_extra_headers_are_a_value_error_naming_them(headers, named):
    with pytest.raises(ValueError) as e:
        accept_head(SAMPLE_ACCEPT, extra_headers=headers, date_line=DATE)
    if named:
        assert named in str(e.value)


@pytest.mark.parametrize("subprotocol, extension", [
    ("chat\r\nX: 1", None), ("a b", None), ("", None), (None, "permessage-deflate\r\nX: 1")])
def test_a_subprotocol_or_extensions_value_that_would_break_the_head_is_refused(
        subprotocol, extension):
    with pytest.raises(ValueError):
        accept_head(SAMPLE_ACCEPT, subprotocol, extension, None, DATE)


def test_a_refused_101_leaves_nothing_written():
    out = OutBuffer()
    first = accept_head(SAMPLE_ACCEPT, date_line=DATE, out=out)
    with pytest.raises(ValueError):
        accept_head(SAMPLE_ACCEPT, "chat", None, [("X-A", "1"), ("Upgrade", "x")], DATE, out)
    assert out.getvalue() == first


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Upgrade", "Connection", "Sec-WebSocket-Key",
                                           "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
                                           "Sec-WebSocket-Extensions", "X-Other"]),
                          st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                  max_size=30)), max_size=8))
def test_random_handshake_lines_never_crash(lines):
    req = upgrade_request(*[(n, v.strip()) for n, v in lines])
    status, reason = refusal(req)
    assert status in (0, 400, 426) and check(req) == status
    assert all(p and " " not in p and "," not in p for p in subprotocols(req))
    assert isinstance(extensions(req), str)
