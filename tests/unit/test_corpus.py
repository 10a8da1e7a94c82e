"""The fuzzers' seed corpus (fuzz/corpus/), checked as tests: every valid request is accepted
whole and split at every point, every invalid one refused with the status in its name — and
every input the fuzzers grew is parsed the same whole as split."""
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


def test_the_corpus_is_there():
    assert len(VALID) >= 20 and len(INVALID) >= 60


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_requests_are_accepted_whole_and_split_anywhere(path):
    data = path.read_bytes()
    whole, status = outcome([data])
    assert status is None or status == 0, status
    assert whole, "no request"
    for i in range(1, len(data)):
        assert outcome([data[:i], data[i:]]) == (whole, status), f"split at {i}"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_requests_are_refused_with_their_status(path):
    expected = int(path.name.split("-", 1)[0])
    data = path.read_bytes()
    events, status = outcome([data])
    assert status == expected
    assert all(e[1] != "/smuggled" for e in events)
    assert outcome([data[i:i + 1] for i in range(len(data))]) == (events, status)


def test_grown_inputs_parse_the_same_whole_and_split():
    for path in GROWN:
        data = path.read_bytes()
        whole = outcome([data])
        for i in range(1, len(data), max(1, len(data) // 16)):
            assert outcome([data[:i], data[i:]]) == whole, f"{path.name}: split at {i}"


@pytest.mark.parametrize("path", sorted(p for p in (CORPUS / "proxy").rglob("*") if p.is_file()),
                         ids=lambda p: p.name[:16])
def test_proxy_corpus_parses_or_is_refused_cleanly(path):
    try:
        parse_proxy(path.read_bytes())
    except ProxyHeaderError:
        pass
