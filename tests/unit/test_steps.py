"""The worker's asyncio task factory (fastsock._steps): a task over a timed stand-in of its
coroutine behaves as the task over the coroutine would — result, exception, cancellation,
context, inspection — and the time in its steps is counted, waits are not. On stock asyncio
and on uvloop, real loops."""
from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import time
import types
import weakref

import anyio
import pytest
import uvloop

from fastsock._steps import StepClock, TimedCoroutine


@pytest.fixture(params=[asyncio.new_event_loop, uvloop.new_event_loop],
                ids=["asyncio", "uvloop"])
def timed_loop(request):
    loop = request.param()
    clock = StepClock()
    loop.set_task_factory(clock)
    yield loop, clock
    loop.close()


def run(loop, coro):
    return loop.run_until_complete(loop.create_task(coro))


def test_results_and_exceptions_come_through(timed_loop):
    loop, _ = timed_loop

    async def answer():
        await asyncio.sleep(0)
        return 42

    async def fail():
        await asyncio.sleep(0)
        raise LookupError("the app's")

    assert run(loop, answer()) == 42
    with pytest.raises(LookupError, match="the app's"):
        run(loop, fail())


def test_cancellation_reaches_the_coroutine_and_may_be_caught(timed_loop):
    loop, _ = timed_loop
    seen = []

    async def stubborn():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0)
            return "cleaned up"

    async def cancel_it(stop: bool):
        task = asyncio.ensure_future(stubborn() if not stop else asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        return await asyncio.gather(task, return_exceptions=True)

    assert run(loop, cancel_it(stop=False)) == ["cleaned up"]
    assert seen == ["cancelled"]
    (result,) = run(loop, cancel_it(stop=True))
    assert isinstance(result, asyncio.CancelledError)


def test_a_timeout_cancels_through_it(timed_loop):
    loop, _ = timed_loop

    async def slow():
        await asyncio.sleep(10)

    async def bounded():
        await asyncio.wait_for(slow(), 0.01)

    with pytest.raises(asyncio.TimeoutError):
        run(loop, bounded())


def test_what_is_not_a_coroutine_is_refused_at_once(timed_loop):
    loop, _ = timed_loop
    with pytest.raises(TypeError):
        loop.create_task(42)
    with pytest.raises(TypeError):
        loop.create_task(lambda: None)


def test_generator_coroutines_and_context_and_names(timed_loop):
    loop, _ = timed_loop
    var = contextvars.ContextVar("var", default="unset")

    @types.coroutine
    def old_style():
        yield
        return var.get()

    var.set("outer")
    assert run(loop, old_style()) == "outer"
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in the given context")

    async def read():
        return var.get()

    task = loop.create_task(read(), name="named", context=ctx)
    assert task.get_name() == "named"
    assert loop.run_until_complete(task) == "in the given context"


def test_the_task_still_shows_its_coroutine(timed_loop):
    loop, _ = timed_loop
    states = []

    async def handler_of_the_app():
        coro = asyncio.current_task().get_coro()
        states.append(inspect.getcoroutinestate(coro))
        await asyncio.sleep(0)

    task = loop.create_task(handler_of_the_app())
    assert "handler_of_the_app" in repr(task)
    coro = task.get_coro()
    assert coro.__qualname__.endswith("handler_of_the_app")
    assert coro.cr_frame is not None and inspect.getcoroutinestate(coro) == "CORO_CREATED"
    loop.run_until_complete(task)
    assert states == ["CORO_RUNNING"]
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"


def test_time_in_steps_is_counted_and_waits_are_not(timed_loop):
    loop, clock = timed_loop

    async def blocks():
        time.sleep(0.05)            # the app's bug: the loop is held, the thread off the CPU

    async def waits():
        await asyncio.sleep(0.05)

    before = clock.seconds
    run(loop, blocks())
    blocked = clock.seconds - before
    assert blocked >= 0.05, blocked
    before = clock.seconds
    run(loop, waits())
    waited = clock.seconds - before
    assert waited < 0.5 * 0.05, waited


def test_a_closed_unstarted_task_coroutine_is_closed(timed_loop):
    loop, _ = timed_loop

    async def never():
        return 1

    coro = never()
    task = loop.create_task(coro)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert inspect.getcoroutinestate(coro) == "CORO_CLOSED"


def test_anyio_task_groups_and_cancel_scopes_run_on_it(timed_loop):
    """anyio (under Starlette and FastAPI) inspects its tasks' coroutines to deliver
    cancellation: a task group whose scope times out cancels every child."""
    loop, _ = timed_loop
    ended = []

    async def child(n):
        try:
            await anyio.sleep(10)
        finally:
            ended.append(n)

    async def main():
        with anyio.move_on_after(0.05) as scope:
            async with anyio.create_task_group() as group:
                for n in range(3):
                    group.start_soon(child, n)
        return scope.cancelled_caught

    assert run(loop, main()) is True
    assert sorted(ended) == [0, 1, 2]


def test_a_finished_task_leaves_nothing_behind(timed_loop):
    """No reference cycle through the stand-in: with the collector off, a finished task's
    coroutine is freed as soon as the task is dropped."""
    loop, _ = timed_loop

    async def work():
        await asyncio.sleep(0)
        return 1

    gc.disable()
    try:
        coro = work()
        gone = weakref.ref(coro)
        task = loop.create_task(coro)
        del coro
        assert loop.run_until_complete(task) == 1
        del task
        assert gone() is None
    finally:
        gc.enable()


def test_the_apps_traceback_has_no_frame_of_the_stand_in(timed_loop):
    """The task sends through the stand-in's C slot: what the app raised reaches the task (and
    the error log) with the app's frames only."""
    loop, _ = timed_loop

    async def fails_in_the_app():
        await asyncio.sleep(0)
        raise KeyError("the app's")

    with pytest.raises(KeyError) as raised:
        run(loop, fails_in_the_app())
    frames = [str(entry.path) for entry in raised.traceback]
    assert not any("_steps.pyx" in name for name in frames), frames
    assert raised.traceback[-1].name == "fails_in_the_app"


def test_the_stand_in_is_weakly_referable_and_safe_when_made_by_hand(timed_loop):
    loop, _ = timed_loop

    async def inspected():
        coro = asyncio.current_task().get_coro()
        return weakref.ref(coro)() is coro

    assert run(loop, inspected()) is True
    made = TimedCoroutine()                 # no factory, no coroutine: an error, not a crash
    with pytest.raises(AttributeError):
        made.send(None)

    async def awaits_it():
        await made

    with pytest.raises(AttributeError):
        run(loop, awaits_it())
