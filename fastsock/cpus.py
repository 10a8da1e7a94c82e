"""How many workers: the CPUs this process may really use — the cgroup CPU quota and the
affinity mask — never the host's CPU count (a 64-core node with a 2-CPU limit gets 2). Without
a quota (a Kubernetes pod with a CPU request and no limit) the node's CPUs are shared with its
other pods, so auto takes at most AUTO_CAP of them."""
from __future__ import annotations

import math
import os
from pathlib import Path


def _v2_quota(cgroup_root: Path, rel: str) -> float | None:
    """cgroup v2: the tightest `cpu.max` from this cgroup up to the root."""
    best = None
    path = Path(rel.lstrip("/"))
    while True:
        f = cgroup_root / path / "cpu.max"
        if f.is_file():
            quota, _, period = f.read_text().strip().partition(" ")
            if quota != "max" and period:
                cpus = int(quota) / int(period)
                best = cpus if best is None else min(best, cpus)
        if path == Path("."):
            return best
        path = path.parent


def _v1_quota(cgroup_root: Path, rel: str) -> float | None:
    """cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us in the cpu controller's hierarchy."""
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        base = cgroup_root / controller
        if not base.is_dir():
            continue
        best = None
        for path in (base / rel.lstrip("/"), base):     # inside a container, often the root
            q, p = path / "cpu.cfs_quota_us", path / "cpu.cfs_period_us"
            if q.is_file() and p.is_file():
                quota, period = int(q.read_text()), int(p.read_text())
                if quota > 0 and period > 0:
                    best = quota / period if best is None else min(best, quota / period)
        return best
    return None


def cgroup_cpu_limit(cgroup_root: str | Path = "/sys/fs/cgroup",
                     proc_self_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """The CPU quota as a number of CPUs (may be fractional), or None when there is none."""
    root = Path(cgroup_root)
    try:
        lines = Path(proc_self_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    v2_rel, v1_rel = None, None
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, rel = rest.partition(":")
        if hier == "0" and controllers == "":
            v2_rel = rel
        elif "cpu" in controllers.split(","):
            v1_rel = rel
    if (root / "cgroup.controllers").is_file():        # unified (v2) hierarchy
        return _v2_quota(root, v2_rel or "/")
    return _v1_quota(root, v1_rel or "/")


# gunicorn's docs advise 4-12 workers for most services; one event loop per worker does what
# several threads of a sync server do, so the low half of that range
AUTO_CAP = 8


def auto_workers(cgroup_root: str | Path = "/sys/fs/cgroup",
                 proc_self_cgroup: str | Path = "/proc/self/cgroup",
                 affinity: set[int] | None = None) -> tuple[int, str]:
    """--workers auto -> (the count, why: a line for the start-up log)."""
    cpus = len(os.sched_getaffinity(0) if affinity is None else affinity)
    quota = cgroup_cpu_limit(cgroup_root, proc_self_cgroup)
    if quota is not None:
        n = max(1, min(cpus, math.ceil(quota)))
        return n, f"a CPU quota of {quota:g}, {cpus} CPUs in the affinity mask"
    if cpus > AUTO_CAP:
        return AUTO_CAP, (f"no CPU quota: {cpus} CPUs in the affinity mask, at most {AUTO_CAP} "
                          f"without a quota (set --workers or a CPU limit for more)")
    return max(1, cpus), f"no CPU quota, {cpus} CPUs in the affinity mask"


def default_workers(cgroup_root: str | Path = "/sys/fs/cgroup",
                    proc_self_cgroup: str | Path = "/proc/self/cgroup",
                    affinity: set[int] | None = None) -> int:
    return auto_workers(cgroup_root, proc_self_cgroup, affinity)[0]
