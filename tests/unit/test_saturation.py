"""The definition of fastsock_saturation (fastsock/_saturation.pyx): the largest of four
fractions, each capped at 1, smoothed over time; the server's the mean of its workers', a
worker without a tick for STUCK_AFTER seconds counting as full."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastsock._saturation import SMOOTHING, STUCK_AFTER, server, smooth, worker, worker_value

counts = st.integers(min_value=-5, max_value=10**6)
seconds = st.floats(min_value=-1.0, max_value=1e6, allow_nan=False)


def test_the_largest_part_wins():
    assert worker_value(0.3, 0.1, 1.0, 0, 32, 0, 0, 0, 2048) == pytest.approx(0.3)     # loop
    assert worker_value(0.3, 0.4, 1.0, 0, 32, 0, 0, 0, 2048) == pytest.approx(0.4)     # CPU
    assert worker_value(0.3, 0.1, 1.0, 16, 32, 0, 0, 0, 2048) == pytest.approx(0.5)    # pool
    assert worker_value(0.3, 0.1, 1.0, 16, 32, 90, 100, 0, 2048) == pytest.approx(0.9)  # app
    assert worker_value(0.3, 0.1, 1.0, 16, 32, 90, 100, 2048, 2048) == 1.0  # accept queue


def test_each_part_is_capped_and_a_missing_figure_counts_nothing():
    assert worker_value(2.0, 0, 1.0, 0, 0, 0, 0, 0, 0) == 1.0      # busy past the wall
    assert worker_value(0.0, 1.7, 1.0, 0, 0, 0, 0, 0, 0) == 1.0    # threads beside the GIL
    assert worker_value(0.0, 0, 1.0, 100, 32, 0, 0, 0, 0) == 1.0   # a queue behind the pool
    assert worker_value(0.0, 0, 1.0, 5, 0, 0, 0, 0, 0) == 0.0      # no pool (--threads 0)
    assert worker_value(0.0, 0, 1.0, 0, 0, 5, 0, 0, 0) == 0.0      # no --limit-concurrency
    assert worker_value(0.0, 0, 1.0, 0, 0, 0, 0, 5, -1) == 0.0     # no TCP listener
    assert worker_value(0.5, 0.5, 0.0, 0, 0, 0, 0, 0, 0) == 0.0    # no time passed


@given(seconds, seconds, seconds, counts, counts, counts, counts, counts, counts)
def test_always_between_0_and_1(busy, cpu, wall, peak, threads, in_app, limit, queue, most):
    assert 0.0 <= worker_value(busy, cpu, wall, peak, threads, in_app, limit, queue, most) <= 1.0


def test_smoothing_over_its_time_constant():
    assert smooth(0.0, 1.0, SMOOTHING) == pytest.approx(1 - 1 / math.e)
    # two half steps are one whole step: ticks need not be evenly spaced
    assert smooth(smooth(0.2, 1.0, SMOOTHING / 2), 1.0, SMOOTHING / 2) == \
        pytest.approx(smooth(0.2, 1.0, SMOOTHING))
    assert smooth(0.4, 1.0, 0.0) == 0.4                        # no time: no change
    assert smooth(0.0, 1.0, 100 * SMOOTHING) == pytest.approx(1.0)     # a long stall: full


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1e6))
def test_smoothing_stays_between_old_and_new(old, new, dt):
    assert min(old, new) - 1e-12 <= smooth(old, new, dt) <= max(old, new) + 1e-12


def test_the_server_is_the_mean_and_a_stuck_worker_is_full():
    now = 1000.0
    assert server([(0.2, now), (0.6, now - 1)], now) == pytest.approx(0.4)
    assert server([(0.2, now), (0.1, now - STUCK_AFTER - 0.1)], now) == pytest.approx(0.6)
    assert worker(0.1, now - STUCK_AFTER - 0.1, now) == 1.0
    assert worker(0.1, now - STUCK_AFTER + 0.1, now) == 0.1
    assert server([], now) is None                              # no worker serves
