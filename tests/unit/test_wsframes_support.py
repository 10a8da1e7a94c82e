"""The raw-socket tests' own frame code (tests/support/wsframes.py), checked against wsproto's
frame parser and writer: an independent implementation of RFC 6455 on the other side, so a
mistake in the builder does not hide the same mistake in the server under test."""
from __future__ import annotations

import os
import socket
import zlib

import pytest
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from tests.support import wsframes as wf


def server_parses(*frames: bytes, extensions=None) -> list:
    """What a server-side wsproto makes of the bytes: its frames, in order."""
    proto = FrameProtocol(client=False, extensions=extensions or [])
    proto.receive_bytes(b"".join(frames))
    return list(proto.received_frames())


def payload_of(frames) -> bytes:
    return b"".join(f.payload.encode() if isinstance(f.payload, str) else f.payload
                    for f in frames)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
@pytest.mark.parametrize("opcode", [wf.OP_TEXT, wf.OP_BINARY])
def test_each_length_encoding_parses_as_the_payload_it_carries(size, opcode):
    data = b"a" * size if opcode == wf.OP_TEXT else os.urandom(size)
    built = wf.frame(opcode, data)
    # the minimal encoding: 2, 4 or 10 header bytes, then the 4-byte mask
    assert len(built) - size == (2 if size < 126 else 4 if size < 65536 else 10) + 4
    [parsed] = server_parses(built)
    assert parsed.opcode == Opcode(opcode)
    assert parsed.frame_finished and parsed.message_finished
    assert payload_of([parsed]) == data


@pytest.mark.parametrize("form, size, said", [
    (16, 5, "2 bytes when 1"), (64, 5, "8 bytes when 2"), (64, 300, "8 bytes when 2")])
def test_non_minimal_lengths_are_built_and_an_rfc_parser_refuses_them(form, size, said):
    built = wf.frame(wf.OP_BINARY, b"x" * size, length_form=form)
    assert built[1] & 0x7F == (126 if form == 16 else 127)
    with pytest.raises(ParseFailed, match=said):
        server_parses(built)


def test_the_mask_is_applied_and_a_given_key_is_used():
    built = wf.frame(wf.OP_BINARY, b"abcdef", mask=b"\x01\x02\x03\x04")
    assert built[2:6] == b"\x01\x02\x03\x04"
    assert built[6:] == bytes(b ^ k for b, k in zip(b"abcdef", b"\x01\x02\x03\x04\x01\x02",
                                                    strict=True))
    assert payload_of(server_parses(built)) == b"abcdef"


def test_an_unmasked_client_frame_is_built_and_refused():
    built = wf.frame(wf.OP_TEXT, b"hi", masked=False)
    assert built == b"\x81\x02hi"
    with pytest.raises(ParseFailed, match="unmasked"):
        server_parses(built)


@pytest.mark.parametrize("rsv, bit", [(4, 0x40), (2, 0x20), (1, 0x10)])
def test_reserved_bits_without_an_extension_are_refused(rsv, bit):
    built = wf.frame(wf.OP_TEXT, b"x", rsv=rsv)
    assert built[0] & 0x70 == bit
    with pytest.raises(ParseFailed, match="[Rr]eserved"):
        server_parses(built)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_built_and_refused(opcode):
    with pytest.raises(ParseFailed):
        server_parses(wf.frame(opcode))


def test_pieces_reassemble_with_control_frames_between_them():
    text = "ünïcödé fragments " * 20
    first, second, third = wf.pieces(wf.OP_TEXT, text.encode(), 150)
    frames = server_parses(first, wf.frame(wf.OP_PING, b"p"), second, third)
    assert [f.opcode for f in frames] == [Opcode.TEXT, Opcode.PING, Opcode.TEXT, Opcode.TEXT]
    data = [f for f in frames if f.opcode != Opcode.PING]
    assert [f.message_finished for f in data] == [False, False, True]
    assert "".join(f.payload for f in data) == text
    assert [p[0] & 0x0F for p in (first, second, third)] == [wf.OP_TEXT, wf.OP_CONT, wf.OP_CONT]
    assert [bool(p[0] & 0x80) for p in (first, second, third)] == [False, False, True]
    assert b"".join((first, second, third))[0] == wf.fragments(wf.OP_TEXT, text.encode(),
                                                               150)[0]
    assert len(wf.pieces(wf.OP_BINARY, b"", 5)) == 1


def test_a_continuation_without_a_start_is_refused():
    with pytest.raises(ParseFailed):
        server_parses(wf.frame(wf.OP_CONT, b"x"))


@pytest.mark.parametrize("code, reason", [(1000, ""), (1001, "going away"), (3000, "ünï"),
                                          (4999, "x" * 123)])
def test_close_payloads(code, reason):
    [parsed] = server_parses(wf.close(code, reason.encode()))
    assert parsed.opcode == Opcode.CLOSE
    assert parsed.payload == (code, reason)


def test_close_payloads_an_rfc_parser_refuses():
    assert server_parses(wf.close(None))[0].payload[0] == 1005          # no code: allowed
    with pytest.raises(ParseFailed, match="1 byte"):
        server_parses(wf.frame(wf.OP_CLOSE, b"\x03"))
    with pytest.raises(ParseFailed):
        server_parses(wf.close(1005))                                   # local only
    with pytest.raises(ParseFailed, match="reason"):
        server_parses(wf.close(1000, b"\xff\xfe"))                      # invalid UTF-8
    with pytest.raises(ParseFailed):
        server_parses(wf.close(999))


def test_a_lying_length_leaves_the_frame_unfinished():
    built = wf.frame(wf.OP_BINARY, b"abc", declared=10)
    assert built[1] & 0x7F == 10
    [parsed] = server_parses(built)
    assert parsed.payload == b"abc" and not parsed.frame_finished


def test_compressed_messages_inflate_in_an_rfc_7692_parser():
    server_side = PerMessageDeflate()
    server_side.accept("permessage-deflate")
    compressor = zlib.compressobj(wbits=-15)
    once = os.urandom(2000).hex().encode()
    messages = [once, os.urandom(300), once]        # the third refers back into the context
    built = [wf.frame(wf.OP_BINARY, wf.deflated(m, compressor), rsv=4) for m in messages]
    assert len(built[2]) < len(built[0]) / 10
    frames = server_parses(*built, extensions=[server_side])
    assert [f.payload for f in frames] == messages


def test_the_inflater_undoes_deflated_with_and_without_context_takeover():
    for takeover in (True, False):
        inflater = wf.Inflater(takeover=takeover)
        compressor = zlib.compressobj(wbits=-15)
        for m in (b"abc" * 1000, b"x", b"abc" * 1000):
            data = wf.deflated(m, compressor if takeover else None)
            assert inflater.decompress(data) == m


# ----------------------------------------------------------------------------------- the reader


def test_parse_frame_reads_what_an_rfc_writer_sends():
    server = FrameProtocol(client=False, extensions=[])
    wire = b"".join([server.send_data("hello"), server.send_data(b"\x00" * 70_000),
                     server.send_data("frag", fin=False), server.ping(b"p"),
                     server.send_data("ment", fin=True), server.close(1001, "bye")])
    frames, at = [], 0
    while at < len(wire):
        f, used = wf.parse_frame(wire[at:])
        frames.append(f)
        at += used
    assert [(f.opcode, f.fin) for f in frames] == [
        (wf.OP_TEXT, True), (wf.OP_BINARY, True), (wf.OP_TEXT, False), (wf.OP_PING, True),
        (wf.OP_CONT, True), (wf.OP_CLOSE, True)]
    assert frames[0].text == "hello" and not frames[0].masked
    assert frames[1].payload == b"\x00" * 70_000 and frames[1].header_size == 10
    assert frames[5].close_code == 1001 and frames[5].close_reason == "bye"
    # the same as the older list reader sees it
    assert [(o, p) for o, _, _, p in wf.parse_server_frames(wire)] == \
        [(f.opcode, f.payload) for f in frames]


def test_server_frames_on_a_socket_pair_byte_by_byte():
    a, b = socket.socketpair()
    with a, b:
        server = FrameProtocol(client=False, extensions=[])
        wire = server.send_data("ab", fin=False) + server.pong(b"x") + \
            server.send_data("cd", fin=True) + server.close(1000)
        reader = wf.ServerFrames(b, leftover=wire[:1])
        for byte in wire[1:]:
            a.sendall(bytes([byte]))
        opcode, data, controls = reader.message()
        assert (opcode, data) == (wf.OP_TEXT, b"abcd")
        assert [c.opcode for c in controls] == [wf.OP_PONG]
        assert reader.next().close_code == 1000
        a.close()
        with pytest.raises(ConnectionError):
            reader.next()
        assert reader.closed()


def test_a_masked_frame_is_reported_as_masked():
    f, _ = wf.parse_frame(wf.frame(wf.OP_BINARY, b"abc"))
    assert f.masked and f.payload == b"abc" and f.header_size == 6


def test_incomplete_frames_are_none():
    built = wf.frame(wf.OP_BINARY, b"x" * 300, masked=False)
    for cut in (0, 1, 3, len(built) - 1):
        assert wf.parse_frame(built[:cut]) is None
    assert wf.parse_frame(built)[1] == len(built)


def test_the_accept_key_of_rfc_6455_section_1_3():
    assert wf.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
