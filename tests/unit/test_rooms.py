"""The compiled core's rooms stay rooms: each .pyx of one concern is short enough to read whole,
and says in a .pxd what the others may cimport and in a .pyi what Python sees."""
from __future__ import annotations

from pathlib import Path

import pytest

import fastsock

PACKAGE = Path(fastsock.__file__).resolve().parent
ROOMS = sorted(PACKAGE.glob("_*.pyx"))
LIMIT = 450


@pytest.mark.parametrize("room", ROOMS, ids=lambda p: p.stem)
def test_a_room_is_short_and_declares_itself(room: Path) -> None:
    lines = room.read_text().count("\n")
    assert lines <= LIMIT, f"{room.name}: {lines} lines (a room is at most {LIMIT}: split it)"
    for suffix in (".pxd", ".pyi"):
        assert room.with_suffix(suffix).exists(), f"{room.name} has no {suffix}"
