"""The accept balancer's decisions over the shared slots, without a server or epoll: a worker
stands aside only while enough others that are not stuck watch the listener, and a worker with
more connections than another watcher goes to the back of the queue."""
import os

from fastsock._accept import policy_over
from fastsock._shared import SharedState

RUNNING = SharedState.RUNNING
L0 = 1                                  # the watching bit of listener 0


def test_a_worker_stands_aside_only_while_two_responsive_others_watch():
    shared = SharedState(3)
    policy = policy_over(shared, 0, [(RUNNING, L0, 0, 0.0), (RUNNING, L0, 0, 0.0),
                                     (RUNNING, L0, 0, 0.0)])
    assert policy.stands_aside(0, 100.0)
    shared2 = SharedState(3)
    policy2 = policy_over(shared2, 0, [(RUNNING, L0, 0, 0.0), (RUNNING, L0, 0, 0.0),
                                       (RUNNING, 0, 0, 0.0)])
    assert not policy2.stands_aside(0, 100.0)       # one other watcher: stay


def test_a_worker_stuck_in_a_handler_does_not_count_as_watching():
    shared = SharedState(3)
    # slot 2 woke 1 s ago and has not waited since: stuck
    policy = policy_over(shared, 0, [(RUNNING, L0, 0, 0.0), (RUNNING, L0, 0, 0.0),
                                     (RUNNING, L0, 0, 99.0)])
    assert not policy.stands_aside(0, 100.0)
    policy = policy_over(shared, 0, [(RUNNING, L0, 0, 0.0), (RUNNING, L0, 0, 0.0),
                                     (RUNNING, L0, 0, 99.999)])
    assert policy.stands_aside(0, 100.0)            # woken 1 ms ago: responsive


def test_a_worker_with_more_connections_than_another_watcher_goes_to_the_back():
    shared = SharedState(2)
    assert policy_over(shared, 0, [(RUNNING, L0, 5, 0.0), (RUNNING, L0, 2, 0.0)]).requeues(0)
    assert not policy_over(shared, 0, [(RUNNING, L0, 2, 0.0), (RUNNING, L0, 5, 0.0)]).requeues(0)
    # a worker that is not running is no one to hand connections to
    assert not policy_over(shared, 0, [(RUNNING, L0, 5, 0.0),
                                       (SharedState.DRAINING, L0, 2, 0.0)]).requeues(0)


def test_balancing_calls_back_the_least_loaded_worker_that_stood_aside():
    shared = SharedState(3)
    policy = policy_over(shared, 0, [(RUNNING, L0, 5, 0.0), (RUNNING, 0, 3, 0.0),
                                     (RUNNING, 0, 1, 0.0)])
    policy.requeues(0)
    fd1, fd2 = shared.nudge_fd(1), shared.nudge_fd(2)
    os.set_blocking(fd1, False)
    os.set_blocking(fd2, False)
    assert int.from_bytes(os.read(fd2, 8), "little") == 1      # the fewest connections
    try:
        os.read(fd1, 8)
        raise AssertionError("slot 1 was called back too")
    except BlockingIOError:
        pass
