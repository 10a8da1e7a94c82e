"""The Autobahn|Testsuite's cases (tests/conformance/autobahn_cases.json) replayed against
fastsock over real sockets, judged as the suite judges them.

Categories 1-7 and 9, every case, against the native echo (tests/apps/ws_reference_native.py);
categories 1, 5, 6 and 7 again against the Starlette echo (tests/apps/ws_reference.py) through
the ASGI adapter. One module-scoped server each (--workers 2, message and frame limits of
16 MiB so category 9's largest messages come back), one connection per case. For each case:

- the client's frames go out as the suite sends them (tests/conformance/autobahn.py), its waits
  kept: a `wait` lasts until the server answers something (or the wait's seconds pass);
- the messages and pongs the server sends before its Close are the ones the suite expects (its
  OK outcome, or NON-STRICT where it allows one), payload and opcode;
- the suite's client starts the closing handshake once it has what it expects (1000); where
  the server must fail the connection, it must close first, with a code the suite allows;
- "fail fast" cases (a wait between the frames, the server must fail: 6.4.x): the server's
  Close arrives while the rest of the message is still unsent (what remains is then not sent);
- the server sends nothing after its Close, never masks, sets no reserved bit, and ends the
  TCP connection after the closing handshake.

Category 9's speed cases are replayed in full (9.7/9.8: 1000 round trips each). Categories 12
and 13 (permessage-deflate): every case (its size, fragmentation and offer), with a payload of
the kind the suite's data file holds (made here: the suite's files are not in its case list)
in COMPRESSED_MESSAGES messages instead of 1000, compressed with zlib as a client does and the
echo inflated with wsframes.Inflater.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import zlib
from dataclasses import dataclass, field

import pytest

from tests.conformance import autobahn
from tests.support import wsframes as wf
from tests.support.servers import Server, start_server

SIXTEEN_MIB = 16 * 1024 * 1024
LIMITS = ("--workers", "2", "--ws-max-message", str(SIXTEEN_MIB),
          "--ws-max-frame", str(SIXTEEN_MIB))
APPS = {"native": "tests.apps.ws_reference_native:app", "asgi": "tests.apps.ws_reference:app"}

# Cases of categories 1-7 and 9 not replayed, with the reason. Empty: every case is replayed.
NOT_REPLAYED: dict[str, str] = {}
NOT_REPLAYED_JUSTIFIED = 0

ROUND_TRIPS = 1000                  # 9.7.x / 9.8.x: "Send 1000 ... messages", one at a time
COMPRESSED_MESSAGES = 20            # categories 12/13: the suite sends 1000 per case

REPLAYED = [c for c in autobahn.cases(1, 2, 3, 4, 5, 6, 7, 9) if c["id"] not in NOT_REPLAYED]
ASGI_REPLAYED = [c for c in autobahn.cases(1, 5, 6, 7) if c["id"] not in NOT_REPLAYED]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started: dict[str, Server] = {}
    tmp = tmp_path_factory.mktemp("autobahn")

    def get(name: str) -> Server:
        if name not in started:
            started[name] = start_server(tmp, *LIMITS, app=APPS[name])
        return started[name]

    yield get
    for s in started.values():
        s.stop()


# ------------------------------------------------------------------------ the client's side


def digest(data: bytes) -> str:
    """A payload as the assertions show it: its hex when short, else its size and SHA-1."""
    if len(data) <= 64:
        return data.hex()
    return f"{len(data)} bytes, sha1 {hashlib.sha1(data).hexdigest()}"


def expected_digest(p: dict | None) -> str:
    if p and "sha1" in p:               # a large payload: the JSON keeps its size and SHA-1
        return f"{p['size']} bytes, sha1 {p['sha1']}"
    return digest(autobahn.payload(p))


@dataclass
class Peer:
    """The server's frames, read by a thread as they come: data messages (joined, inflated when
    compressed), pongs, the Close, what came after it, and the end of the TCP connection."""
    sock: socket.socket
    leftover: bytes
    inflater: wf.Inflater | None = None
    events: list[tuple] = field(default_factory=list)   # ("message", opcode, payload) / ("pong", p)
    close: wf.Frame | None = None
    after_close: list[wf.Frame] = field(default_factory=list)
    anomalies: list[str] = field(default_factory=list)
    eof: bool = False

    def __post_init__(self):
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        frames = wf.ServerFrames(self.sock, self.leftover, timeout=120)
        opcode, parts, compressed = None, [], False
        try:
            while True:
                f = frames.next()
                if f.masked:
                    self.anomalies.append(f"a masked frame (opcode {f.opcode})")
                if f.rsv2 or f.rsv3 or (f.rsv1 and (self.inflater is None or f.opcode == 0
                                                    or f.opcode >= 8)):
                    self.anomalies.append(f"reserved bits set (opcode {f.opcode})")
                with self.cond:
                    if self.close is not None:
                        self.after_close.append(f)
                    elif f.opcode == wf.OP_CLOSE:
                        self.close = f
                    elif f.opcode == wf.OP_PONG:
                        self.events.append(("pong", f.payload))
                    elif f.opcode == wf.OP_PING:
                        pass                    # the server's liveness pings: not the case's
                    else:
                        if opcode is None:
                            opcode, compressed = f.opcode, f.rsv1
                        parts.append(f.payload)
                        if f.fin:
                            data = b"".join(parts)
                            if compressed:
                                assert self.inflater is not None
                                data = self.inflater.decompress(data)
                            self.events.append(("message", opcode, data))
                            opcode, parts = None, []
                    self.cond.notify_all()
        except (ConnectionError, TimeoutError, OSError):
            pass
        finally:
            with self.cond:
                self.eof = True
                self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate() or self.eof, timeout)

    def data_events(self) -> list[tuple]:
        with self.cond:
            return list(self.events)


def shown(events: list[tuple]) -> list[tuple]:
    return [("message", "binary" if e[1] == wf.OP_BINARY else "text" if e[1] == wf.OP_TEXT
             else f"opcode {e[1]}", digest(e[2])) if e[0] == "message" else ("pong", digest(e[1]))
            for e in events]


def outcomes(c: dict) -> list[list[tuple]]:
    """The events the suite accepts (OK, then NON-STRICT), its timeout markers left out, shown
    as shown() shows what came."""
    if c["category"] == 9:          # the suite checks its echoes as they come: what was sent
        return [echoes(c)]
    found = []
    for verdict in ("OK", "NON-STRICT"):
        if verdict not in c["expected"]:
            continue
        found.append([("message", "binary" if e["binary"] else "text",
                       expected_digest(e["payload"])) if e["event"] == "message"
                      else ("pong", expected_digest(e["payload"]))
                      for e in c["expected"][verdict] if e["event"] != "timeout"])
    return found


def echoes(c: dict) -> list[tuple]:
    """Category 9: the messages the client sends, as their echoes must come."""
    out = []
    for a in c["client"]:
        if a["op"] == "frame":
            data = autobahn.payload(a["payload"])
            n = a.get("payload_len")
            if n is not None:
                data = (data * (n // max(len(data), 1) + 1))[:n]
            out.append(("message", "binary" if a["opcode"] == 2 else "text", digest(data)))
        elif a["op"] == "message":
            out.append(("message", "binary" if a["binary"] else "text",
                        digest(autobahn.payload(a["payload"]))))
    return out * (ROUND_TRIPS if c["id"][:3] in ("9.7", "9.8") else 1)


@dataclass
class Replay:
    events: list[tuple]             # shown(): the messages and pongs before the server's Close
    close: wf.Frame | None
    closed_first: bool              # the server's Close came before the client sent one
    unsent: int                     # the client's writes left unsent when the server's Close came
    answered: list[bool]            # each of the case's waits: whether it ended on an answer
    after_close: list[wf.Frame]
    anomalies: list[str]
    eof: bool


def replay(server: Server, c: dict) -> Replay:
    status, headers, sock, leftover = wf.upgrade(server.port, "/echo")
    assert status == 101, (status, headers)
    peer = Peer(sock, leftover)
    try:
        return _play(peer, sock, c)
    finally:
        sock.close()


def _play(peer: Peer, sock: socket.socket, c: dict) -> Replay:
    steps = list(autobahn.steps(c))
    client_closed = False
    unsent = 0
    answered: list[bool] = []                   # each wait: whether the server said something
    if c["id"][:3] in ("9.7", "9.8"):           # round trips, one at a time
        frame_bytes = [v for k, v in steps if k == "send"]         # (no Close among them)
        for i in range(ROUND_TRIPS):
            sock.sendall(frame_bytes[0])
            assert peer.wait(lambda i=i: len(peer.events) > i, 30), f"no echo {i}"
        steps = []
    for at, (kind, value) in enumerate(steps):
        if peer.close is not None:
            unsent = sum(1 for k, _ in steps[at:] if k in ("send", "close"))
            break
        if kind in ("send", "close"):
            try:
                sock.sendall(value)
            except OSError:                     # the server closed meanwhile: judged below
                unsent = sum(1 for k, _ in steps[at:] if k in ("send", "close"))
                break
            client_closed = client_closed or kind == "close"
        elif kind == "wait":                    # until the server says something, at most that
            before = len(peer.events)
            answered.append(peer.wait(
                lambda before=before: len(peer.events) > before or peer.close is not None, value))
    expected = outcomes(c)
    if not client_closed and peer.close is None:
        if not c["expected_close"]["closedByMe"]:   # the server must close: the suite waits
            peer.wait(lambda: peer.close is not None, 10)
        elif any(expected):                     # the suite closes once it has what it expects
            longest = max(len(e) for e in expected)
            peer.wait(lambda: peer.close is not None or shown(peer.events) in expected
                      or len(peer.events) >= longest, 60)
        if peer.close is None:
            sock.sendall(wf.close(1000))
            client_closed = True
    closed_first = peer.close is not None and not client_closed
    if peer.close is not None and not client_closed:    # answer the server's Close
        code = peer.close.close_code
        try:
            sock.sendall(wf.close(code if code is not None and 1000 <= code < 5000
                                  and code not in (1005, 1006, 1015) else 1000))
        except OSError:
            pass
    peer.wait(lambda: False, 30)                # until the server ends the TCP connection
    with peer.cond:
        return Replay(shown(peer.events), peer.close, closed_first, unsent, answered,
                      list(peer.after_close), list(peer.anomalies), peer.eof)


def judge(c: dict, r: Replay) -> None:
    """Assert what the suite judges for case c on the replay r."""
    what = f"{c['id']}: {c['description']} / expected: {c['expectation']}"
    assert not r.anomalies, (what, r.anomalies)
    assert r.eof, f"the server kept the TCP connection open after the closing handshake: {what}"
    assert r.close is not None, f"no Close from the server (events {r.events}): {what}"
    assert not r.after_close, (f"frames after the server's Close: "
                               f"{[(f.opcode, digest(f.payload)) for f in r.after_close]}", what)
    if c.get("informational"):      # implementation-defined: a close, the worker alive
        return
    expected = outcomes(c)
    assert r.events in expected, (f"events {r.events} instead of {expected}", what)
    close = c["expected_close"]
    assert r.close.close_code in close["closeCode"], \
        (f"closed with {r.close.close_code} {r.close.payload[2:]!r}, the suite allows "
         f"{close['closeCode']}", what)
    if not close["closedByMe"]:
        assert r.closed_first, f"the server did not fail the connection itself: {what}"
    if autobahn.server_must_fail(c) and any(k == "wait" for k, _ in autobahn.steps(c)):
        # the Close came after the part that makes the text invalid, before the last part
        assert r.unsent == 1, (f"not failed fast: {r.unsent} writes unsent when the Close came "
                               f"(1: the Close between the invalid part and the rest): {what}")
    elif r.answered:                # 5.19/5.20: each ping answered before the message goes on
        assert all(r.answered), f"a wait passed with no answer from the server: {what}"


@pytest.mark.parametrize("case", REPLAYED, ids=[c["id"] for c in REPLAYED])
def test_native_echo(servers, case):
    server = servers("native")
    judge(case, replay(server, case))
    assert server.proc.poll() is None


@pytest.mark.parametrize("case", ASGI_REPLAYED, ids=[c["id"] for c in ASGI_REPLAYED])
def test_asgi_echo(servers, case):
    server = servers("asgi")
    judge(case, replay(server, case))
    assert server.proc.poll() is None


def test_every_case_is_replayed_or_its_reason_given():
    ids = {c["id"] for c in autobahn.cases(1, 2, 3, 4, 5, 6, 7, 9)}
    assert len(ids) == 300
    assert {c["id"] for c in REPLAYED} | set(NOT_REPLAYED) == ids
    assert all(NOT_REPLAYED.values())
    assert len(NOT_REPLAYED) <= NOT_REPLAYED_JUSTIFIED


def test_the_informational_cases_leave_the_workers_serving(servers):
    """7.1.6 and 7.13.x: the suite defines no outcome; a close came (judge), and the server
    then serves a plain echo on fresh connections (both workers, by the kernel's balance)."""
    server = servers("native")
    for case_id in ("7.1.6", "7.13.1", "7.13.2"):
        judge(autobahn.case(case_id), replay(server, autobahn.case(case_id)))
    for _ in range(4):
        judge(autobahn.case("1.1.2"), replay(server, autobahn.case("1.1.2")))


# ------------------------------------------------------------- categories 12 and 13: deflate


def corpus(kind: str) -> tuple[bytes, bool]:
    """Data of the kind the suite's file for a sub-category holds (text: whether it goes as a
    text message), made here from a fixed seed."""
    rnd = random.Random(kind)
    if kind == "json":
        rows = [{"id": i, "name": f"user-{rnd.randrange(10**6)}", "tags": ["a", "b", "ü"][:i % 4],
                 "score": rnd.random()} for i in range(3000)]
        return json.dumps(rows).encode(), True
    if kind == "bitmap":        # a 1-bit picture: long runs, some noise
        rows = bytearray()
        for _ in range(512):
            run = rnd.randrange(1, 64)
            rows += (bytes([0xFF]) * run + bytes([rnd.randrange(256)]) +
                     bytes(64 - run - 1))[:64]
        return bytes(rows) * 8, False
    if kind == "faust":
        words = "Habe nun ach Philosophie Juristerei und Medizin Und leider auch Theologie " \
                "Durchaus studiert mit heißem Bemühn Da steh ich nun ich armer Tor".split()
        return " ".join(rnd.choice(words) for _ in range(40000)).encode(), False
    if kind == "html":
        cells = "".join(f"<tr><td class=\"c{i % 7}\">{rnd.randrange(10**5)}</td><td>é—{i}</td>"
                        f"</tr>\n" for i in range(6000))
        return f"<html><body><table>{cells}</table></body></html>".encode(), True
    # "pdf": compressed streams (incompressible) between text objects
    parts = []
    for i in range(200):
        parts.append(f"{i} 0 obj << /Length 2048 >> stream\n".encode())
        parts.append(rnd.randbytes(2048))
        parts.append(b"\nendstream endobj\n")
    return b"".join(parts), False


KINDS = {"1": "json", "2": "bitmap", "3": "faust", "4": "html", "5": "pdf"}
# the parameters the client offers in 13.x: (server_no_context_takeover, server_max_window_bits)
OFFERS = {"12": [(False, 0)], "13.1": [(False, 0)], "13.2": [(True, 0)], "13.3": [(False, 9)],
          "13.4": [(False, 15)], "13.5": [(True, 9)], "13.6": [(True, 15)],
          "13.7": [(True, 9), (True, 0), (False, 0)]}


COMPRESSION_CASES = autobahn.cases(12, 13)     # every one: each size and fragmentation


def offer_header(offers: list[tuple[bool, int]]) -> str:
    out = []
    for no_takeover, bits in offers:
        params = ["permessage-deflate"]
        if no_takeover:
            params.append("server_no_context_takeover")
        if bits:
            params.append(f"server_max_window_bits={bits}")
        params.append("client_max_window_bits")
        out.append("; ".join(params))
    return ", ".join(out)


def parse_agreed(value: str) -> dict[str, str | None]:
    assert "," not in value, f"more than one extension agreed: {value!r}"
    name, *params = [p.strip() for p in value.split(";")]
    assert name == "permessage-deflate", value
    agreed: dict[str, str | None] = {}
    for p in params:
        k, _, v = p.partition("=")
        assert k not in agreed, f"a parameter twice: {value!r}"
        agreed[k] = v.strip('"') or None
    return agreed


def test_every_compression_sub_category_is_replayed():
    subs = {c["id"].rsplit(".", 1)[0] for c in COMPRESSION_CASES}
    assert subs == {f"12.{i}" for i in range(1, 6)} | {f"13.{i}" for i in range(1, 8)}


@pytest.mark.parametrize("case", COMPRESSION_CASES, ids=[c["id"] for c in COMPRESSION_CASES])
def test_compressed_echo(servers, case):
    size, frag = map(int, re.search(r"payload size (\d+), auto-fragment to (\d+)",
                                    case["description"]).groups())
    sub = case["id"].rsplit(".", 1)[0]
    offers = OFFERS["12" if sub.startswith("12.") else sub]
    kind = KINDS[sub.split(".")[1]] if sub.startswith("12.") else "json"
    data, text = corpus(kind)
    server = servers("native")
    status, headers, sock, leftover = wf.upgrade(server.port, "/echo",
                                                 extensions=offer_header(offers))
    try:
        assert status == 101, (status, headers)
        agreed = parse_agreed(headers.get("sec-websocket-extensions") or "")
        # the first offer the server can take; it may only lower what the client asked for
        no_takeover, bits = offers[0]
        if no_takeover:
            assert "server_no_context_takeover" in agreed, agreed
        server_bits = int(agreed.get("server_max_window_bits") or 15)
        assert 8 <= server_bits <= (bits or 15), agreed
        client_bits = int(agreed.get("client_max_window_bits") or 15)
        assert 8 <= client_bits <= 15, agreed
        client_takeover = "client_no_context_takeover" not in agreed
        peer = Peer(sock, leftover, inflater=wf.Inflater(
            window_bits=server_bits, takeover="server_no_context_takeover" not in agreed))
        compressor = zlib.compressobj(wbits=-max(client_bits, 9))
        rnd = random.Random(case["id"])
        sent = []
        for i in range(COMPRESSED_MESSAGES):
            at = rnd.randrange(len(data) - size) if len(data) > size else 0
            chunk = data[at:at + size]
            if text:
                chunk = chunk.decode("utf-8", "ignore").encode()
            if not client_takeover:
                compressor = zlib.compressobj(wbits=-max(client_bits, 9))
            body = wf.deflated(chunk, compressor)
            opcode = wf.OP_TEXT if text else wf.OP_BINARY
            if frag:        # the compressed payload cut in frames; RSV1 on the first only
                parts = [body[j:j + frag] for j in range(0, len(body), frag)] or [b""]
                wire = b"".join(wf.frame(opcode if j == 0 else wf.OP_CONT, p,
                                         fin=j == len(parts) - 1, rsv=4 if j == 0 else 0)
                                for j, p in enumerate(parts))
            else:
                wire = wf.frame(opcode, body, rsv=4)
            sock.sendall(wire)
            sent.append(("message", "text" if text else "binary", digest(chunk)))
            assert peer.wait(lambda i=i: len(peer.events) > i or peer.close is not None, 30)
            assert peer.close is None, (peer.close.close_code, peer.close.payload[2:], case["id"])
        sock.sendall(wf.close(1000))
        peer.wait(lambda: False, 30)
        assert shown(peer.events) == sent
        assert not peer.anomalies, peer.anomalies
        assert peer.close is not None and peer.close.close_code == 1000
        assert peer.eof, "the server kept the TCP connection open after the closing handshake"
    finally:
        sock.close()

