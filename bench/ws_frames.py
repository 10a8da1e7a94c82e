"""Instructions to read and to write one WebSocket frame (fastsock/_wsframes), counted by
valgrind's callgrind: repeatable on a noisy machine where timings drift.

Reading: FrameReader.feed() over BATCH masked client frames given at once, so a frame's count
holds next_event (header, unmasking, the UTF-8 check of text) and the event's message object
(str or bytes) and tuple, and feed()'s Python call is shared by BATCH frames. Writing:
message_frame(message, repeat=BATCH), write_message BATCH times into one OutBuffer and one
getvalue() of the lot (so a frame's count also holds its bytes copied once more and the buffer's
growth). "door" is the difference of two runs (BATCH * (1 + ROUNDS) and BATCH frames), so
Python's start-up and the imports cancel out; "core" is what the server itself pays: callgrind's
inclusive count of next_event (reading) or write_message (writing) per frame, from the same run.

    python bench/ws_frames.py [--rounds 200]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000
CASES = {
    "read 32 B masked text": ("read", 1, 32),
    "read 4 KiB masked binary": ("read", 2, 4096),
    "read 4 KiB masked text (ASCII)": ("read", 1, 4096),
    "read 4 KiB masked text (UTF-8)": ("read", 1, -4096),
    "write 32 B text": ("write", 1, 32),
    "write 4 KiB binary": ("write", 2, 4096),
}


def child(case: str, rounds: int) -> None:
    """The workload callgrind counts: `rounds` batches of one case."""
    sys.path.insert(0, str(ROOT))
    from fastsock._wsframes import FrameReader, message_frame
    from tests.support.wsframes import frame
    kind, opcode, size = CASES[case]
    text = "é" * (-size // 2) if size < 0 else "x" * size
    if kind == "read":
        payload = text.encode() if opcode == 1 else os.urandom(size)
        stream = frame(opcode, payload, mask=b"\x12\x34\x56\x78") * BATCH
        reader = FrameReader(1 << 20, 1 << 20)
        for _ in range(rounds):
            events = reader.feed(stream)
            assert len(events) == BATCH
    else:
        message = text if opcode == 1 else os.urandom(size)
        for _ in range(rounds):
            message_frame(message, repeat=BATCH)


CORE = {"read": "FrameReader_next_event", "write": "_wsframes_write_message"}


def instructions(case: str, rounds: int) -> tuple[int, int]:
    """(the run's total, the core function's inclusive count)"""
    with tempfile.TemporaryDirectory(prefix="fastsock-wsframes-") as tmp:
        profile = Path(tmp) / "cg"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}",
                        sys.executable, __file__, "--child", case, "--rounds", str(rounds)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONHASHSEED": "0",
                            "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                           os.environ.get("PYTHONPATH", "")])})
        m = re.search(r"^(?:summary|totals): (\d+)", profile.read_text(errors="replace"), re.M)
        assert m, "no callgrind total"
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                                    str(profile)], check=True, capture_output=True,
                                   text=True).stdout
    core = re.search(r"^\s*([\d,]+) .*" + CORE[CASES[case][0]] + r"\b", annotated, re.M)
    assert core, f"no {CORE[CASES[case][0]]} in the profile"
    return int(m.group(1)), int(core.group(1).replace(",", ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rounds)
        return 0
    print(f"# instructions per frame (callgrind), {BATCH} frames a batch, "
          f"{args.rounds} batches less 1")
    print(f"{'':<34} {'core':>9} {'door':>9}")
    for case in CASES:
        (total, core), (one, _) = instructions(case, args.rounds + 1), instructions(case, 1)
        door = (total - one) / (args.rounds * BATCH)
        print(f"{case:<34} {core / ((args.rounds + 1) * BATCH):>9.0f} {door:>9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
