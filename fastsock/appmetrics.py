"""Application metrics: Counters, Gauges, Histograms and Summaries that app code defines with
prometheus_client appear in /metrics summed across workers, with no files and nothing to set up.

`install()`, done when a server starts (before the command imports the app, and in serve()),
makes prometheus_client keep every value in the worker's own area of the master's shared memory
(the values of metrics already made too: a script's, before it calls `fastsock.run(app)`): one
writer per area, no locks between processes. Importing fastsock changes nothing in
prometheus_client. A scrape reads all areas and sums by metric and labels. A respawned worker
takes over a free area and continues its values, so counters never go back; gauges count only
from live workers.
"""
from __future__ import annotations

import json
import struct
import threading
import weakref

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary, values
from prometheus_client.metrics_core import Metric

_HEAD = struct.Struct("<Q")           # bytes used in the area
_ENTRY = struct.Struct("<I")          # key length; then the key, padded to 8; then a double
_DOUBLE = struct.Struct("<d")

# this worker's area; None in the master. (A value bound to an offset implies the area: those
# uses say `type: ignore[arg-type]`, which mypy cannot follow.)
_area: memoryview | None = None
_offsets: dict[str, int] = {}         # key -> offset of its value in _area
_generation = 0                       # changes when a worker attaches, so values re-bind
_lock = threading.Lock()
_values: weakref.WeakSet[SharedValue] = weakref.WeakSet()


def _entries(area: memoryview):
    """(key, offset of value) for each entry an area holds."""
    used = _HEAD.unpack_from(area, 0)[0]
    pos = _HEAD.size
    while pos < used:
        (n,) = _ENTRY.unpack_from(area, pos)
        key = bytes(area[pos + 4:pos + 4 + n]).decode()
        pos += (4 + n + 7) & ~7
        yield key, pos
        pos += 8


def attach(area: memoryview) -> None:
    """In a worker, before it serves: take this slot's area, keeping what is in it."""
    global _area, _generation
    _offsets.clear()
    _offsets.update(_entries(area))
    _area = area
    _generation += 1
    for value in list(_values):         # zeros too, as prometheus_client shows them
        value._bind()


def _offset_of(key: str) -> int | None:
    offset = _offsets.get(key)
    if offset is None and _area is not None:
        raw = key.encode()
        used = _HEAD.unpack_from(_area, 0)[0] or _HEAD.size
        start = (used + 4 + len(raw) + 7) & ~7
        if start + 8 > len(_area):
            return None                  # the area is full: this value stays local
        _ENTRY.pack_into(_area, used, len(raw))
        _area[used + 4:used + 4 + len(raw)] = raw
        _DOUBLE.pack_into(_area, start, 0.0)
        _HEAD.pack_into(_area, 0, start + 8)     # published last: readers never see half
        offset = _offsets[key] = start
    return offset


class SharedValue:
    """A prometheus_client value kept in shared memory (the ValueClass interface)."""

    __slots__ = ("_key", "_local", "_offset", "_generation", "__weakref__")

    def __init__(self, typ, metric_name, name, labelnames, labelvalues, help_text, **kwargs):
        if kwargs.get("multiprocess_mode") in ("max", "min", "mostrecent", "livemostrecent",
                                                "livemax", "livemin"):
            typ = "gauge"
        self._key = json.dumps([typ, metric_name, name, list(labelnames), list(labelvalues),
                                help_text])
        self._local = 0.0
        self._offset = None
        self._generation = -1
        _values.add(self)
        if _area is not None:
            self._bind()

    def _bind(self):
        if self._generation != _generation:
            self._generation = _generation
            self._offset = _offset_of(self._key)
            if self._offset is not None and self._local:
                _DOUBLE.pack_into(_area, self._offset, self._local)  # type: ignore[arg-type]
        return self._offset

    def inc(self, amount):
        with _lock:
            offset = self._bind()
            if offset is None:
                self._local += amount
            else:
                total = _DOUBLE.unpack_from(_area, offset)[0] + amount  # type: ignore[arg-type]
                _DOUBLE.pack_into(_area, offset, total)  # type: ignore[arg-type]

    def set(self, value, timestamp=None):
        with _lock:
            offset = self._bind()
            if offset is None:
                self._local = value
            else:
                _DOUBLE.pack_into(_area, offset, value)  # type: ignore[arg-type]

    def set_exemplar(self, exemplar):
        pass

    def get(self):
        offset = self._bind()
        if offset is None:
            return self._local
        return _DOUBLE.unpack_from(_area, offset)[0]  # type: ignore[arg-type]

    def get_exemplar(self):
        return None


def install() -> None:
    """Route every prometheus_client metric created from now on through shared memory, and
    those of the default registry made before (their values kept)."""
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
    """Sums the application's values over every worker's area at scrape time."""

    def __init__(self, areas):
        self.areas = areas                  # callable -> [(area, alive)]

    def collect(self):
        families: dict[str, Metric] = {}
        sums: dict[tuple, float] = {}
        for area, alive in self.areas():
            for key, offset in _entries(area):
                typ, metric_name, name, labelnames, labelvalues, help_text = json.loads(key)
                if typ == "gauge" and not alive:
                    continue
                if metric_name not in families:
                    families[metric_name] = Metric(metric_name, help_text, typ)
                k = (metric_name, name, tuple(zip(labelnames, labelvalues, strict=False)))
                sums[k] = sums.get(k, 0.0) + _DOUBLE.unpack_from(area, offset)[0]
        buckets: dict[tuple, list] = {}
        for (metric_name, name, labels), value in sorted(sums.items()):
            family = families[metric_name]
            if family.type == "histogram" and name.endswith("_bucket"):
                rest = tuple(kv for kv in labels if kv[0] != "le")
                le = dict(labels)["le"]
                buckets.setdefault((metric_name, rest), []).append((float(le), le, value))
            else:
                family.add_sample(name, dict(labels), value)
        for (metric_name, rest), series in buckets.items():   # stored per bucket: accumulate
            acc = 0.0
            for _, le, value in sorted(series):
                acc += value
                families[metric_name].add_sample(metric_name + "_bucket",
                                                 dict(rest + (("le", le),)), acc)
            families[metric_name].add_sample(metric_name + "_count", dict(rest), acc)
        return list(families.values())
