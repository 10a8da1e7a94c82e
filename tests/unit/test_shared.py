"""The shared slots without a server: the master's claims, the workers' counters (here a
Connection fed in this process, or in a forked child as a worker is), the scrape's sums."""
import os

from fastsock._conn import Connection
from fastsock._context import Context
from fastsock._shared import SharedState
from fastsock.config import Config

GET = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


def serve_in_slot(shared: SharedState, slot: int, requests: int) -> None:
    """What a worker in that slot counts for `requests` GETs on one connection."""
    conn = Connection(Context(Config().limits(), shared, slot),
                      lambda req: "ok")
    assert conn.feed(GET * requests).count(b"HTTP/1.1 200 OK") == requests


def test_free_slot_is_the_first_unclaimed_and_minus_one_when_all_are_taken():
    shared = SharedState(3)
    assert [shared.slot_state(i) for i in range(3)] == [SharedState.FREE] * 3
    assert shared.free_slot() == 0
    shared.set_slot(0, 101, SharedState.STARTING)
    shared.set_slot(1, 102, SharedState.RUNNING)
    assert shared.free_slot() == 2
    shared.set_slot(2, 103, SharedState.DRAINING)
    assert shared.free_slot() == -1
    shared.set_slot(1, 0, SharedState.FREE)            # its worker died
    assert shared.free_slot() == 1
    assert shared.slot_state(0) == SharedState.STARTING and shared.heartbeat(0) == 0
    assert shared.snapshot()["workers"] == {0: 101, 2: 103}


def test_counts_are_summed_over_slots_and_outlive_a_freed_slot():
    shared = SharedState(2)
    shared.set_slot(0, 201, SharedState.RUNNING)
    shared.set_slot(1, 202, SharedState.RUNNING)
    serve_in_slot(shared, 0, 3)
    serve_in_slot(shared, 1, 4)
    snap = shared.snapshot()
    assert sum(snap["requests"].values()) == 7 and snap["accepted"] == 0
    shared.set_slot(1, 0, SharedState.FREE)            # the worker is gone, its counts are not
    snap = shared.snapshot()
    assert sum(snap["requests"].values()) == 7
    assert snap["workers"] == {0: 201}
    (count, _, buckets), = snap["durations"].values()
    assert count == 7 and sum(buckets) == 7


def test_a_forked_worker_counts_into_the_masters_memory():
    shared = SharedState(2)
    pid = os.fork()
    if pid == 0:                                        # the worker: count, then vanish
        try:
            shared.set_slot(1, os.getpid(), SharedState.RUNNING)
            serve_in_slot(shared, 1, 5)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    snap = shared.snapshot()
    assert snap["workers"] == {1: pid}
    assert sum(snap["requests"].values()) == 5


def test_the_header_and_the_app_areas():
    shared = SharedState(2)
    assert not shared.ready and not shared.draining
    shared.ready, shared.draining = True, True
    shared.set_workers_alive(2)
    shared.count_restart()
    shared.count_restart()
    snap = shared.snapshot()
    assert shared.ready and shared.draining
    assert (snap["workers_alive"], snap["restarts"]) == (2, 2)
    a, b = shared.app_area(0), shared.app_area(1)
    assert len(a) == len(b) > 0 and bytes(a) == bytes(len(a))
    a[:3] = b"abc"
    assert bytes(shared.app_area(0)[:3]) == b"abc" and bytes(b) == bytes(len(b))
