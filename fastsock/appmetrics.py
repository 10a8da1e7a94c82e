"""Application metrics: what app code defines with prometheus_client appears in /metrics with
the meaning prometheus_client's multiprocess mode gives it, across workers, with no files.

`install()`, done when a server starts (before the command imports the app, and in serve()),
makes prometheus_client keep every value of a Counter, Gauge, Histogram and Summary in the
process's own area of the master's shared memory: one area per worker slot and one for the
master (the values made before the fork, as prometheus_client keeps them in the master's
file). One writer per area, no locks between processes. Importing fastsock changes nothing in
prometheus_client. A scrape reads every area and merges as prometheus_client's
MultiProcessCollector does: counters, histograms and summaries summed; a Gauge by its
multiprocess_mode (`all`, the default, and `liveall`: one series per process with a `pid`
label; `min`, `max`, `sum`, `mostrecent`; their `live*` forms count live processes only). A
respawned worker takes over a free area: counters continue (their sums never go back), a dead
process's gauges stay for the modes that keep them and are dropped for the `live*` ones.

What prometheus_client's multiprocess mode cannot show, fastsock does: every other collector on
`REGISTRY` — `Info`, `Enum`, custom collectors, the process, platform and GC collectors — is
collected in each worker and kept in its area as a snapshot, refreshed once a second while
scrapes come (appcollectors.py). An area that is full drops new series: logged once per
process and counted in fastsock_app_metrics_dropped_total.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import threading
import weakref

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary, values
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

log = logging.getLogger("fastsock.error")

# an area: a header, then entries from HEAD_SIZE up; a snapshot (appcollectors.py) from
# the end down. Its process writes all of it but SNAP_WANTED, which whichever worker answers a
# scrape sets (a whole aligned double: a reader never sees half of one).
U64 = struct.Struct("<Q")
F64 = struct.Struct("<d")
USED, DROPPED, SNAP_SEQ, SNAP_LEN, SNAP_WANTED, SNAP_PID = 0, 8, 16, 24, 32, 40
HEAD_SIZE = 64
# an entry: key length and the pid of its process (0: not a gauge, no process of its own),
# the key (padded to 8), the value, the time it was set (the mostrecent modes)
_ENTRY = struct.Struct("<II")
_VALUE = struct.Struct("<dd")
LIVE_MODES = frozenset(("liveall", "livemin", "livemax", "livesum", "livemostrecent"))

# this process's area; None before attach (a value bound to an offset implies the area: those
# uses say `type: ignore[arg-type]`, which mypy cannot follow)
_area: memoryview | None = None
_pid = 0
_offsets: dict[str, int] = {}         # key -> offset of its value in _area
_reusable: dict[str, int] = {}        # a dead process's live-mode gauges: taken over when used
_generation = 0                       # changes when a process attaches, so values re-bind
_bound = 0                            # the generation whose values are all bound
lock = threading.Lock()
_values: weakref.WeakSet[SharedValue] = weakref.WeakSet()
_full = False                         # this process's area had no room for a value: no
_said_full = False                    # more are made in it (no series only partly shown)


def entries(area: memoryview):
    """(key, pid, offset of value) for each entry an area holds."""
    used = U64.unpack_from(area, USED)[0]
    pos = HEAD_SIZE
    while pos < used:
        n, pid = _ENTRY.unpack_from(area, pos)
        key = bytes(area[pos + 8:pos + 8 + n]).decode()
        pos += (8 + n + 7) & ~7
        yield key, pid, pos
        pos += _VALUE.size


def attach(area: memoryview, bind: bool = False) -> None:
    """Take an area, before serving (a worker) or forking (the master, bind=True: the values
    made so far are this process's). A worker keeps what a dead one left in it: its counters
    to continue, its gauges as a dead process's; a live mode's gauge entry is taken over (from
    0) when this process first uses that series, as prometheus_client starts a new file."""
    global _area, _pid, _generation, _full
    with lock:
        pid = os.getpid()
        if U64.unpack_from(area, USED)[0] < HEAD_SIZE:
            U64.pack_into(area, USED, HEAD_SIZE)
        _offsets.clear()
        _reusable.clear()
        for key, owner, offset in entries(area):
            if owner == 0:
                _offsets[key] = offset
            elif owner != pid and json.loads(key)[1] in LIVE_MODES:
                _reusable[key] = offset
        _area, _pid, _full = area, pid, False
        _generation += 1
    if bind:
        with lock:
            next(iter(list(_values)), _Nothing)._bind()


def _entry_start(value_offset: int, key: str) -> int:
    return value_offset - ((8 + len(key.encode()) + 7) & ~7)


def _offset_of(key: str, gauge: bool) -> int | None:
    """Where key's value is in this process's area, made if new; None when it is full."""
    global _said_full, _full
    offset = _offsets.get(key)
    if offset is None and key in _reusable:
        offset = _offsets[key] = _reusable.pop(key)
        _VALUE.pack_into(_area, offset, 0.0, 0.0)  # type: ignore[arg-type]
        _ENTRY.pack_into(_area, _entry_start(offset, key), len(key.encode()),  # type: ignore[arg-type]
                         _pid)                     # (readers skip it until it is _pid's)
    elif offset is None and _area is not None:
        raw = key.encode()
        used = U64.unpack_from(_area, USED)[0]
        start = (used + 8 + len(raw) + 7) & ~7
        if _full or start + _VALUE.size > len(_area) - U64.unpack_from(_area, SNAP_LEN)[0]:
            _full = True
            U64.pack_into(_area, DROPPED, U64.unpack_from(_area, DROPPED)[0] + 1)
            if not _said_full:
                _said_full = True
                log.warning("app metrics: the area of %d bytes (--app-metrics-bytes) of "
                            "process %d is full: %s and later new series are not exposed "
                            "(counted in fastsock_app_metrics_dropped_total)",
                            len(_area), _pid, json.loads(key)[3])
            return None
        _ENTRY.pack_into(_area, used, len(raw), _pid if gauge else 0)
        _area[used + 8:used + 8 + len(raw)] = raw
        _VALUE.pack_into(_area, start, 0.0, 0.0)
        U64.pack_into(_area, USED, start + _VALUE.size)    # published last: readers never
        offset = _offsets[key] = start                      # see half an entry
    return offset


class _Nothing:
    @staticmethod
    def _bind():
        pass


class SharedValue:
    """A prometheus_client value kept in shared memory (the ValueClass interface)."""

    __slots__ = ("_key", "_gauge", "_local", "_offset", "_generation", "__weakref__")

    def __init__(self, typ, metric_name, name, labelnames, labelvalues, help_text,
                 multiprocess_mode="", **kwargs):
        self._gauge = typ == "gauge"
        self._key = json.dumps([typ, multiprocess_mode if self._gauge else "", metric_name,
                                name, list(labelnames), list(labelvalues), help_text])
        self._local = 0.0
        self._offset: int | None = None
        self._generation = -1
        _values.add(self)
        if _area is not None:
            with lock:
                self._bind()

    def _bind(self):
        """Called holding lock: the value's offset in this process's area, found again after
        an attach (a worker's values start from its area, not from what the master held).
        The first value a process uses binds every value it has, as prometheus_client's first
        use after a fork writes them all into the new process's files."""
        global _bound
        if self._generation != _generation:
            if _bound != _generation:
                _bound = _generation
                for value in list(_values):
                    value._bind()
            self._generation = _generation
            self._offset = _offset_of(self._key, self._gauge)
            if self._offset is not None and self._local:
                _VALUE.pack_into(_area, self._offset, self._local, 0.0)  # type: ignore[arg-type]
                self._local = 0.0
        return self._offset

    def inc(self, amount):
        with lock:
            offset = self._bind()
            if offset is None:
                self._local += amount
            else:
                total = F64.unpack_from(_area, offset)[0] + amount  # type: ignore[arg-type]
                _VALUE.pack_into(_area, offset, total, 0.0)  # type: ignore[arg-type]

    def set(self, value, timestamp=None):
        with lock:
            offset = self._bind()
            if offset is None:
                self._local = value
            else:
                _VALUE.pack_into(_area, offset, value, timestamp or 0.0)  # type: ignore[arg-type]

    def set_exemplar(self, exemplar):
        pass

    def get(self):
        with lock:
            offset = self._bind()
            if offset is None:
                return self._local
            return F64.unpack_from(_area, offset)[0]  # type: ignore[arg-type]

    def get_exemplar(self):
        return None


def install() -> None:
    """Route every prometheus_client metric created from now on through shared memory, and
    those of the default registry made before (their values kept)."""
    if values.ValueClass is SharedValue:
        return
    for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
        if os.environ.get(name):
            log.warning("%s is set: fastsock's app metrics take the place of prometheus_client's "
                        "multiprocess files (--no-metrics leaves prometheus_client to them)",
                        name)
    values.ValueClass = SharedValue
    for collector in list(REGISTRY._collector_to_names):    # (no public way to list them)
        if isinstance(collector, (Counter, Gauge, Histogram, Summary)):
            # a labelled one's values are its children's (made by labels())
            for metric in (collector, *getattr(collector, "_metrics", {}).values()):
                _remake_values(metric)


def _remake_values(metric) -> None:
    """A metric's values made again with the value class now installed, holding what they
    held (prometheus_client makes them in _metric_init, with the class of that moment)."""
    before = _values_of(metric)
    if not before or isinstance(before[0], SharedValue):
        return
    created = getattr(metric, "_created", None)
    metric._metric_init()
    for old, new in zip(before, _values_of(metric), strict=False):
        new.set(old.get())
    if created is not None:
        metric._created = created


def _values_of(metric) -> list:
    """A Counter's or Gauge's value, a Summary's count and sum, a Histogram's sum and buckets."""
    found = [getattr(metric, name, None) for name in ("_value", "_count", "_sum")]
    return [v for v in found if v is not None] + list(getattr(metric, "_buckets", ()))


class AppCollector:
    """Merges the application's values over every area at scrape time, as prometheus_client's
    MultiProcessCollector merges its files."""

    def __init__(self, areas):
        self.areas = areas                  # callable -> [(area, pid of its live process or 0)]

    def collect(self):
        families: dict[str, Metric] = {}
        merged: dict[tuple, float] = {}     # (metric, name, labels) -> value
        newest: dict[tuple, float] = {}     # the mostrecent modes: the time of that value
        dropped = 0
        for area, live_pid in self.areas():
            dropped += U64.unpack_from(area, DROPPED)[0]
            for key, pid, offset in entries(area):
                typ, mode, metric_name, name, labelnames, labelvalues, help_text = \
                    json.loads(key)
                if mode in LIVE_MODES and (pid != live_pid or not pid):
                    continue
                value, stamp = _VALUE.unpack_from(area, offset)
                if metric_name not in families:
                    families[metric_name] = Metric(metric_name, help_text, typ)
                labels = tuple(zip(labelnames, labelvalues, strict=False))
                if mode in ("all", "liveall"):
                    labels += (("pid", str(pid)),)
                k = (metric_name, name, labels)
                _merge(merged, newest, k, mode, value, stamp)
        yield from _families(families, merged)
        yield CounterMetricFamily(
            "fastsock_app_metrics_dropped",
            "Application metric values not exposed: their process's area was full "
            "(--app-metrics-bytes).", value=dropped)


def _merge(merged: dict, newest: dict, k: tuple, mode: str, value: float, stamp: float):
    if mode in ("min", "livemin"):
        merged[k] = min(merged.get(k, value), value)
    elif mode in ("max", "livemax"):
        merged[k] = max(merged.get(k, value), value)
    elif mode in ("mostrecent", "livemostrecent"):
        if stamp > newest.get(k, 0.0):          # as prometheus_client: never set, not shown
            merged[k], newest[k] = value, stamp
    elif mode in ("all", "liveall"):
        merged[k] = value
    else:                                       # counters, histograms, summaries; sum, livesum
        merged[k] = merged.get(k, 0.0) + value


def _families(families: dict[str, Metric], merged: dict[tuple, float]):
    """The merged values as families. A histogram's series shows only with its +Inf bucket, a
    summary's only with its sum (the last values prometheus_client makes of each): one the
    area had room for only part of is left out, as its dropped values are counted."""
    whole = {(m, tuple(kv for kv in labels if kv[0] != "le"))
             for m, name, labels in merged
             if (families[m].type == "histogram" and ("le", "+Inf") in labels)
             or (families[m].type == "summary" and name.endswith("_sum"))}
    buckets: dict[tuple, list] = {}
    for (metric_name, name, labels), value in sorted(merged.items()):
        family = families[metric_name]
        if family.type in ("histogram", "summary") and \
                (metric_name, tuple(kv for kv in labels if kv[0] != "le")) not in whole:
            continue
        if family.type == "histogram" and name.endswith("_bucket"):
            rest = tuple(kv for kv in labels if kv[0] != "le")
            le = dict(labels)["le"]
            buckets.setdefault((metric_name, rest), []).append((float(le), value))
        else:
            family.add_sample(name, dict(labels), value)
    for (metric_name, rest), series in buckets.items():   # stored per bucket: accumulate
        acc = 0.0
        for le, value in sorted(series):
            acc += value
            families[metric_name].add_sample(metric_name + "_bucket",
                                             dict(rest + (("le", floatToGoString(le)),)), acc)
        families[metric_name].add_sample(metric_name + "_count", dict(rest), acc)
    return families.values()
