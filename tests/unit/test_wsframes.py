"""The WebSocket frame room (fastsock/_wsframes.pyx), sans-IO: client frames in, events out;
server frames written. The tests follow the Autobahn|Testsuite's case categories (case 1
framing, 2 ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close, 9 limits;
autobahntestsuite 0.8.2, autobahntestsuite/case/caseN_*.py), each named after the case it
follows; what Autobahn expects of a server's answer (an echo, a pong, a close) is the
connection's, so here the reader's events say it: the message, the ping to answer, or the
failure with its close code. Every stream is also read in other splits (whole, byte by byte,
random reads): the events must not change."""
from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fastsock._wsframes import (FrameReader, close_frame, message_frame, server_frame,
                                valid_close_code)
from tests.support.wsframes import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                                    close, deflated, fragments, frame, parse_server_frames)

MIB = 1 << 20
LIMIT = 64 * MIB


def reader(max_message: int = LIMIT, max_frame: int = LIMIT) -> FrameReader:
    return FrameReader(max_message, max_frame)


def read(stream: bytes, **limits: int) -> list[tuple]:
    """The events of a stream, which must be the same however it is cut into reads."""
    whole = reader(**limits).feed(stream)
    assert reader(**limits).feed(stream, 1) == whole, "byte by byte differs"
    rng = random.Random(len(stream))
    for size in (2, 3, 7, 997, rng.randrange(1, 200)):
        assert reader(**limits).feed(stream, size) == whole, f"reads of {size} differ"
    r, got, i = reader(**limits), [], 0     # uneven reads, through separate feed() calls
    while i < len(stream) and not (got and got[-1][0] == "fail"):   # a failure: no more
        step = rng.randrange(1, 40)
        got += r.feed(stream[i:i + step])
        i += step
    assert got == whole, "random feeds differ"
    return whole


def fail(code: int) -> tuple:
    """A failure event with this close code (its reason is for the log: not compared)."""
    return ("fail", code)


def codes(events: list[tuple]) -> list[tuple]:
    return [e[:2] if e[0] == "fail" else e for e in events]


# --- case 1: framing -------------------------------------------------------------------------

SIZES = [0, 125, 126, 127, 128, 65535, 65536]


@pytest.mark.parametrize("n", SIZES)
def test_case_1_1_text_message_of_each_length_form(n: int) -> None:
    payload = "*" * n
    assert read(frame(OP_TEXT, payload.encode())) == [("text", payload)]


@pytest.mark.parametrize("n", SIZES)
def test_case_1_2_binary_message_of_each_length_form(n: int) -> None:
    payload = b"\xfe" * n
    assert read(frame(OP_BINARY, payload)) == [("binary", payload)]


def test_case_1_1_8_and_1_2_8_64k_in_chops_of_997() -> None:
    for opcode, payload, event in ((OP_TEXT, b"*" * 65536, "*" * 65536),
                                   (OP_BINARY, b"\xfe" * 65536, b"\xfe" * 65536)):
        kind = "text" if opcode == OP_TEXT else "binary"
        assert reader().feed(frame(opcode, payload), 997) == [(kind, event)]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_case_9_1_6_and_9_2_6_16_mib_whole_and_byte_by_byte(opcode: int) -> None:
    payload = (b"*" if opcode == OP_TEXT else b"\xfe") * (16 * MIB)
    stream = frame(opcode, payload)
    want = payload.decode() if opcode == OP_TEXT else payload
    for read_size in (0, 1, 997, 65536):
        [(kind, got)] = reader().feed(stream, read_size)
        assert got == want, f"read size {read_size}"


def test_length_forms_that_are_not_minimal_are_read() -> None:
    # RFC 6455 §5.2: a sender MUST use the minimal form; Autobahn has no case that refuses a
    # longer one, and a longer one is unambiguous: read, as websockets and wsproto do
    for form in (16, 64):
        assert read(frame(OP_TEXT, b"hi", length_form=form)) == [("text", "hi")]


def test_an_unmasked_client_frame_fails_1002() -> None:
    # RFC 6455 §5.1: a server MUST close on a frame that is not masked
    for opcode in (OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE):
        assert codes(read(frame(opcode, b"x", masked=False))) == [fail(1002)]


def test_a_64_bit_length_with_its_high_bit_set_fails_1002() -> None:
    stream = frame(OP_BINARY, b"", length_form=64, declared=1 << 63)
    assert codes(read(stream)) == [fail(1002)]


def test_the_mask_phase_holds_across_reads_and_frames() -> None:
    payload = bytes(range(256)) * 41          # 10496 bytes: not a multiple of 4 or 8 per read
    stream = frame(OP_BINARY, payload, fin=False) + frame(OP_CONT, payload[:13])
    assert read(stream) == [("binary", payload + payload[:13])]


def test_unmasking_at_every_length_and_phase() -> None:
    # the unmasker steps 32, then 8, then 1 byte: every length around those, from reads that
    # leave the mask at each phase
    rng = random.Random(7)
    for n in range(0, 100):
        payload = bytes(rng.randrange(256) for _ in range(n))
        stream = frame(OP_BINARY, payload, mask=bytes(rng.randrange(256) for _ in range(4)))
        for size in (0, 1, 3, 5, 7, 9, 31, 33):
            assert reader().feed(stream, size) == [("binary", payload)], (n, size)


# --- case 2: ping and pong -------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"Hello, world!", b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff",
                                     b"\xfe" * 125], ids=["2.1", "2.2", "2.3", "2.4"])
def test_case_2_1_to_2_4_ping_gives_its_payload_to_answer(payload: bytes) -> None:
    assert read(frame(OP_PING, payload)) == [("ping", payload)]


def test_case_2_5_ping_of_126_bytes_fails_1002_at_its_header() -> None:
    stream = frame(OP_PING, b"\xfe" * 126)
    assert codes(reader().feed(stream[:2])) == [fail(1002)]
    assert codes(read(stream)) == [fail(1002)]


def test_case_2_6_ping_of_125_bytes_byte_by_byte() -> None:
    assert reader().feed(frame(OP_PING, b"\xfe" * 125), 1) == [("ping", b"\xfe" * 125)]


def test_case_2_7_to_2_9_pongs_are_events_and_a_ping_after_them_too() -> None:
    stream = (frame(OP_PONG) + frame(OP_PONG, b"unsolicited pong payload")
              + frame(OP_PING, b"ping payload"))
    assert read(stream) == [("pong", b""), ("pong", b"unsolicited pong payload"),
                            ("ping", b"ping payload")]


def test_case_2_10_and_2_11_ten_pings() -> None:
    stream = b"".join(frame(OP_PING, b"payload-%d" % i) for i in range(10))
    assert read(stream) == [("ping", b"payload-%d" % i) for i in range(10)]


def test_a_control_frame_is_not_read_before_it_is_whole() -> None:
    stream = frame(OP_PING, b"x" * 100)
    r = reader()
    assert r.feed(stream[:50]) == []
    assert r.feed(stream[50:]) == [("ping", b"x" * 100)]


# --- case 3: reserved bits -------------------------------------------------------------------

@pytest.mark.parametrize("rsv", range(1, 8))
def test_case_3_x_reserved_bits_without_an_extension_fail_1002(rsv: int) -> None:
    # 3.1 text RSV=1, 3.2-3.4 after a good message and before a ping that gets no pong,
    # 3.5 binary, 3.6 ping, 3.7 close (Autobahn's rsv is the 3-bit field: 4 is RSV1)
    hello = frame(OP_TEXT, b"Hello, world!")
    for opcode in (OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE):
        stream = hello + frame(opcode, b"Hello, world!", rsv=rsv) + frame(OP_PING)
        assert codes(read(stream)) == [("text", "Hello, world!"), fail(1002)]


def test_reserved_bits_fail_at_the_first_two_bytes() -> None:
    assert codes(reader().feed(frame(OP_TEXT, b"x" * 1000, rsv=2)[:2])) == [fail(1002)]


# --- case 4: opcodes -------------------------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_case_4_1_and_4_2_reserved_opcodes_fail_1002(opcode: int) -> None:
    hello = frame(OP_TEXT, b"Hello, world!")
    for payload in (b"", b"reserved opcode payload"):
        stream = hello + frame(opcode, payload) + frame(OP_PING)
        assert codes(read(stream)) == [("text", "Hello, world!"), fail(1002)]


# --- case 5: fragmentation -------------------------------------------------------------------

def test_case_5_1_and_5_2_fragmented_ping_or_pong_fails_1002() -> None:
    for opcode in (OP_PING, OP_PONG):
        stream = frame(opcode, b"fragment1", fin=False) + frame(OP_CONT, b"fragment2")
        assert codes(read(stream)) == [fail(1002)]


def test_case_5_3_to_5_5_text_in_two_fragments() -> None:
    stream = frame(OP_TEXT, b"fragment1", fin=False) + frame(OP_CONT, b"fragment2")
    assert read(stream) == [("text", "fragment1fragment2")]


def test_case_5_6_to_5_8_a_ping_between_fragments() -> None:
    stream = (frame(OP_TEXT, b"fragment1", fin=False) + frame(OP_PING, b"ping payload")
              + frame(OP_CONT, b"fragment2"))
    assert read(stream) == [("ping", b"ping payload"), ("text", "fragment1fragment2")]


@pytest.mark.parametrize("fin", [True, False], ids=["5.9-5.11", "5.12-5.14"])
def test_case_5_9_to_5_14_continuation_with_nothing_to_continue_fails_1002(fin: bool) -> None:
    stream = (frame(OP_CONT, b"non-continuation payload", fin=fin)
              + frame(OP_TEXT, b"Hello, world!"))
    assert codes(read(stream)) == [fail(1002)]


def test_case_5_15_a_continuation_after_the_message_ended_fails_1002() -> None:
    stream = (frame(OP_TEXT, b"fragment1", fin=False) + frame(OP_CONT, b"fragment2")
              + frame(OP_CONT, b"fragment3", fin=False) + frame(OP_TEXT, b"fragment4"))
    assert codes(read(stream)) == [("text", "fragment1fragment2"), fail(1002)]


@pytest.mark.parametrize("fin", [False, True], ids=["5.16", "5.17"])
def test_case_5_16_and_5_17_repeated_orphan_continuations_fail_1002(fin: bool) -> None:
    one = (frame(OP_CONT, b"fragment1", fin=fin) + frame(OP_TEXT, b"fragment2", fin=False)
           + frame(OP_CONT, b"fragment3"))
    assert codes(read(one + one)) == [fail(1002)]


def test_case_5_18_a_new_text_frame_inside_a_message_fails_1002() -> None:
    stream = frame(OP_TEXT, b"fragment1", fin=False) + frame(OP_TEXT, b"fragment2")
    assert codes(read(stream)) == [fail(1002)]


def test_case_5_19_and_5_20_pings_between_five_fragments() -> None:
    f = [b"fragment%d" % i for i in range(1, 6)]
    stream = (frame(OP_TEXT, f[0], fin=False) + frame(OP_CONT, f[1], fin=False)
              + frame(OP_PING, b"pongme 1!") + frame(OP_CONT, f[2], fin=False)
              + frame(OP_CONT, f[3], fin=False) + frame(OP_PING, b"pongme 2!")
              + frame(OP_CONT, f[4]))
    assert read(stream) == [("ping", b"pongme 1!"), ("ping", b"pongme 2!"),
                            ("text", b"".join(f).decode())]


def test_binary_fragments_and_empty_ones() -> None:
    stream = (frame(OP_BINARY, b"", fin=False) + frame(OP_CONT, b"\x00\xff", fin=False)
              + frame(OP_CONT, b""))
    assert read(stream) == [("binary", b"\x00\xff")]


# --- case 6: UTF-8 ---------------------------------------------------------------------------

def test_case_6_1_empty_text_whole_and_in_empty_fragments() -> None:
    assert read(frame(OP_TEXT, b"")) == [("text", "")]
    assert read(fragments(OP_TEXT, b"", 1) + frame(OP_TEXT, b"", fin=False)
                + frame(OP_CONT, b"", fin=False) + frame(OP_CONT, b"")) == [("text", "")] * 2
    stream = (frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, b"middle frame payload", fin=False)
              + frame(OP_CONT, b""))
    assert read(stream) == [("text", "middle frame payload")]


def test_case_6_2_valid_text_split_inside_code_points() -> None:
    for text in ("Hello-µ@ßöäüàá-UTF-8!!", "κόσμε"):
        raw = text.encode()
        assert read(frame(OP_TEXT, raw)) == [("text", text)]
        assert read(fragments(OP_TEXT, raw, 1)) == [("text", text)]     # 6.2.3, 6.2.4
        assert read(frame(OP_TEXT, raw[:11], fin=False) + frame(OP_CONT, raw[11:])) == [
            ("text", text)]


INVALID_6_3 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"


def test_case_6_3_invalid_text_whole_and_in_1_byte_fragments_fails_1007() -> None:
    assert codes(read(frame(OP_TEXT, INVALID_6_3))) == [fail(1007)]
    assert codes(read(fragments(OP_TEXT, INVALID_6_3, 1))) == [fail(1007)]


PAYLOAD_6_4 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" + b"\xf4\x90\x80\x80" + b"edited"


def test_case_6_4_1_and_6_4_2_fails_fast_at_the_fragment_that_makes_it_invalid() -> None:
    r = reader()
    assert r.feed(frame(OP_TEXT, PAYLOAD_6_4[:11], fin=False)) == []
    assert codes(r.feed(frame(OP_CONT, PAYLOAD_6_4[11:15], fin=False))) == [fail(1007)]
    r = reader()
    assert r.feed(frame(OP_TEXT, PAYLOAD_6_4[:12], fin=False)) == []
    assert codes(r.feed(frame(OP_CONT, PAYLOAD_6_4[12:13], fin=False))) == [fail(1007)]


def test_case_6_4_3_and_6_4_4_fails_fast_inside_one_frame_before_its_end_arrives() -> None:
    stream = frame(OP_TEXT, PAYLOAD_6_4)
    head = len(stream) - len(PAYLOAD_6_4)
    r = reader()
    assert r.feed(stream[:head + 12]) == []         # valid so far: F4 may start a code point
    assert codes(r.feed(stream[head + 12:head + 13])) == [fail(1007)]   # 90: no longer


# Markus Kuhn's UTF-8 decoder capability test, as Autobahn's case 6.5-6.23 lists it
# (autobahntestsuite/case/case6_x_x.py, createUtf8TestSequences): (valid, bytes)
UTF8_SEQUENCES: list[tuple[bool, bytes]] = [
    (True, b"hello\x24world"), (True, b"hello\xc2\xa2world"), (True, b"hello\xe2\x82\xacworld"),
    (True, b"hello\xf0\xa4\xad\xa2world"), (True, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
    # 2.1 first, 2.2 last possible sequence of each length; then beyond U+10FFFF
    (True, b"\x00"), (True, b"\xc2\x80"), (True, b"\xe0\xa0\x80"), (True, b"\xf0\x90\x80\x80"),
    (False, b"\xf8\x88\x80\x80\x80"), (False, b"\xfc\x84\x80\x80\x80\x80"),
    (True, b"\x7f"), (True, b"\xdf\xbf"), (True, b"\xef\xbf\xbf"), (True, b"\xf4\x8f\xbf\xbf"),
    (False, b"\xf7\xbf\xbf\xbf"), (False, b"\xfb\xbf\xbf\xbf\xbf"),
    (False, b"\xfd\xbf\xbf\xbf\xbf\xbf"),
    # 2.3 other boundary conditions
    (True, b"\xed\x9f\xbf"), (True, b"\xee\x80\x80"), (True, b"\xef\xbf\xbd"),
    (True, b"\xf4\x8f\xbf\xbf"), (False, b"\xf4\x90\x80\x80"),
    # 3.1 unexpected continuation bytes
    (False, b"\x80"), (False, b"\xbf"), (False, b"\x80\xbf"), (False, b"\x80\xbf\x80"),
    (False, b"\x80\xbf\x80\xbf"), (False, b"\x80\xbf\x80\xbf\x80"),
    (False, b"\x80\xbf\x80\xbf\x80\xbf"), (False, bytes(range(0x80, 0xbf))),
    # 3.2 lonely start characters, each followed by a space
    *[(False, b"".join(bytes([c, 0x20]) for c in range(lo, hi)))
      for lo, hi in ((0xc0, 0xdf), (0xe0, 0xef), (0xf0, 0xf7), (0xf8, 0xfb), (0xfc, 0xfd))],
    # 3.3 sequences with the last continuation byte missing, 3.4 all of them together
    *[(False, k) for k in (b"\xc0", b"\xe0\x80", b"\xf0\x80\x80", b"\xf8\x80\x80\x80",
                           b"\xfc\x80\x80\x80\x80", b"\xdf", b"\xef\xbf", b"\xf7\xbf\xbf",
                           b"\xfb\xbf\xbf\xbf", b"\xfd\xbf\xbf\xbf\xbf")],
    (False, b"\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf"
            b"\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf"),
    # 3.5 impossible bytes
    (False, b"\xfe"), (False, b"\xff"), (False, b"\xfe\xfe\xff\xff"),
    # 4.1 overlong ASCII, 4.2 maximum overlongs, 4.3 overlong NUL
    (False, b"\xc0\xaf"), (False, b"\xe0\x80\xaf"), (False, b"\xf0\x80\x80\xaf"),
    (False, b"\xf8\x80\x80\x80\xaf"), (False, b"\xfc\x80\x80\x80\x80\xaf"),
    (False, b"\xc1\xbf"), (False, b"\xe0\x9f\xbf"), (False, b"\xf0\x8f\xbf\xbf"),
    (False, b"\xf8\x87\xbf\xbf\xbf"), (False, b"\xfc\x83\xbf\xbf\xbf\xbf"),
    (False, b"\xc0\x80"), (False, b"\xe0\x80\x80"), (False, b"\xf0\x80\x80\x80"),
    (False, b"\xf8\x80\x80\x80\x80"), (False, b"\xfc\x80\x80\x80\x80\x80"),
    # 5.1 single and 5.2 paired UTF-16 surrogates
    *[(False, s) for s in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80", b"\xed\xaf\xbf",
                           b"\xed\xb0\x80", b"\xed\xbe\x80", b"\xed\xbf\xbf")],
    *[(False, hi + lo) for hi in (b"\xed\xa0\x80", b"\xed\xad\xbf", b"\xed\xae\x80",
                                  b"\xed\xaf\xbf") for lo in (b"\xed\xb0\x80", b"\xed\xbf\xbf")],
    # 5.3 non-characters and specials: valid UTF-8
    (True, b"\xef\xbf\xbe"), (True, b"\xef\xbf\xbf"),
    *[(True, z1 + z2 + b"\xbf" + z3) for z1 in (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
      for z2 in (b"\x8f", b"\x9f", b"\xaf", b"\xbf") for z3 in (b"\xbe", b"\xbf")
      if (z1 != b"\xf4" or z2 == b"\x8f") and z1 + z2 != b"\xf0\x8f"],
    *[(True, b"\xef\xbf" + bytes([c])) for c in range(0xb9, 0xc0)],
]


@pytest.mark.parametrize("valid,raw", UTF8_SEQUENCES, ids=lambda v: v.hex() if
                         isinstance(v, bytes) else str(v))
def test_case_6_5_to_6_23_kuhns_sequences_whole_and_in_1_byte_fragments(valid: bool,
                                                                        raw: bytes) -> None:
    assert decodes(raw) == valid, "the table above, transcribed wrong"
    want = [("text", raw.decode())] if valid else [fail(1007)]
    assert codes(read(frame(OP_TEXT, raw))) == want
    assert codes(read(fragments(OP_TEXT, raw, 1))) == want
    # valid text cut anywhere stays valid while the message is open; a truncated code point at
    # the message's end is not valid
    assert codes(read(close(1000, raw))) == ([("close", 1000, raw.decode())] if valid else
                                             [fail(1007)])


def test_every_code_point_in_one_message_and_every_surrogate_refused() -> None:
    text = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    raw = text.encode()
    assert reader().feed(frame(OP_TEXT, raw)) == [("text", text)]
    assert reader().feed(frame(OP_TEXT, raw), 4093) == [("text", text)]
    for c in range(0xD800, 0xE000, 7):
        bad = b"ok" + chr(c).encode("utf-8", "surrogatepass") + b"ok"
        assert codes(reader().feed(frame(OP_TEXT, bad))) == [fail(1007)]


def decodes(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _completes(prefix: bytes) -> bool:
    """Whether some bytes after prefix make it valid UTF-8 (CPython's decoder judges): the
    next one any continuation byte, those after it 0x80."""
    for tail in [b""] + [bytes([c]) + b"\x80" * j for c in range(0x80, 0xC0) for j in range(3)]:
        try:
            (prefix + tail).decode()
            return True
        except UnicodeDecodeError:
            pass
    return False


def first_invalid(raw: bytes) -> int | None:
    """The index of the byte at which raw stops being a prefix of valid UTF-8, or None.
    (Not CPython's incremental decoder's verdict: it takes ED A0, a surrogate's start, and
    refuses only at the third byte; the reader fails at A0, as RFC 6455 §8.1 asks.)"""
    for k in range(1, len(raw) + 1):
        if not _completes(raw[:k]):
            return k - 1
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=6), st.text(max_size=4).map(str.encode)),
                max_size=8).map(b"".join).filter(bool))
@example(raw=b"\xed\xa0\x00")         # a surrogate's start: invalid at its second byte
def test_utf8_agrees_with_cpython_and_fails_at_the_first_invalid_byte(raw: bytes) -> None:
    stream = frame(OP_TEXT, raw)
    head = len(stream) - len(raw)
    r = reader()
    assert r.feed(stream[:head]) == []
    bad = first_invalid(raw)
    for i in range(len(raw)):
        events = r.feed(stream[head + i:head + i + 1])
        if events:
            break
    if bad is not None:
        assert codes(events) == [fail(1007)] and i == bad
        return
    try:
        text = raw.decode()
    except UnicodeDecodeError:              # a valid prefix, cut inside its last code point
        assert codes(events) == [fail(1007)] and i == len(raw) - 1
    else:
        assert events == [("text", text)]


# --- case 7: close ---------------------------------------------------------------------------

def test_case_7_1_1_a_message_then_a_close() -> None:
    stream = frame(OP_TEXT, b"Hello World!") + close(1000)
    assert read(stream) == [("text", "Hello World!"), ("close", 1000, "")]


def test_case_7_1_5_a_close_between_fragments() -> None:
    stream = frame(OP_TEXT, b"fragment1", fin=False) + close(1000)
    assert read(stream) == [("close", 1000, "")]


def test_case_7_3_1_close_without_payload_is_1005() -> None:
    assert read(close()) == [("close", 1005, "")]


def test_case_7_3_2_close_with_1_byte_payload_fails_1002() -> None:
    assert codes(read(frame(OP_CLOSE, b"a"))) == [fail(1002)]


@pytest.mark.parametrize("reason", ["", "Hello World!", "*" * 123, "κόσμε"])
def test_case_7_3_3_to_7_3_5_close_with_a_code_and_a_reason(reason: str) -> None:
    assert read(close(1000, reason.encode())) == [("close", 1000, reason)]


def test_case_7_3_6_close_reason_of_124_bytes_fails_1002() -> None:
    assert codes(read(close(1000, b"*" * 124))) == [fail(1002)]


def test_case_7_5_1_close_reason_not_utf8_fails_1007() -> None:
    assert codes(read(close(1000, INVALID_6_3))) == [fail(1007)]


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_case_7_7_valid_close_codes(code: int) -> None:
    assert valid_close_code(code)
    assert read(close(code)) == [("close", code, "")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_case_7_9_and_7_13_invalid_close_codes_fail_1002(code: int) -> None:
    assert not valid_close_code(code)
    assert codes(read(close(code))) == [fail(1002)]


# --- case 9: limits (Autobahn sends up to 16 MiB; the limits are ours) ----------------------

def test_a_frame_over_max_frame_fails_1009_at_its_header() -> None:
    stream = frame(OP_BINARY, b"\xfe" * 70000)
    assert codes(reader(max_frame=65536).feed(stream[:14])) == [fail(1009)]
    assert codes(read(frame(OP_BINARY, b"x" * 65537), max_frame=65536)) == [fail(1009)]
    assert read(frame(OP_BINARY, b"x" * 65536), max_frame=65536) == [("binary", b"x" * 65536)]


def test_a_message_over_max_message_fails_1009_at_the_header_that_passes_it() -> None:
    r = reader(max_message=1000)
    assert r.feed(frame(OP_TEXT, b"a" * 600, fin=False)) == []
    assert r.feed(frame(OP_CONT, b"a" * 400, fin=False)) == []
    assert codes(r.feed(frame(OP_CONT, b"a" * 1, fin=True)[:6])) == [fail(1009)]
    stream = frame(OP_TEXT, b"a" * 600, fin=False) + frame(OP_CONT, b"a" * 400)
    assert read(stream, max_message=1000) == [("text", "a" * 1000)]


@pytest.mark.parametrize("size", [64, 256, 1024, 4096, 16384, 65536, 262144, MIB, 4 * MIB])
def test_case_9_3_and_9_4_4_mib_in_fragments(size: int) -> None:
    payload = b"*" * (4 * MIB)
    assert reader().feed(fragments(OP_TEXT, payload, size)) == [("text", payload.decode())]
    payload = b"\xfe" * (4 * MIB)
    assert reader().feed(fragments(OP_BINARY, payload, size)) == [("binary", payload)]


@pytest.mark.parametrize("chop", [64, 128, 256, 512, 1024, 2048, 4096])
def test_case_9_5_and_9_6_1_mib_in_chops(chop: int) -> None:
    for opcode, payload, want in ((OP_TEXT, b"*" * MIB, "*" * MIB),
                                  (OP_BINARY, b"\xfe" * MIB, b"\xfe" * MIB)):
        [(_, got)] = reader().feed(frame(opcode, payload), chop)
        assert got == want


def test_the_limits_must_be_positive() -> None:
    for limits in ((0, 1), (1, 0), (-1, 1)):
        with pytest.raises(ValueError, match="positive"):
            FrameReader(*limits)


def test_permessage_deflate_not_agreed_rsv1_fails_1002() -> None:
    assert codes(read(frame(OP_TEXT, b"x", rsv=4))) == [fail(1002)]


# --- after a failure, nothing; random bytes never crash ------------------------------------

def test_after_a_failure_every_call_fails_again() -> None:
    r = reader()
    assert codes(r.feed(frame(OP_TEXT, b"x", masked=False))) == [fail(1002)]
    assert codes(r.feed(frame(OP_TEXT, b"fine"))) == [fail(1002)]
    assert codes(r.feed(b"")) == [fail(1002)]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 17))
def test_random_bytes_never_crash_and_nothing_follows_a_failure(data: bytes, size: int) -> None:
    r = FrameReader(200, 100)
    events = r.feed(data, size)
    kinds = [e[0] for e in events]
    assert "fail" not in kinds[:-1]
    if kinds and kinds[-1] == "fail":
        assert events[-1][1] in (1002, 1007, 1009)
        assert r.feed(b"\x81\x80abcd") == [events[-1]]
    assert codes(events) == codes(FrameReader(200, 100).feed(data))


MESSAGES = st.one_of(st.text(max_size=300).map(lambda t: (OP_TEXT, t.encode(), t)),
                     st.binary(max_size=300).map(lambda b: (OP_BINARY, b, b)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(MESSAGES, st.integers(1, 400), st.booleans()), max_size=6),
       st.integers(1, 64))
def test_messages_fragmented_anywhere_with_pings_between_read_the_same(
        messages: list, size: int) -> None:
    stream, want = b"", []
    for (opcode, raw, value), frag, with_ping in messages:
        parts = [raw[i:i + frag] for i in range(0, len(raw), frag)] or [b""]
        for i, part in enumerate(parts):
            stream += frame(opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1)
            if with_ping and i < len(parts) - 1:
                stream += frame(OP_PING, b"p")
                want.append(("ping", b"p"))
        want.append(("text" if opcode == OP_TEXT else "binary", value))
    assert reader().feed(stream) == want
    assert reader().feed(stream, size) == want


# --- the writers -----------------------------------------------------------------------------

@pytest.mark.parametrize("n,head", [(0, b"\x82\x00"), (125, b"\x82\x7d"),
                                    (126, b"\x82\x7e\x00\x7e"), (65535, b"\x82\x7e\xff\xff"),
                                    (65536, b"\x82\x7f" + struct.pack("!Q", 65536))])
def test_write_frame_uses_the_minimal_length_form(n: int, head: bytes) -> None:
    out = server_frame(OP_BINARY, b"\xfe" * n)
    assert out == head + b"\xfe" * n
    assert parse_server_frames(out) == [(OP_BINARY, True, False, b"\xfe" * n)]


def test_write_frame_sets_rsv1_when_asked() -> None:
    assert server_frame(OP_TEXT, b"x", True) == b"\xc1\x01x"


def test_write_message_text_and_binary_kinds() -> None:
    assert message_frame("héllo ✓") == b"\x81" + bytes([len("héllo ✓".encode())]) + (
        "héllo ✓".encode())
    for kind in (bytes, bytearray):
        assert message_frame(kind(b"\x00\xff")) == b"\x82\x02\x00\xff"
    assert message_frame(memoryview(b"abcdef")[1:4]) == b"\x82\x03bcd"
    big = "x" * 70000
    assert parse_server_frames(message_frame(big)) == [(OP_TEXT, True, False, big.encode())]


@pytest.mark.parametrize("bad", [1, None, {"a": 1}, ["x"], 1.5])
def test_write_message_refuses_other_types_naming_them(bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__):
        message_frame(bad)  # type: ignore[arg-type]


def test_write_message_refuses_a_lone_surrogate() -> None:
    with pytest.raises(UnicodeEncodeError):
        message_frame("a\ud800b")


def test_what_the_writer_writes_the_reader_reads() -> None:
    for message in ("", "κόσμε" * 1000, b"", b"\x00" * 70000):
        wire = message_frame(message)
        [(opcode, fin, rsv1, payload)] = parse_server_frames(wire)
        got = reader().feed(frame(opcode, payload))
        assert got == [("text" if isinstance(message, str) else "binary", message)]


def test_write_close_code_and_reason() -> None:
    assert close_frame(1000) == b"\x88\x02\x03\xe8"
    assert close_frame(4321, "bye") == b"\x88\x05\x10\xe1bye"


@pytest.mark.parametrize("reason,kept", [("*" * 200, 123), ("é" * 100, 122), ("€" * 50, 123),
                                         ("😀" * 40, 120), ("a" + "😀" * 40, 121)])
def test_write_close_cuts_the_reason_at_a_code_point_within_123_bytes(reason: str,
                                                                      kept: int) -> None:
    [(opcode, _, _, payload)] = parse_server_frames(close_frame(1001, reason))
    assert opcode == OP_CLOSE and payload[:2] == b"\x03\xe9" and len(payload) == 2 + kept
    assert reason.encode().startswith(payload[2:])
    assert reader().feed(close(1001, payload[2:])) == [("close", 1001, payload[2:].decode())]


@pytest.mark.parametrize("code", [1005, 1006, 1015])
def test_write_close_never_writes_1005_1006_1015(code: int) -> None:
    assert close_frame(code, "ignored") == b"\x88\x00"


@pytest.mark.parametrize("code", [0, 999, 1004, 1016, 2999, 5000, 65536, -1])
def test_write_close_refuses_a_code_no_peer_may_send(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        close_frame(code)


def test_write_close_reason_with_a_lone_surrogate_is_replaced_not_refused() -> None:
    [(_, _, _, payload)] = parse_server_frames(close_frame(1000, "a\udc80b"))
    assert payload == b"\x03\xe8a?b"


# --- permessage-deflate (RFC 7692): the compressed path, through _wsdeflate's real class ------

def agreed(**kw: object):  # type: ignore[no-untyped-def]
    """The PerMessageDeflate of a plain offer, as the handshake agrees it."""
    from fastsock._wsdeflate import negotiate
    try:
        _, pmd = negotiate("permessage-deflate", **kw)
    except NotImplementedError:             # the placeholder, before _wsdeflate's merge
        pytest.skip("fastsock._wsdeflate is the placeholder: the compressed path waits for it")
    assert pmd is not None
    return pmd


def zreader(max_message: int = LIMIT, max_frame: int = LIMIT, **kw: object) -> FrameReader:
    return FrameReader(max_message, max_frame, agreed(**kw))


def zread(stream: bytes, **limits: int) -> list[tuple]:
    """As read(): the same events whole, byte by byte and in other reads (one reader each)."""
    whole = zreader(**limits).feed(stream)
    for size in (1, 3, 997):
        assert zreader(**limits).feed(stream, size) == whole, f"reads of {size} differ"
    return whole


RSV1 = 4


@pytest.mark.parametrize("text", ["", "Hello", "κόσμε " * 2000, "*" * 70000])
def test_case_12_a_compressed_text_message(text: str) -> None:
    assert zread(frame(OP_TEXT, deflated(text.encode()), rsv=RSV1)) == [("text", text)]


def test_case_12_a_compressed_binary_message_in_fragments_with_a_ping_between() -> None:
    payload = bytes(range(256)) * 300
    z = deflated(payload)
    stream = (frame(OP_BINARY, z[:100], fin=False, rsv=RSV1) + frame(OP_PING, b"p")
              + frame(OP_CONT, z[100:200], fin=False) + frame(OP_CONT, z[200:]))
    assert zread(stream) == [("ping", b"p"), ("binary", payload)]


def test_rsv1_on_a_continuation_frame_fails_1002() -> None:
    z = deflated(b"Hello, world")
    stream = frame(OP_TEXT, z[:3], fin=False, rsv=RSV1) + frame(OP_CONT, z[3:], rsv=RSV1)
    assert codes(zread(stream)) == [fail(1002)]


def test_uncompressed_messages_beside_compressed_ones() -> None:
    stream = (frame(OP_TEXT, b"plain") + frame(OP_TEXT, deflated(b"packed"), rsv=RSV1)
              + frame(OP_BINARY, b"\x00"))
    assert zread(stream) == [("text", "plain"), ("text", "packed"), ("binary", b"\x00")]


def test_context_takeover_across_messages() -> None:
    import zlib
    c = zlib.compressobj(wbits=-15)
    stream = b"".join(frame(OP_TEXT, deflated(b"the same words again", c), rsv=RSV1)
                      for _ in range(3))
    assert zread(stream) == [("text", "the same words again")] * 3


def test_a_compression_bomb_is_1009_before_it_is_inflated() -> None:
    bomb = deflated(b"\x00" * (64 * MIB))       # ~64 KiB on the wire
    assert len(bomb) < 100_000
    r = zreader(max_message=MIB)
    events = r.feed(frame(OP_BINARY, bomb, rsv=RSV1), 4096)
    assert codes(events) == [fail(1009)]


def test_a_message_that_inflates_exactly_to_the_limit_is_read() -> None:
    payload = b"a" * MIB
    assert zreader(max_message=MIB).feed(frame(OP_TEXT, deflated(payload), rsv=RSV1)) == [
        ("text", payload.decode())]
    assert codes(zreader(max_message=MIB - 1).feed(
        frame(OP_TEXT, deflated(payload), rsv=RSV1))) == [fail(1009)]


@pytest.mark.parametrize("bad_at", [0, 40, 63, 64])
def test_compressed_text_past_the_limit_fails_the_same_however_it_is_read(bad_at: int) -> None:
    # one read may inflate past the limit at once, another stop at invalid UTF-8 first (found
    # by fuzz/fuzz_parsers.py's websocket target): the text within the limit is checked first,
    # so invalid UTF-8 there is 1007 in every split, and past it the message is 1009
    text = b"a" * bad_at + b"\xff" + b"b" * 200
    stream = frame(OP_TEXT, deflated(text), rsv=RSV1)
    expected = [fail(1007)] if bad_at < 64 else [fail(1009)]
    assert codes(zreader(max_message=64).feed(stream)) == expected
    for size in (1, 2, 3, 7, 9, 13):
        assert codes(zreader(max_message=64).feed(stream, size)) == expected, size


def test_a_corrupt_compressed_message_fails_1007() -> None:
    assert codes(zread(frame(OP_BINARY, b"\xff\xff\xff\xff\xff", rsv=RSV1))) == [fail(1007)]


def test_compressed_text_not_utf8_fails_1007_before_the_message_ends() -> None:
    import zlib
    c = zlib.compressobj(wbits=-15)
    first = c.compress(b"valid " * 100 + b"\xed\xa0\x80") + c.flush(zlib.Z_SYNC_FLUSH)
    r = zreader()
    assert codes(r.feed(frame(OP_TEXT, first, fin=False, rsv=RSV1))) == [fail(1007)]


def test_max_frame_caps_a_compressed_frame_as_sent() -> None:
    z = deflated(os.urandom(5000))
    assert codes(zreader(max_frame=1000).feed(frame(OP_BINARY, z, rsv=RSV1)[:14])) == [
        fail(1009)]


def test_write_message_compresses_from_compress_from() -> None:
    import zlib
    pmd = agreed()
    text = "compress me " * 100
    [(opcode, fin, rsv1, payload)] = parse_server_frames(message_frame(text, pmd, 64))
    assert (opcode, fin, rsv1) == (OP_TEXT, True, True)
    assert zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == (
        text.encode())
    assert parse_server_frames(message_frame("short", pmd, 64)) == [
        (OP_TEXT, True, False, b"short")]
    [(opcode, _, rsv1, _)] = parse_server_frames(message_frame(b"\x00" * 100, pmd, 64))
    assert (opcode, rsv1) == (OP_BINARY, True)


# --- what a hostile client or a misbehaving app can do ----------------------------------------

def test_a_declared_length_is_not_memory_until_its_bytes_arrive() -> None:
    import tracemalloc
    stream = frame(OP_BINARY, b"x" * 100, declared=60 * MIB)   # 60 MiB declared, 100 sent
    tracemalloc.start()
    try:
        r = reader()
        before = tracemalloc.get_traced_memory()[0]
        assert r.feed(stream) == []
        assert tracemalloc.get_traced_memory()[0] - before < 64 * 1024
    finally:
        tracemalloc.stop()


def test_a_read_message_gives_its_buffer_back() -> None:
    import tracemalloc
    payload = b"y" * MIB
    stream = fragments(OP_BINARY, payload, 4096)
    tracemalloc.start()
    try:
        r = reader()
        before = tracemalloc.get_traced_memory()[0]
        [(_, got)] = r.feed(stream, 1000)
        held = tracemalloc.get_traced_memory()[0] - before - len(got)
        assert held < 64 * 1024, f"{held} bytes held after the message"
        r2 = reader()
        r2.feed(frame(OP_TEXT, b"z" * MIB, fin=False)[:MIB // 2])
        del r2                                  # a reader dropped mid-message frees its buffer
        assert tracemalloc.get_traced_memory()[0] - before - len(got) < 64 * 1024
    finally:
        tracemalloc.stop()


def test_a_failure_gives_the_buffer_back() -> None:
    import tracemalloc
    tracemalloc.start()
    try:
        r = reader()
        before = tracemalloc.get_traced_memory()[0]
        r.feed(frame(OP_BINARY, b"a" * MIB, fin=False) + frame(OP_TEXT, b"b"))
        assert tracemalloc.get_traced_memory()[0] - before < 64 * 1024
    finally:
        tracemalloc.stop()


def test_write_message_refuses_a_memoryview_that_is_not_contiguous() -> None:
    with pytest.raises(BufferError):
        message_frame(memoryview(b"abcdef")[::2])


def test_write_close_without_a_reason() -> None:
    assert close_frame(1000, None) == b"\x88\x02\x03\xe8"  # type: ignore[arg-type]
