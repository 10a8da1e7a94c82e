"""How a handler runs: inline on the worker's loop, as a task on the worker's asyncio loop
(`async def` handlers), or in the worker's thread pool (plain handlers asked to).

Inline is a plain call: the response is written before the loop reads on. The other two return a
Deferred at once; the connection waits (reading nothing more, so pipelined responses stay in
order) until the runner completes it on the loop's thread. A client that leaves first cancels an
asyncio task (CancelledError inside it); a thread cannot be stopped, so its result is dropped.
A timeout (per route, or --handler-timeout) answers 504 and cancels the task.

The runner also carries the bodies that stream between those handlers and the loop: a request
body read as it arrives (RequestStream), a response body pushed as it is made (start_feed).
What a handler's result or exception becomes as a response is results.py's.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import queue
import threading

from fastsock._handoff import BodyIn, Deferred
from fastsock._message import Response
from fastsock._shared import KIND_THREAD
from fastsock.logs import REQUEST, current_request
from fastsock.responses import GATEWAY_TIMEOUT, POOL_FULL, SERVER_ERROR, SHUTTING_DOWN
from fastsock.results import error_response, to_response
from fastsock.websocket import WebSockets

error_log = logging.getLogger("fastsock.error")


def complete(deferred: Deferred, req, result, exc, runner: Runner,
             pull_inline: bool = False) -> None:
    """A handler's outcome as its response: the exception it raised (error_response), else its
    result (to_response); a plain iterator body is pulled in the pool (pooled_body). A result
    that cannot be sent is one 500; one that comes too late (a 504 went, or the client) has
    its body closed: close() by the connection, aclose() here."""
    token = REQUEST.set(req)            # what is logged here is that request's
    try:
        if exc is not None:
            response = error_response(req, exc)
        else:
            response = to_response(result)
            if not pull_inline and type(response) is Response:
                response.body = runner.pooled_body(response.body)
        if deferred.is_done and type(response) is Response:
            runner.aclose_unsent(response.body)
        deferred.complete(response)
    except Exception as e:              # noqa: BLE001  (any failure here is one 500)
        error_log.error("completing %s %s failed", req.method, req.path, exc_info=e)
        deferred.complete(SERVER_ERROR)
    finally:
        REQUEST.reset(token)


# iterators over what is already in memory: pulling them never blocks, so they stay inline
_IN_MEMORY: tuple = ([], (), "", "\u00e9", b"", bytearray(), range(0), {}, {}.values(),
                     {}.items())
NEVER_BLOCKS = frozenset(type(iter(x)) for x in _IN_MEMORY)


def is_async(handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None))     # noqa: B004  (the method, to inspect it)


class Runner:
    """One worker's means to run handlers off the loop: its asyncio loop (uvloop when
    installed) and thread pool. `loop` is the worker's event Loop (it counts the tasks)."""

    def __init__(self, loop=None, aio: asyncio.AbstractEventLoop | None = None, threads: int = 0,
                 backlog: int = 0, timeout: float = 0.0, threads_by_default: bool = False):
        self.loop, self._aio, self.timeout = loop, aio, timeout
        self.threads_by_default = threads_by_default
        self.threads, self.backlog = threads, backlog
        self.thread_jobs = 0            # in the pool: running or queued
        self.jobs_peak = 0              # the most at once since the loop's last tick
        self._threads: list[threading.Thread] = []     # submit()'s
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        # pool threads waiting in wait_on_loop: they hold no CPU, and what they wait for may
        # need a thread of its own (a threaded handler): the pool may grow by as many
        self.parked = 0
        self._parking = threading.Lock()
        self.websockets = WebSockets()  # the worker's options: Config.websockets()

    @property
    def aio(self) -> asyncio.AbstractEventLoop:
        """The worker's asyncio loop, made on first use: an app of plain inline handlers
        never has one (nor its fds)."""
        if self._aio is None:
            self._aio = new_event_loop()
            asyncio.set_event_loop(self._aio)
            if self.loop is not None:
                self.loop.aio = self._aio
            steps = getattr(self.loop, "steps", None)   # a Loop's (not the test client's)
            if steps is not None:       # its tasks' steps timed: busy time while in asyncio
                self._aio.set_task_factory(steps)
        return self._aio

    def hold_aio(self) -> None:
        """The asyncio loop runs the worker's thread from now on (the epoll loop turning
        inside it), not only while handlers wait: for an app with tasks of its own (ASGI)."""
        self.aio                        # noqa: B018  (the property makes the loop)
        self.loop.tasks += 1

    def run_async(self, handler, timeout: float | None, pull_inline: bool = False):
        """handler(req, **params) -> Deferred, completed when its coroutine ends."""
        timeout = self.timeout if timeout is None else timeout

        @functools.wraps(handler)
        def start(req, **params):
            deferred = Deferred()
            token = REQUEST.set(req)        # the task's context, copied now, has its request
            try:
                task = self.aio.create_task(handler(req, **params))
            finally:
                REQUEST.reset(token)
            # the stub's on_cancel is Callable[[], None]: any callable() will do (its result is
            # dropped), task.cancel's bool too
            deferred.on_cancel = task.cancel    # type: ignore[assignment]
            self.loop.tasks += 1
            timer = self.aio.call_later(timeout, self._expire, deferred, task) if timeout \
                else None
            task.add_done_callback(functools.partial(self._task_done, deferred, req, timer,
                                                     pull_inline))
            return deferred
        return start

    def _expire(self, deferred: Deferred, task) -> None:
        deferred.complete(GATEWAY_TIMEOUT)
        task.cancel()

    def _task_done(self, deferred: Deferred, req, timer, pull_inline: bool, task) -> None:
        if timer is not None:
            timer.cancel()
        try:
            if task.cancelled():
                deferred.complete(SHUTTING_DOWN)    # only reaches a client still there
            else:
                exc = task.exception()
                complete(deferred, req, None if exc is not None else task.result(), exc, self,
                         pull_inline)
        finally:
            self.loop.task_done()

    # -- the thread pool

    def run_in_thread(self, handler, timeout: float | None, pull_inline: bool = False):
        """handler(req, **params) -> Deferred, completed when the pool has run it; 503 with
        Retry-After past the pool's backlog. The pool is the plain one (submit): no asyncio
        unless a timeout needs a timer."""
        timeout = self.timeout if timeout is None else timeout
        limit = self.threads + self.backlog

        @functools.wraps(handler)
        def start(req, **params):
            if self.thread_jobs >= limit:
                self.refused()
                return POOL_FULL
            job = _ThreadJob(self, handler, req, params, pull_inline)
            self.submit(job.run)
            if timeout:
                self.loop.tasks += 1
                job.timer = self.aio.call_later(timeout, job.deferred.complete, GATEWAY_TIMEOUT)
            return job.deferred
        return start

    def open_tasks(self) -> int:
        """asyncio tasks not done in this worker: handlers, ASGI requests, WebSocket sessions,
        the app's own (once a tick, for the metrics)."""
        return len(asyncio.all_tasks(self._aio)) if self._aio is not None else 0

    def refused(self) -> None:
        """A request was answered 503 because the pool's backlog is full: counted."""
        count = getattr(self.loop, "refused_by_pool", None)
        if count is not None:
            count()

    def submit(self, job) -> None:
        """Run job() on one of the worker's plain threads (made as needed, up to --threads),
        without asyncio: the job hands its results back with loop.call_soon_threadsafe, and
        its end is counted there (thread_jobs)."""
        self.thread_jobs += 1
        if self.thread_jobs > self.jobs_peak:
            self.jobs_peak = self.thread_jobs
        if (self.thread_jobs > len(self._threads)
                and len(self._threads) < self.threads + self.parked):
            thread = threading.Thread(target=self._work, name="fastsock-handler", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._jobs.put((job, current_request()))    # the job's logs are its request's

    def _work(self) -> None:
        jobs, call_soon, ended = self._jobs, self.loop.call_soon_threadsafe, self._job_ended
        while True:
            item = jobs.get()
            if item is None:
                return
            job, req = item
            token = REQUEST.set(req)
            try:
                job()
            except BaseException:       # noqa: BLE001  (logged: the pool thread lives on)
                error_log.exception("a job in the thread pool failed")
            finally:
                REQUEST.reset(token)
                item = job = req = None     # an idle thread holds nothing of its last job
                call_soon(ended, None)

    def _job_ended(self, _) -> None:
        self.thread_jobs -= 1

    # -- streamed bodies

    def start_feed(self, feed, stream) -> None:
        """Push an async iterator's chunks into a connection (Feed), from a task; a stream
        that pushes its own chunks (ASGI's send, a WSGI app's thread) takes the feed."""
        attach = getattr(stream, "attach_feed", None)
        if attach is not None:
            attach(feed)
            return
        began: list = []
        token = REQUEST.set(current_request())      # the stream's request (the loop is in it)
        try:
            task = self.aio.create_task(self._pump(feed, stream, began))
        finally:
            REQUEST.reset(token)
        feed.on_cancel = task.cancel
        self.loop.tasks += 1
        task.add_done_callback(functools.partial(self._pump_ended, stream, began))

    def _pump_ended(self, stream, began: list, _task) -> None:
        # a task cancelled before its first step (the client went at once) never ran _pump,
        # nor its finally: the stream is told here
        if not began:
            self._aclose(stream)
        self.loop.task_done()

    def aclose_unsent(self, body) -> None:
        """An async body that will never be pulled: its aclose(). (A body with close() is
        the connection's to close: close_stream.)"""
        if getattr(body, "close", None) is None:
            self._aclose(body)

    def _aclose(self, body) -> None:
        """body.aclose(), if it has one, as a task the loop waits for."""
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            self.loop.tasks += 1
            task = self.aio.create_task(_quietly(aclose()))
            task.add_done_callback(lambda _: self.loop.task_done())

    async def _pump(self, feed, stream, began: list) -> None:
        began.append(True)
        try:
            failed = False
            try:
                async for chunk in stream:
                    if not feed.write(chunk):       # no room (or the client is gone)
                        if feed.closed:
                            return
                        room = self.aio.create_future()
                        feed.on_drain = functools.partial(_wake, room)
                        await room
                feed.end()
            except asyncio.CancelledError:
                raise
            except Exception as e:      # noqa: BLE001  (the app's body: logged, stream failed)
                error_log.error("streamed response failed", exc_info=e)
                failed = True
            if failed:                  # out of the except: the cut logs its line alone, not
                feed.fail("streamed response failed")   # the traceback a second time
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:       # noqa: BLE001  (the app's aclose(): the stream is over)
                    pass

    def pooled_body(self, body):
        """A response body as the loop should pull it: a plain iterator (a generator, a file)
        pulled in the pool chunk by chunk (submit), so one that blocks between chunks never
        stalls the loop; any other body (bytes, an async iterator, an iterator over what is
        in memory: NEVER_BLOCKS) as it is, and every body when there is no pool
        (--threads 0)."""
        if (type(body) is bytes or not self.threads or type(body) in NEVER_BLOCKS
                or not hasattr(body, "__next__")):
            return body
        return _PooledIterator(self, body)

    # -- plain code and asyncio, each waiting for the other

    async def in_pool(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) in the pool, awaited on the asyncio loop."""
        arrived = self.aio.create_future()
        self.submit(functools.partial(self._call, arrived, fn, args, kwargs))
        return await arrived

    def _call(self, arrived, fn, args, kwargs) -> None:      # on a pool thread
        result = exc = None
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:      # noqa: BLE001  (handed to the loop, raised there)
            exc = e
        self.loop.call_soon_threadsafe(_settle, (arrived, (result, exc)))

    def wait_on_loop(self, coro, waits: Waits):
        """From a pool thread: run coro on the asyncio loop and wait for its result (the
        thread is parked meanwhile: see submit), unless waits is (or gets) cancelled."""
        if waits.cancelled:
            coro.close()
            raise asyncio.CancelledError
        with self._parking:
            self.parked += 1
        try:
            future = asyncio.run_coroutine_threadsafe(self._counted(coro), self.aio)
            waits.futures.append(future)
            if waits.cancelled:         # cancelled meanwhile: waits.cancel() missed it
                future.cancel()
            return future.result()
        finally:
            with self._parking:
                self.parked -= 1

    async def _counted(self, coro):
        self.loop.tasks += 1            # the loop keeps asyncio running until it ends
        try:
            return await coro
        finally:
            self.loop.task_done()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


class Waits:
    """What a pool thread waits for on the asyncio loop (wait_on_loop), for the loop's thread
    to cancel: one of the two sees the other's step (the GIL orders them)."""

    __slots__ = ("cancelled", "futures")

    def __init__(self):
        self.cancelled = False
        self.futures: list = []

    def cancel(self) -> None:
        self.cancelled = True
        for future in list(self.futures):
            future.cancel()


def _wake(future: asyncio.Future) -> None:
    """A one-shot callback (on_drain, a body's waiter): the future it was made for, done."""
    if not future.done():
        future.set_result(None)


async def _quietly(aw) -> None:
    try:
        await aw
    except Exception:                   # noqa: BLE001  (quietly: an unsent body's aclose())
        pass


def _settle(pulled) -> None:            # on the loop's thread
    arrived, (chunk, exc) = pulled
    if not arrived.done():              # (cancelled: the client went)
        if exc is not None:
            arrived.set_exception(exc)
        else:
            arrived.set_result(chunk)


_END = object()


class _PooledIterator:
    """A plain iterator as an async one whose next() runs in the pool. Its close() (the end,
    the client gone, HEAD) runs exactly once, in the pool: a generator cannot be closed while
    a thread is inside its next() ("generator already executing", and its finally would never
    run), so a close asked for meanwhile is done by that thread once next() returns."""

    __slots__ = ("runner", "iterator", "lock", "busy", "closing")

    def __init__(self, runner: Runner, iterator):
        self.runner, self.iterator = runner, iterator
        self.lock = threading.Lock()
        self.busy = False               # a pool thread is inside next()
        self.closing = False            # close() was asked for (or the iterator ended)

    def __aiter__(self):
        return self

    async def __anext__(self):
        with self.lock:
            if self.closing:
                raise StopAsyncIteration
            self.busy = True
        arrived = self.runner.aio.create_future()
        self.runner.submit(functools.partial(self._next, arrived))
        chunk = await arrived
        if chunk is _END:
            raise StopAsyncIteration
        return chunk

    def _next(self, arrived) -> None:           # on a pool thread
        chunk = exc = None
        try:
            chunk = next(self.iterator, _END)
        except BaseException as e:      # noqa: BLE001  (the app's iterator: handed to the loop)
            exc = e
        with self.lock:
            self.busy = False
            abandoned = self.closing
            over = chunk is _END or exc is not None
            self.closing = True if over else abandoned
        if abandoned or over:
            self._close()               # here, in the thread that iterated it
        if not abandoned:
            self.runner.loop.call_soon_threadsafe(_settle, (arrived, (chunk, exc)))

    def close(self) -> None:
        """On the loop's thread: HEAD (the connection calls it) or the stream's end."""
        with self.lock:
            if self.closing:
                return
            self.closing = True
            if self.busy:
                return                  # the thread inside next() closes it
        self.runner.submit(self._close)

    async def aclose(self) -> None:     # the pump's end: done, failed or cancelled
        self.close()

    def _close(self) -> None:
        close = getattr(self.iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:           # noqa: BLE001  (the app's close(): logged)
                error_log.exception("closing a streamed response failed")


class _ThreadJob:
    """A plain handler's call in the thread pool: its outcome is handed to the loop's thread,
    which makes the response (a thread cannot be stopped: after a 504 its result is dropped)."""

    __slots__ = ("runner", "handler", "req", "params", "deferred", "timer", "pull_inline")

    def __init__(self, runner: Runner, handler, req, params: dict, pull_inline: bool):
        self.runner, self.handler, self.req, self.params = runner, handler, req, params
        self.pull_inline = pull_inline
        self.deferred = Deferred(KIND_THREAD)
        self.timer: asyncio.TimerHandle | None = None

    def run(self) -> None:                  # on a pool thread
        outcome: tuple[object, BaseException | None]
        try:
            outcome = (self.handler(self.req, **self.params), None)
        except BaseException as e:          # noqa: BLE001  (the handler's: handed to the loop)
            outcome = (None, e)
        self.runner.loop.call_soon_threadsafe(self.done, outcome)

    def done(self, outcome) -> None:        # on the loop's thread
        if self.timer is not None:
            self.timer.cancel()
            self.runner.loop.task_done()
        result, exc = outcome
        complete(self.deferred, self.req, result, exc, self.runner, self.pull_inline)


class RequestStream:
    """req.stream() of a route with stream=True: the body's chunks as they arrive."""

    def __init__(self, body_in: BodyIn, aio: asyncio.AbstractEventLoop):
        self.body_in, self.aio = body_in, aio

    def __aiter__(self):
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunk = self.body_in.take()
            if chunk is not None:
                return chunk
            arrived = self.aio.create_future()
            self.body_in.waiter = functools.partial(_wake, arrived)
            await arrived


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The worker's asyncio loop: uvloop when it is installed."""
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()
