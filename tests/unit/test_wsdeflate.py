"""permessage-deflate's room without sockets (RFC 7692): its examples byte for byte, round trips
with Python's zlib as the peer, context takeover on and off, the cap on what a message inflates
to (a bomb), a corrupt stream, zlib's memory, and every kind of offer the negotiation meets."""
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastsock._wsdeflate import PerMessageDeflate, negotiate

HELLO = bytes.fromhex("f248cdc9c90700")             # RFC 7692 §7.2.3.1
TAIL = b"\x00\x00\xff\xff"


class Client:
    """The peer's side, in Python's zlib: compresses as a client does (raw deflate, sync flush,
    the tail stripped) and inflates what the server sends."""

    def __init__(self, bits: int = 15, takeover: bool = True):
        self.bits, self.takeover = bits, takeover
        self.c = zlib.compressobj(6, zlib.DEFLATED, -bits)
        self.d = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        out = self.c.compress(data) + self.c.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        if not self.takeover:
            self.c = zlib.compressobj(6, zlib.DEFLATED, -self.bits)
        return out[:-4]

    def decompress(self, data: bytes) -> bytes:
        return self.d.decompress(data + TAIL)


# --- RFC 7692 §7.2.3's examples


def test_hello_compressed_is_the_rfcs_bytes():
    assert PerMessageDeflate().compress(b"Hello") == HELLO
    assert PerMessageDeflate().decompress(HELLO) == (0, b"Hello")


def test_a_shared_window_refers_back_to_the_last_message():
    pmd = PerMessageDeflate()
    assert pmd.compress(b"Hello") == HELLO
    assert pmd.compress(b"Hello") == bytes.fromhex("f200110000")        # §7.2.3.2
    receiver = PerMessageDeflate()
    assert receiver.decompress(HELLO) == (0, b"Hello")
    assert receiver.decompress(bytes.fromhex("f200110000")) == (0, b"Hello")


def test_no_context_takeover_compresses_each_message_alone():
    pmd = PerMessageDeflate(server_no_context_takeover=True)
    assert pmd.compress(b"Hello") == HELLO and pmd.compress(b"Hello") == HELLO


def test_the_other_examples_inflate():
    cases = {
        "f248cd" "c9c90700": b"Hello",                          # §7.2.3.1, in two fragments
        "0005 00faff 48656c6c6f 00": b"Hello",                  # §7.2.3.4: a stored block
        "f24805000000ffff cac9c90700": b"Hello",                # §7.2.3.5: two blocks
        "00": b"",                                              # §7.2.3.6: an empty message
    }
    for hexed, text in cases.items():
        data = bytes.fromhex(hexed.replace(" ", ""))
        assert PerMessageDeflate().decompress(data) == (0, text), hexed
    pmd = PerMessageDeflate()
    assert pmd.decompress(bytes.fromhex("f248cd"), fin=False) == (0, b"He")
    assert pmd.decompress(bytes.fromhex("c9c90700")) == (0, b"llo")


def test_a_final_block_is_followed_by_the_next_message_with_its_window():
    # §7.2.3.3: BFINAL set (a peer that ends each message with Z_FINISH); what follows the final
    # block in that message is no deflate data, and the next message starts a new stream,
    # which may still refer to the last one's window (here: "Hello" as a preset dictionary)
    c = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=b"Hello")
    refers_back = (c.compress(b"Hello, Hello") + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    final_hello = bytes.fromhex("f348cdc9c90700")
    pmd = PerMessageDeflate()
    assert pmd.decompress(final_hello) == (0, b"Hello")
    assert pmd.decompress(refers_back) == (0, b"Hello, Hello")
    assert pmd.decompress(final_hello) == (0, b"Hello")
    assert pmd.decompress(HELLO) == (0, b"Hello")
    alone = PerMessageDeflate(client_no_context_takeover=True)
    assert alone.decompress(final_hello) == (0, b"Hello")
    assert alone.decompress(refers_back)[0] == -1
    assert PerMessageDeflate().decompress(final_hello + b"\x00\x01", fin=False) == (0, b"Hello")


def test_an_empty_message_compresses_and_comes_back():
    pmd, client = PerMessageDeflate(), Client()
    assert pmd.compress(b"") == b"\x00"          # §7.2.3.6
    assert pmd.compress(b"") == b"\x00"          # (zlib has no second flush of its own)
    for data in (b"", b"abc", b"", b""):
        assert client.decompress(pmd.compress(data)) == data
        assert pmd.decompress(client.compress(data)) == (0, data)


# --- round trips with zlib as the peer


@pytest.mark.parametrize("bits", [9, 10, 12, 15])
@pytest.mark.parametrize("takeover", [True, False])
def test_round_trips_across_messages(bits, takeover):
    pmd = PerMessageDeflate(server_max_window_bits=bits, client_max_window_bits=bits,
                            server_no_context_takeover=not takeover,
                            client_no_context_takeover=not takeover)
    client = Client(bits, takeover)
    peer_in = zlib.decompressobj(-bits)
    messages = [b"x" * 5000, bytes(range(256)) * 40, b"Hello", b"Hello", b"", b"abc" * 9000]
    for m in messages:
        assert pmd.decompress(client.compress(m)) == (0, m)
        out = pmd.compress(m)
        assert peer_in.decompress(out + TAIL) == m
        if not takeover:
            peer_in = zlib.decompressobj(-bits)     # each message must stand alone


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=3000) | st.text(max_size=500).map(str.encode), max_size=6),
       st.integers(9, 15), st.booleans(), st.integers(0, 9), st.integers(1, 9))
def test_any_messages_round_trip(messages, bits, takeover, level, mem_level):
    pmd = PerMessageDeflate(server_max_window_bits=bits, client_max_window_bits=bits,
                            server_no_context_takeover=not takeover, level=level,
                            mem_level=mem_level)
    client, peer_in = Client(bits), zlib.decompressobj(-bits)
    for m in messages:
        assert pmd.decompress(client.compress(m)) == (0, m)
        if not takeover:
            peer_in = zlib.decompressobj(-bits)
        assert peer_in.decompress(pmd.compress(m) + TAIL) == m


def test_a_message_in_many_small_pieces_inflates_whole():
    data = bytes(range(256)) * 300
    wire = Client().compress(data)
    pmd, got = PerMessageDeflate(), b""
    for i in range(0, len(wire), 7):
        status, part = pmd.decompress(wire[i:i + 7], fin=False)
        assert status == 0
        got += part
    status, part = pmd.decompress(b"")
    assert status == 0 and got + part == data


# --- context takeover


def test_without_client_context_takeover_a_back_reference_is_corrupt():
    client = Client(15, takeover=True)          # a client that keeps its window...
    first, second = client.compress(b"Hello, world"), client.compress(b"Hello, world")
    pmd = PerMessageDeflate(client_no_context_takeover=True)    # ...when it agreed not to
    assert pmd.decompress(first) == (0, b"Hello, world")
    assert pmd.decompress(second)[0] == -1
    kept = PerMessageDeflate()
    assert kept.decompress(first)[1] == kept.decompress(second)[1] == b"Hello, world"


def test_a_window_larger_than_agreed_is_corrupt():
    far = bytes(range(256)) * 2 + b"0123456789abcdef" * 4 + bytes(range(256)) * 2
    wire = Client(15).compress(far * 3)
    assert PerMessageDeflate(client_max_window_bits=15).decompress(wire) == (0, far * 3)
    assert PerMessageDeflate(client_max_window_bits=9).decompress(wire)[0] == -1


# --- the cap, a bomb, a corrupt stream


def test_a_bomb_stops_at_the_cap():
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = (c.compress(b"\0" * (64 << 20)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(bomb) < 70_000                   # 64 MiB in a few tens of KiB
    pmd = PerMessageDeflate()
    status, out = pmd.decompress(bomb, cap=1 << 20)
    assert status == 1 and len(out) <= (1 << 20) + 1
    assert pmd.memory() < 64 * 1024             # zlib's window and state, nothing of the bomb


def test_the_cap_is_exact():
    data = b"abcdefgh" * 1000
    wire = Client().compress(data)
    assert PerMessageDeflate().decompress(wire, cap=len(data)) == (0, data)
    status, out = PerMessageDeflate().decompress(wire, cap=len(data) - 1)
    assert status == 1 and out == data


@pytest.mark.parametrize("data", [b"\xff\xff\xff\xff", b"\x07", bytes.fromhex("0005 00ffff"),
                                  b"", HELLO + TAIL, HELLO[:-1], HELLO[:-2]])
def test_a_corrupt_stream_is_minus_one(data):
    # (an empty payload, the tail left on, a message cut short: it would end inside a block)
    assert PerMessageDeflate().decompress(data)[0] == -1


def test_a_message_cut_short_is_corrupt_however_it_is_cut():
    wire = Client().compress(bytes(range(256)) * 64)
    for cut in (1, 2, 5, len(wire) // 2):
        assert PerMessageDeflate().decompress(wire[:-cut])[0] == -1, cut


# --- memory


def test_zlib_memory_is_counted_and_taken_lazily():
    pmd = PerMessageDeflate()
    assert pmd.memory() == 0                    # an idle connection holds no zlib stream
    pmd.decompress(HELLO)
    inflater = pmd.memory()
    assert 32 * 1024 < inflater < 48 * 1024     # a 32 KiB window and inflate's state
    pmd.compress(b"Hello")
    assert pmd.memory() - inflater > 200 * 1024     # deflate at 15 bits, memLevel 8
    small = PerMessageDeflate(server_max_window_bits=9, client_max_window_bits=9, mem_level=1)
    small.decompress(HELLO)
    small.compress(b"Hello")
    assert small.memory() < 20 * 1024
    del pmd                                     # (freed: the count is the object's own)


def test_without_server_context_takeover_the_compressor_is_freed_after_each_message():
    pmd = PerMessageDeflate(server_no_context_takeover=True)
    pmd.compress(b"Hello" * 100)
    assert pmd.memory() == 0
    pmd.decompress(HELLO)
    assert 0 < pmd.memory() < 48 * 1024


def test_without_client_context_takeover_the_decompressor_is_freed_after_each_message():
    pmd = PerMessageDeflate(client_no_context_takeover=True)
    assert pmd.decompress(HELLO[:3], fin=False) == (0, b"He")
    assert pmd.memory() > 0                     # held while a message comes in
    assert pmd.decompress(HELLO[3:]) == (0, b"llo")
    assert pmd.memory() == 0
    assert pmd.decompress(bytes.fromhex("f348cdc9c90700")) == (0, b"Hello")   # a final block
    assert pmd.memory() == 0
    assert pmd.decompress(HELLO) == (0, b"Hello")
    both = PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True)
    both.decompress(HELLO)
    both.compress(b"Hello")
    assert both.memory() == 0                   # an idle connection holds no zlib memory


# --- the negotiation


@pytest.mark.parametrize("offer, response, agreed", [
    # (server_no_context_takeover, client_no_context_takeover, server bits, client bits)
    ("permessage-deflate", "permessage-deflate", (False, False, 15, 15)),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate", (False, False, 15, 15)),
    ("permessage-deflate; client_max_window_bits=10",
     "permessage-deflate; client_max_window_bits=10", (False, False, 15, 10)),
    ("permessage-deflate; server_max_window_bits=12",
     "permessage-deflate; server_max_window_bits=12", (False, False, 12, 15)),
    ("permessage-deflate; server_max_window_bits=15",
     "permessage-deflate; server_max_window_bits=15", (False, False, 15, 15)),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover", (True, False, 15, 15)),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover", (False, True, 15, 15)),
    ("permessage-deflate; client_no_context_takeover; server_no_context_takeover; "
     "server_max_window_bits=9; client_max_window_bits=8",
     "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
     "server_max_window_bits=9; client_max_window_bits=8", (True, True, 9, 8)),
    # quoted values (RFC 6455 §9.1: the unescaped value must be a token)
    ('permessage-deflate; server_max_window_bits="10"',
     "permessage-deflate; server_max_window_bits=10", (False, False, 10, 15)),
    ('permessage-deflate; client_max_window_bits="1\\1"',
     "permessage-deflate; client_max_window_bits=11", (False, False, 15, 11)),
    # case and whitespace
    ("PerMessage-Deflate ;\tClient_Max_Window_Bits = 10 ",
     "permessage-deflate; client_max_window_bits=10", (False, False, 15, 10)),
    # other extensions, several offers: the first acceptable one
    ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=9",
     "permessage-deflate; client_max_window_bits=9", (False, False, 15, 9)),
    ("foo; a=1; b=\"x y\", permessage-deflate", "permessage-deflate", (False, False, 15, 15)),
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10",
     "permessage-deflate; server_max_window_bits=10", (False, False, 10, 15)),
    ("permessage-deflate; unknown, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover", (True, False, 15, 15)),
    (",, permessage-deflate ,", "permessage-deflate", (False, False, 15, 15)),
    (b"permessage-deflate", "permessage-deflate", (False, False, 15, 15)),
])
def test_an_acceptable_offer_is_answered(offer, response, agreed):
    got, pmd = negotiate(offer)
    assert got == response
    assert (pmd.server_no_context_takeover, pmd.client_no_context_takeover,
            pmd.server_max_window_bits, pmd.client_max_window_bits) == agreed


@pytest.mark.parametrize("offer", [
    None, "", " ", "x-webkit-deflate-frame", "permessage-deflatex", "foo, bar; baz=1",
    # unknown, repeated, badly valued parameters
    "permessage-deflate; foo", "permessage-deflate; foo=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover",
    "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
    "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover=1",
    'permessage-deflate; client_no_context_takeover=""',
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=8",       # zlib cannot honour it
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",
    "permessage-deflate; server_max_window_bits=1a",
    "permessage-deflate; server_max_window_bits=+9",
    "permessage-deflate; client_max_window_bits=0",
    "permessage-deflate; client_max_window_bits=99999999999999999999",
    'permessage-deflate; client_max_window_bits=""',
    'permessage-deflate; client_max_window_bits="1 0"',
    'permessage-deflate; client_max_window_bits="10000000000000000000000"',
    # breaks the grammar: nothing is taken
    "permessage-deflate;", "permessage-deflate; =10", "permessage-deflate x",
    'permessage-deflate; a="unterminated', "; permessage-deflate", "permessage-deflate; a=",
    "permessage-deflate, \x01", "permessage-deflate; client_max_window_bits=1\u20ac",
    "permessage-deflate, permessage-deflate;;",
])
def test_an_unacceptable_offer_gets_nothing(offer):
    assert negotiate(offer) == (None, None)


def test_not_enabled_takes_nothing():
    assert negotiate("permessage-deflate", enabled=False) == (None, None)


def test_the_servers_own_settings_shape_the_answer():
    got, pmd = negotiate("permessage-deflate", server_max_window_bits=11,
                         server_no_context_takeover=True, client_no_context_takeover=True,
                         level=6, mem_level=4)
    assert got == ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                   "server_max_window_bits=11")
    assert (pmd.level, pmd.mem_level, pmd.server_max_window_bits) == (6, 4, 11)
    # the client's window: asked for only where the client said it can be (§7.1.2.2)
    def answer(offer, **settings):
        return negotiate(offer, **settings)[0]

    assert answer("permessage-deflate", client_max_window_bits=10) == "permessage-deflate"
    assert negotiate("permessage-deflate",
                     client_max_window_bits=10)[1].client_max_window_bits == 15
    assert answer("permessage-deflate; client_max_window_bits",
                  client_max_window_bits=10) == "permessage-deflate; client_max_window_bits=10"
    assert answer("permessage-deflate; client_max_window_bits=12",
                  client_max_window_bits=10) == "permessage-deflate; client_max_window_bits=10"
    assert answer("permessage-deflate; server_max_window_bits=13",
                  server_max_window_bits=11) == "permessage-deflate; server_max_window_bits=11"


@pytest.mark.parametrize("setting", [
    {"server_max_window_bits": 8}, {"server_max_window_bits": 16}, {"client_max_window_bits": 7},
    {"client_max_window_bits": 16}, {"level": 10}, {"level": -1}, {"mem_level": 0},
    {"mem_level": 10}])
def test_an_operators_bad_setting_is_an_error_whatever_the_offer(setting):
    with pytest.raises(ValueError):
        negotiate("", **setting)
    with pytest.raises(ValueError):
        PerMessageDeflate(**setting)


OFFER_ALPHABET = st.sampled_from([
    "permessage-deflate", "server_no_context_takeover", "client_no_context_takeover",
    "server_max_window_bits", "client_max_window_bits", "x-foo", ";", ",", "=", '"', "\\", " ",
    "\t", "8", "9", "10", "15", "16", "0", "a", "\x00", "\xff"])


@settings(max_examples=1500, deadline=None)
@given(st.lists(OFFER_ALPHABET, max_size=30).map("".join) | st.text(max_size=60) |
       st.binary(max_size=60))
def test_random_offers_never_crash_and_an_answer_is_itself_acceptable(offer):
    response, pmd = negotiate(offer)
    if response is None:
        assert pmd is None
        return
    assert response.startswith("permessage-deflate") and "\r" not in response
    again, _ = negotiate(response)                  # what we answer is a valid offer
    assert again is not None
    assert pmd.server_max_window_bits >= 9
