"""--workers auto: the CPU count comes from the cgroup quota and the affinity mask, never from
the host. Each case is a fake cgroup tree."""
from pathlib import Path

import pytest

from fastsock.cpus import AUTO_CAP, auto_workers, cgroup_cpu_limit, default_workers

HOST_CPUS = set(range(64))                      # a big node


def tree(tmp_path: Path, files: dict, self_cgroup: str) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(self_cgroup)
    return root, proc


V2_SELF = "0::/kubepods/pod1/ctr\n"


@pytest.mark.parametrize("cpu_max, expected", [
    ("200000 100000\n", 2),         # 2 CPUs
    ("150000 100000\n", 2),         # 1.5 rounds up
    ("50000 100000\n", 1),          # half a CPU: still one worker
    ("max 100000\n", 8),            # no limit: the affinity mask, at most AUTO_CAP
    ("400000 100000\n", 4),
])
def test_cgroup_v2(tmp_path, cpu_max, expected):
    root, proc = tree(tmp_path, {"cgroup.controllers": "cpu memory\n",
                                 "kubepods/pod1/ctr/cpu.max": cpu_max}, V2_SELF)
    assert default_workers(root, proc, HOST_CPUS) == expected


def test_cgroup_v2_parent_limit_applies(tmp_path):
    root, proc = tree(tmp_path, {"cgroup.controllers": "cpu\n",
                                 "kubepods/pod1/cpu.max": "100000 100000\n",
                                 "kubepods/pod1/ctr/cpu.max": "max 100000\n"}, V2_SELF)
    assert cgroup_cpu_limit(root, proc) == 1.0
    assert default_workers(root, proc, HOST_CPUS) == 1


def test_cgroup_v2_inside_a_container_namespace(tmp_path):
    # with a cgroup namespace the container sees its own cgroup as the root
    root, proc = tree(tmp_path, {"cgroup.controllers": "cpu\n", "cpu.max": "300000 100000\n"},
                      "0::/\n")
    assert default_workers(root, proc, HOST_CPUS) == 3


@pytest.mark.parametrize("quota, period, expected", [
    ("300000", "100000", 3),
    ("250000", "100000", 3),        # 2.5 rounds up
    ("-1", "100000", 8),            # no limit: at most AUTO_CAP
    ("20000", "100000", 1),
])
def test_cgroup_v1(tmp_path, quota, period, expected):
    root, proc = tree(tmp_path, {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": quota + "\n",
                                 "cpu,cpuacct/docker/abc/cpu.cfs_period_us": period + "\n",
                                 "memory/docker/abc/memory.limit_in_bytes": "1\n"},
                      "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert default_workers(root, proc, HOST_CPUS) == expected


def test_no_cgroup_at_all_uses_affinity(tmp_path):
    root, proc = tree(tmp_path, {}, "")
    assert cgroup_cpu_limit(root, proc) is None
    assert default_workers(root, proc, {0, 1, 2}) == 3


def test_affinity_smaller_than_quota_wins(tmp_path):
    root, proc = tree(tmp_path, {"cgroup.controllers": "cpu\n",
                                 "kubepods/pod1/ctr/cpu.max": "800000 100000\n"}, V2_SELF)
    assert default_workers(root, proc, {5, 6}) == 2


def test_this_machine_gives_a_sane_count():
    n = default_workers()
    assert 1 <= n <= 1024


def test_a_quota_is_honoured_past_the_cap(tmp_path):
    root, proc = tree(tmp_path, {"cgroup.controllers": "cpu\n",
                                 "kubepods/pod1/ctr/cpu.max": "1600000 100000\n"}, V2_SELF)
    n, why = auto_workers(root, proc, HOST_CPUS)
    assert n == 16 > AUTO_CAP and "a CPU quota of 16" in why


def test_without_a_quota_the_count_is_bounded_and_says_why(tmp_path):
    root, proc = tree(tmp_path, {"cgroup.controllers": "cpu\n",
                                 "kubepods/pod1/ctr/cpu.max": "max 100000\n"}, V2_SELF)
    n, why = auto_workers(root, proc, HOST_CPUS)
    assert n == AUTO_CAP < len(HOST_CPUS)
    assert "no CPU quota" in why and "64 CPUs" in why and "--workers" in why
    n, why = auto_workers(root, proc, {0, 1})
    assert n == 2 and "no CPU quota" in why
