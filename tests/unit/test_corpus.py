"""The fuzzers' seed corpus (fuzz/corpus/), checked as tests: every valid request X.http parses
to the request in X.json beside it (the reviewed truth, as gunicorn's tests/requests/ keeps it),
whole and split at every point; every invalid one is refused with the status and reason in its
X.json; every input the fuzzers grew parses the same whole as split; the PROXY seeds give the
addresses written in them.

X.json of a valid request: method, raw_path, path (percent-decoded), query_string, http_version,
headers ([name, value] in order, names lowercased), body (de-chunked) and keep_alive; bytes are
written as latin-1 text, one character a byte."""
import json
from pathlib import Path

import pytest

from fastsock._parser import RequestParser
from fastsock._proxy import ProxyHeaderError, parse as parse_proxy

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
VALID = sorted((CORPUS / "requests" / "valid").glob("*.http"))
INVALID = sorted((CORPUS / "requests" / "invalid").glob("*.http"))
GROWN = sorted((CORPUS / "requests" / "grown").glob("*"))


def outcome(pieces):
    parser = RequestParser()
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    # "continue" is left out: it is owed only when the body has not arrived with the head
    return [(e.method, e.path, e.query_string, e.headers.items(), e.body) for e in events
            if e != "continue"], parser.error_status


def as_json(req) -> dict:
    def text(b: bytes) -> str:
        return b.decode("latin-1")
    return {"method": req.method, "raw_path": text(req.raw_path), "path": req.path,
            "query_string": text(req.query_string), "http_version": req.http_version,
            "headers": [[text(k), text(v)] for k, v in req.raw_headers], "body": text(req.body),
            "keep_alive": req.keep_alive}


def test_every_request_file_has_its_expected_parse_and_no_parse_is_orphaned():
    for kind in ("valid", "invalid"):
        folder = CORPUS / "requests" / kind
        assert ({p.stem for p in folder.glob("*.http")} == {p.stem for p in folder.glob("*.json")}
                != set()), kind


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_requests_parse_to_their_json_whole_and_split_anywhere(path):
    data = path.read_bytes()
    parser = RequestParser()
    requests = [e for e in parser.feed(data) if e != "continue"]
    assert parser.error_status == 0, parser.error_reason
    assert [as_json(r) for r in requests] == [json.loads(path.with_suffix(".json").read_text())]
    whole, status = outcome([data])
    for i in range(1, len(data)):
        assert outcome([data[:i], data[i:]]) == (whole, status), f"split at {i}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_requests_are_refused_with_their_status(path):
    expected = json.loads(path.with_suffix(".json").read_text())
    assert expected["status"] == int(path.name.split("-", 1)[0])
    data = path.read_bytes()
    parser = RequestParser()
    parser.feed(data)
    assert (parser.error_status, parser.error_reason) == (expected["status"], expected["reason"])
    events, status = outcome([data])
    assert status == expected["status"]
    assert all(e[1] != "/smuggled" for e in events)
    assert outcome([data[i:i + 1] for i in range(len(data))]) == (events, status)


@pytest.mark.parametrize("path", GROWN, ids=lambda p: p.name[:12])
def test_grown_inputs_parse_the_same_whole_and_split(path):
    data = path.read_bytes()
    whole = outcome([data])
    for i in range(1, len(data), max(1, len(data) // 16)):
        assert outcome([data[:i], data[i:]]) == whole, f"split at {i}"


# the seeds fuzz/make_corpus.py writes: (bytes of the header it consumed, source address)
PROXY_SEEDS = {
    "v1-tcp4": (45, ("192.0.2.1", 56324)),
    "v1-tcp6": (46, ("2001:db8::1", 56324)),
    "v1-unknown": (15, None),
    "v2-tcp4": (28, ("192.0.2.1", 56324)),
    "v2-local": (16, None),
    "v2-tcp6-tlv": (58, ("1:203:405:607:809:a0b:c0d:e0f", 443)),
}


@pytest.mark.parametrize("name", PROXY_SEEDS)
def test_proxy_seeds_give_the_address_written_in_them(name):
    assert parse_proxy((CORPUS / "proxy" / f"{name}.bin").read_bytes()) == PROXY_SEEDS[name]


@pytest.mark.parametrize("path", sorted(p for p in (CORPUS / "proxy").glob("*/*") if p.is_file()),
                         ids=lambda p: p.name[:12])
def test_proxy_inputs_the_fuzzer_found_parse_or_are_refused_with_proxy_header_error(path):
    """What the fuzzer found must not raise anything but ProxyHeaderError (it crashed once)."""
    data = path.read_bytes()
    try:
        result = parse_proxy(data)
    except ProxyHeaderError:
        return
    if result is not None:                      # a whole header: its length is in the input
        assert 0 < result[0] <= len(data)


# ---------------------------------------------------------------- the websocket target's seeds

WS_SEEDS = {        # what each seed fuzz/make_corpus.py writes reads to (failures: their code)
    "text": [("text", "héllo €")],
    "binary-126": [("binary", bytes(200))],
    "fragments-ping-between": [("ping", b"p"), ("text", "fragment")],
    "close-1000": [("close", 1000, "bye")],
    "utf8-invalid": [("fail", 1007)],
    "over-limit": [("fail", 1009)],
    "deflated": [("text", "abc" * 40), ("close", 1005, "")],
    "deflate-bomb": [("fail", 1009)],
}
WS_INPUTS = sorted((CORPUS / "websocket").glob("*.bin")) + \
    sorted((CORPUS / "websocket" / "grown").glob("*"))


def ws_read(data: bytes, cut: int | None = None) -> list:
    """A websocket input (options byte, split byte, stream) read as the fuzz target reads it:
    whole, or in two reads at cut; nothing after a failure or a Close."""
    from fastsock._wsdeflate import negotiate
    from fastsock._wsframes import FrameReader
    options, stream = data[0], data[2:]
    deflate = negotiate("permessage-deflate; client_max_window_bits", server_max_window_bits=12,
                        client_max_window_bits=12, mem_level=5)[1] if options & 1 else None
    limit = 64 << (options >> 1 & 7)
    reader = FrameReader(limit, limit // 2 if options & 16 else limit, deflate)
    events: list = []
    for piece in [stream] if cut is None else [stream[:cut], stream[cut:]]:
        events += reader.feed(piece)
        ends = [i for i, e in enumerate(events) if e[0] in ("fail", "close")]
        if ends:
            return [e[:2] if e[0] == "fail" else e for e in events[:ends[0] + 1]]
    return events


def test_every_websocket_seed_is_there():
    assert {p.stem for p in (CORPUS / "websocket").glob("*.bin")} == set(WS_SEEDS)


@pytest.mark.parametrize("path", WS_INPUTS, ids=lambda p: p.name[:24])
def test_websocket_inputs_read_the_same_whole_and_split(path):
    data = path.read_bytes()
    whole = ws_read(data)
    if path.stem in WS_SEEDS:
        assert whole == WS_SEEDS[path.stem]
    for i in range(0, len(data) - 1, max(1, len(data) // 16)):
        assert ws_read(data, i) == whole, f"split at {i}"
