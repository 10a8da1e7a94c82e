"""bench/scale_model.py's arithmetic on cases small enough to check by hand: Erlang B, a pod's
capacity and gauge, the targets, the pods a rate needs, the autoscaler's reaction, a ramp with
no autoscaler left to act (its overflow an integral), and the drain's conditions."""
import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("scale_model", ROOT / "bench" / "scale_model.py")
model = sys.modules["scale_model"] = importlib.util.module_from_spec(_spec)   # (dataclasses)
_spec.loader.exec_module(model)


def test_erlang_b_by_hand():
    assert model.erlang_b(0, 3.0) == 1.0
    assert model.erlang_b(1, 1.0) == pytest.approx(0.5)               # A / (1 + A)
    assert model.erlang_b(2, 1.0) == pytest.approx(0.2)               # (A²/2) / (1 + A + A²/2)
    assert model.erlang_b(2, 2.0) == pytest.approx(2 / 5)             # 2 / (1 + 2 + 2)


def test_a_pods_capacity_is_its_first_full_resource():
    loop_bound = model.Pod(workers=2, cores=1, loop_us=1000)          # two loops share a core
    assert loop_bound.capacities() == {"loop": pytest.approx(1000)}
    both = model.Pod(workers=2, cores=2, loop_us=1000, dependency_ms=100, limit=10)
    assert both.capacities() == {"loop": pytest.approx(2000), "app": pytest.approx(200)}
    assert both.capacity() == pytest.approx(200)
    threads = model.Pod(workers=1, cores=1, thread_ms=50, threads=4)
    assert threads.capacity() == pytest.approx(80)


def test_the_gauge_and_the_refusals_at_a_steady_rate():
    loop_bound = model.Pod(workers=1, cores=1, loop_us=2000)          # 500 req/s
    assert loop_bound.saturation(250) == pytest.approx(0.5)
    assert loop_bound.saturation(1000) == 1.0
    assert loop_bound.refused(250) == 0.0
    assert loop_bound.refused(1000) == pytest.approx(0.5)             # half beyond capacity
    limited = model.Pod(workers=1, cores=1, dependency_ms=1000, limit=2)
    # 1 Erlang on 2 slots: B = 0.2 refused; a tick's peak (1 + 1.28) / 2 is past the limit
    assert limited.refused(1.0) == pytest.approx(0.2)
    assert limited.saturation(1.0) == 1.0
    roomy = model.Pod(workers=1, cores=1, dependency_ms=1000, limit=16)
    # 4 Erlangs on 16 slots: peak (4 + 1.28 * 2) / 16 = 0.41; B(16, 4) ~ 1e-6, nearly no jump
    assert roomy.saturation(4.0) == pytest.approx(0.41, abs=1e-3)
    # 8 Erlangs: peak (8 + 1.28 * 2.83) / 16 = 0.726; B(16, 8) = 0.0045, 0.036 refused a
    # second, p = 0.0355, jump 0.0355 / (1 - 0.9645 * 0.8187) = 0.168: 0.726 + 0.274 * 0.168
    assert roomy.saturation(8.0) == pytest.approx(0.772, abs=2e-3)


def test_targets():
    assert model.limit_target(2, 0.2) == pytest.approx(0.5, abs=1e-6)    # B(2, 1) = 0.2
    assert model.limit_target(1, 0.5) == pytest.approx(1.0, abs=1e-6)    # B(1, 1) = 0.5
    assert model.loop_target(1.0, 10 * math.log(100)) == pytest.approx(0.9)
    assert model.pods_needed(1000, 100, 0.7) == 15                    # ceil(14.3)
    assert model.pods_needed(10, 100, 0.7) == 1
    assert model.headroom_s(700, 0.7, 10) == pytest.approx(30)        # 300 req/s spare at 10/s
    assert model.target_for_ramp(1000, 10, 50) == pytest.approx(2 / 3)


def test_the_reaction_adds_the_lag_the_periods_and_the_start():
    a = model.Autoscaler(smoothing_s=5, scrape_s=15, poll_s=15, sync_s=15, start_s=10,
                         readiness_s=2, endpoints_s=2)
    assert a.reaction() == (pytest.approx(17 + 47 / 2), pytest.approx(64))


def test_a_ramp_the_autoscaler_cannot_follow_overflows_by_the_integral():
    # 2 pods of 100 req/s (target 0.5 at 100 req/s), +10 req/s each second for 20 s, no pod
    # may be added: the last 10 s overflow by 10 (t - 10) a second, 500 requests in all
    a = model.Autoscaler(max_pods=2)
    r = model.ramp(model.Pod(workers=1, cores=1, loop_us=10_000), 100, 10, 20, 0.5, a)
    assert r.pods0 == 2
    assert r.first_new_pod_s is None
    assert r.refused == pytest.approx(500, rel=0.02)
    assert r.offered == pytest.approx(100 * 20 + 10 * 20 ** 2 / 2, rel=0.01)
    assert r.backlog_max == pytest.approx(500, rel=0.02)


def test_a_ramp_within_the_targets_room_refuses_nothing_and_adds_pods():
    a = model.Autoscaler(max_pods=100)
    # 10 pods of 100 at 0.7: 300 req/s of room, 2 req/s per second uses it in 150 s
    pod = model.Pod(workers=1, cores=1, loop_us=10_000)                 # 100 req/s
    r = model.ramp(pod, 700, 2, 300, 0.7, a)
    assert r.refused == 0.0
    assert r.first_new_pod_s is not None and r.first_new_pod_s < 150
    assert r.pods[-1][1] > 10
    flat = model.ramp(pod, 700, 0, 300, 0.7, a)
    assert flat.refused == 0.0 and flat.first_new_pod_s is None


def test_a_ramp_behind_a_limit_refuses_by_erlang_b():
    # one pod, one worker of 2 slots held 1 s each, the autoscaler held at 1 pod: a flat
    # 1 req/s is 1 Erlang on 2 slots, B = 0.2 of the requests refused
    pod = model.Pod(workers=1, cores=1, dependency_ms=1000, limit=2)
    r = model.ramp(pod, 1.0, 0, 100, 0.9, model.Autoscaler(max_pods=1))
    assert r.pods0 == 1
    assert r.refused == pytest.approx(0.2 * 100, rel=0.01)


def test_the_drain_cuts_nothing_only_when_each_bound_holds():
    ok = model.drain_checks(5, 30, 45, 0.2, 2, 1, 2)
    assert [passed for _, passed in ok] == [True, True, True]
    long_request = model.drain_checks(5, 30, 45, 40, 2, 1, 2)
    assert [passed for _, passed in long_request] == [True, False, True]
    short_grace = model.drain_checks(5, 30, 35, 0.2, 2, 3, 2)
    assert [passed for _, passed in short_grace] == [False, True, False]
