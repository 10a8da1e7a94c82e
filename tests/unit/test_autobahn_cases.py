"""The Autobahn|Testsuite case list (tests/conformance/: extract_cases.py made the JSON and the
Markdown from the suite's case classes) is whole, and its client sides, played as bytes by
tests/conformance/autobahn.py, are judged by an independent RFC 6455 parser (wsproto's) as the
suite judges them: the cases where the server must fail the connection make it fail, the others
parse clean. A wrong extraction or a wrong replay fails here."""
from __future__ import annotations

import re

import pytest
from wsproto.frame_protocol import FrameProtocol, ParseFailed

from tests.conformance import autobahn

COUNTS = {1: 16, 2: 11, 3: 7, 4: 10, 5: 20, 6: 145, 7: 37, 9: 54, 10: 1, 12: 90, 13: 126}
PLAYED = [c for c in autobahn.cases(1, 2, 3, 4, 5, 6, 7, 9) if not c.get("informational")
          and sum(len(v) for k, v in autobahn.steps(c) if k in ("send", "close")) < 1 << 20]


def test_every_category_is_whole():
    ids = [c["id"] for c in autobahn.cases()]
    assert len(ids) == len(set(ids)) == sum(COUNTS.values())
    for category, count in COUNTS.items():
        assert len(autobahn.cases(category)) == count


def test_the_markdown_lists_the_same_cases():
    md = (autobahn.HERE / "AUTOBAHN_CASES.md").read_text()
    listed = re.findall(r"^\| (\d+(?:\.\d+)+) \|", md, flags=re.M)
    assert listed == [c["id"] for c in autobahn.cases()]


def test_each_case_says_what_to_do_and_expect():
    for c in autobahn.cases():
        assert c["description"] and c["expectation"], c["id"]
        if c["category"] <= 9:
            assert c["client"] and "closedByMe" in c["expected_close"], c["id"]


def test_only_implementation_defined_cases_are_informational():
    informational = [c["id"] for c in autobahn.cases() if c.get("informational")]
    assert informational == ["7.1.6", "7.13.1", "7.13.2"]


def judge(c: dict) -> tuple[str, list]:
    """What wsproto (a server, no extension) makes of a case's bytes: "ok" or the failure,
    and the frames it parsed."""
    proto = FrameProtocol(client=False, extensions=[])
    frames = []
    try:
        proto.receive_bytes(autobahn.wire(c))
        frames = list(proto.received_frames())
    except ParseFailed as e:
        return f"failed {int(e.code)}", frames
    return "ok", frames


@pytest.mark.parametrize("case", PLAYED, ids=[c["id"] for c in PLAYED])
def test_an_rfc_parser_agrees_with_the_suite(case):
    verdict, _ = judge(case)
    if autobahn.server_must_fail(case):
        assert verdict.startswith("failed"), case["expectation"]
        codes = case["expected_close"]["closeCode"]
        assert int(verdict.split()[1]) in codes or len(codes) > 1 or \
            not case["expected_close"]["closedByMe"], (verdict, codes)
    else:
        assert verdict == "ok", (verdict, case["expectation"])


def test_a_clients_close_is_told_by_the_case_never_guessed_from_bytes():
    # a chop of a masked payload may begin with what looks like a Close's header (opcode 8,
    # masked, short length): the replay took such a chop for the client's Close and waited
    # for an answer to a Close it never sent
    for c in autobahn.cases(1, 2, 3, 4, 5, 6, 7, 9):     # (the replayed ones)
        closes = sum(1 for a in c["client"] if a["op"] in ("close", "close_frame")
                     and len(autobahn.payload(a.get("reason"))) + 2 < 126
                     or a["op"] == "frame" and a["opcode"] == 8 and not a["rsv"]
                     and len(autobahn.payload(a["payload"])) < 126)
        assert sum(1 for k, _ in autobahn.steps(c) if k == "close") == closes, c["id"]
    for _ in range(20):             # 64-byte chops of a 1 MiB frame, under 20 masks
        assert {k for k, _ in autobahn.steps(autobahn.case("9.6.1"))} == {"send", "close_after"}


def test_the_steps_keep_the_suites_waits():
    steps = list(autobahn.steps(autobahn.case("6.4.1")))
    assert [k for k, _ in steps] == ["send", "wait", "send", "wait", "send",
                                     "expect_closed_within"]
    # 6.4.3 streams one frame's payload in three parts: the mask runs on across them
    c = autobahn.case("6.4.3")
    proto = FrameProtocol(client=False, extensions=[])
    data = autobahn.wire(c)
    proto.receive_bytes(data[:2 + 4 + 11])          # header, mask, PART1: valid so far
    assert [f.payload for f in proto.received_frames()]
    proto.receive_bytes(data[2 + 4 + 11:])
    with pytest.raises(ParseFailed):
        list(proto.received_frames())
