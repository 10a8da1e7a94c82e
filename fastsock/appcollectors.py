"""The collectors on prometheus_client's `REGISTRY` that keep no values of their own in shared
memory — `Info`, `Enum`, custom collectors, the process, platform and GC collectors — collected
in each worker and shown by whichever worker answers a scrape.

Each worker writes what they yield into its area (appmetrics.py) as a snapshot, made on a
thread of its own (a collector is the app's code: a slow one never holds the loop): when it
answers a scrape (waiting up to a second for it), and at most once a second while scrapes come
(a scrape asks every live worker for one). A worker that has not been scraped for two minutes
collects nothing. So another worker's figures are at most about a second old, and one whose
collector is slow shows its last snapshot.

How they are merged: `Info` and `Enum` samples once, with no extra label (an `Enum` state is
1 if it is the state in any worker); every other collector's samples per worker, with a
`worker` label (the slot number, as fastsock_worker_* have).
"""
from __future__ import annotations

import json
import logging
import threading
import time

from prometheus_client import REGISTRY, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client.metrics_core import Metric

from fastsock.appmetrics import (
    DROPPED,
    F64,
    HEAD_SIZE,
    SNAP_LEN,
    SNAP_PID,
    SNAP_SEQ,
    SNAP_WANTED,
    U64,
    USED,
    lock,
)

log = logging.getLogger("fastsock.error")

SHARED = (Counter, Gauge, Histogram, Summary)   # their values are in the areas already
REFRESH = 1.0           # seconds between a worker's snapshots while it is scraped
COLLECT_WAIT = 1.0      # seconds a scrape (or a worker's start) waits for its own snapshot
SCRAPED_LATELY = 120.0  # seconds after a scrape that workers keep their snapshots fresh


_failed: set[int] = set()      # collectors whose failure was logged (once each)


def local_families() -> list:
    """[name, help, type, unit, merged, samples] for what this process's collectors yield;
    a collector that fails is left out (its first failure logged with the traceback)."""
    out = []
    for collector in list(REGISTRY._collector_to_names):    # (no public way to list them)
        if isinstance(collector, SHARED):
            continue
        merged = isinstance(collector, (Info, Enum))
        try:
            families = [[f.name, f.documentation, f.type, f.unit, merged,
                         [[s.name, dict(s.labels), float(s.value)] for s in f.samples]]
                        for f in collector.collect()]
        except Exception:
            if id(collector) not in _failed:
                _failed.add(id(collector))
                log.exception("app metrics: the collector %r failed: left out of /metrics "
                              "while it fails (logged once)", collector)
            continue
        out.extend(families)
    return out


class Snapshots:
    """This worker's side: its snapshot written into its area, by a thread of its own — the
    collectors are the app's code, and one that is slow or hangs holds that thread, never the
    worker's loop (a scrape waits for a fresh snapshot at most COLLECT_WAIT, and not at all
    while one is already overdue)."""

    def __init__(self, area: memoryview, pid: int):
        self.area, self.pid = area, pid
        self.last = 0.0
        self.said_unwritable = False
        self._turn = threading.Condition()
        self._busy = False              # a snapshot is asked for or being made
        self._written = 0               # snapshots made (or failed) so far
        self._thread: threading.Thread | None = None

    def tick(self) -> None:
        now = time.time()
        wanted = F64.unpack_from(self.area, SNAP_WANTED)[0]
        if now - wanted < SCRAPED_LATELY and now - self.last >= REFRESH:
            self.refresh()

    def refresh(self, wait: float = 0.0) -> None:
        """Ask the collectors' thread for a snapshot, and wait up to `wait` seconds for it,
        unless one asked for earlier is still being made (a slow collector: no waiting)."""
        with self._turn:
            if self._busy:
                return
            self._busy = True
            target = self._written + 1
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="fastsock-collectors",
                                          daemon=True)
                try:
                    thread.start()
                except RuntimeError:        # no thread to be had (a pids limit): this once,
                    self._busy = False      # on the caller's
                    self.write()
                    return
                self._thread = thread
            self._turn.notify_all()
            if wait:
                self._turn.wait_for(lambda: self._written >= target, wait)

    def _run(self) -> None:                 # the collectors' thread
        while True:
            with self._turn:
                self._turn.wait_for(lambda: self._busy)
            try:
                self.write()
            except Exception:               # noqa: BLE001  (logged: the thread lives on)
                log.exception("app metrics: writing the collectors' snapshot failed")
            with self._turn:
                self._busy = False
                self._written += 1
                self._turn.notify_all()

    def write(self) -> bool:
        """Collect and store; False (counted as dropped, appmetrics logs) when it does not fit
        between the entries and the area's end."""
        self.last = time.time()
        try:
            blob = json.dumps(local_families()).encode()
        except (TypeError, ValueError):     # a collector's labels that JSON cannot hold
            if not self.said_unwritable:
                self.said_unwritable = True
                log.exception("app metrics: the collectors' figures cannot be stored")
            return False
        area = self.area
        with lock:
            seq = U64.unpack_from(area, SNAP_SEQ)[0]
            start = len(area) - len(blob)
            if start < U64.unpack_from(area, USED)[0] or start < HEAD_SIZE:
                U64.pack_into(area, SNAP_LEN, 0)       # entries may grow into its room
                _say_full(area, len(blob))
                return False
            U64.pack_into(area, SNAP_SEQ, seq + 1)     # odd: being written
            area[start:] = blob
            U64.pack_into(area, SNAP_LEN, len(blob))
            U64.pack_into(area, SNAP_PID, self.pid)
            U64.pack_into(area, SNAP_SEQ, seq + 2)
        return True


_said_full = False


def _say_full(area: memoryview, size: int) -> None:
    global _said_full
    U64.pack_into(area, DROPPED, U64.unpack_from(area, DROPPED)[0] + 1)
    if not _said_full:
        _said_full = True
        log.warning("app metrics: the collectors' snapshot (%d bytes) does not fit in the "
                    "area of %d bytes (--app-metrics-bytes): their figures from this worker "
                    "are not exposed (counted in fastsock_app_metrics_dropped_total)",
                    size, len(area))


def read(area: memoryview, pid: int) -> list | None:
    """An area's snapshot, if its live process (pid) wrote it and it is whole."""
    for _ in range(3):
        seq = U64.unpack_from(area, SNAP_SEQ)[0]
        n = U64.unpack_from(area, SNAP_LEN)[0]
        if seq % 2 or not n or U64.unpack_from(area, SNAP_PID)[0] != pid:
            return None
        blob = bytes(area[len(area) - n:])
        if U64.unpack_from(area, SNAP_SEQ)[0] == seq:
            try:
                return json.loads(blob)
            except ValueError:
                return None
    return None


class WorkerCollectors:
    """The scrape's side: this worker's snapshot made fresh, every live worker's read."""

    def __init__(self, own: Snapshots, workers):
        self.own = own
        self.workers = workers          # callable -> [(slot, area, pid)] of live workers

    def collect(self):
        now = time.time()
        live = self.workers()
        for _slot, area, _pid in live:
            F64.pack_into(area, SNAP_WANTED, now)      # keep yours fresh: scrapes come
        self.own.refresh(wait=COLLECT_WAIT)
        families: dict[str, Metric] = {}
        seen: set[tuple] = set()
        for slot, area, pid in live:
            for name, help_text, typ, unit, merged, samples in read(area, pid) or ():
                family = families.get(name)
                if family is None:
                    family = families[name] = Metric(name, help_text, typ, unit)
                for sample_name, labels, value in samples:
                    if not merged:
                        labels = {**labels, "worker": str(slot)} if "worker" not in labels \
                            else labels
                    key = (sample_name, tuple(sorted(labels.items())))
                    if merged and key in seen:
                        # Info: the same set once; Enum: a state is 1 if it is in any worker
                        if value:
                            for i, s in enumerate(family.samples):
                                if (s.name, tuple(sorted(s.labels.items()))) == key:
                                    family.samples[i] = s._replace(value=value)
                        continue
                    seen.add(key)
                    family.add_sample(sample_name, labels, value)
        return list(families.values())
