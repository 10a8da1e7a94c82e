"""An app's before/after hooks, middleware and error handlers, composed around each handler once,
when the dispatcher is built. A handler of an app without any is called as it is.

One model for every route: middleware (first registered outermost) wraps [before hooks, the
handler, error handlers, after hooks] whatever the handler's kind (inline, async, threaded,
streaming) and whichever way each piece is written (plain or `async def`). What call_next
returns is always a Response, made from whatever the handler returned (str, bytes, dict, tuple,
None, an iterator, a Response: copied, so a shared one is never changed), for the middleware
to change. HTTPError and the app's error handlers become responses inside the middleware (it
sees them); any other exception goes up through call_next, and error handlers also catch what
middleware raises. A WebSocket route's layers wrap its opening handshake (wslayers, on
async_layers): call_next returns the 101 or the refusal.

How the pieces run:
- all plain: one plain call, inline or in the thread pool as the route says (as without hooks);
- anything async: the route runs as a task on the worker's asyncio loop; an inline handler is
  called there (on the loop's thread), a threaded one in the pool; plain middleware inside the
  innermost async piece runs with the handler (inline, or in the same pool job); a plain
  middleware with something async inside it runs in the pool, its call_next waiting for the
  rest on the asyncio loop (the way Django runs sync middleware around async views): it holds a
  pool thread while the handler awaits.
"""
from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from fastsock._message import Response
from fastsock.results import HTTPError, as_response, busy_response
from fastsock.runner import Waits, is_async


def has_layers(app) -> bool:
    return bool(app.before or app.after or app.middlewares or app.error_handlers)


def runnable(handler: Callable, options: dict, runner, app):
    """The handler inside the app's layers, as the dispatcher calls it: a plain callable
    (inline), or one that starts a task or a pool job and returns a Deferred."""
    threaded = options.get("threaded")
    if threaded is None and runner is not None:
        threaded = runner.threads_by_default
    timeout, pull_inline = options.get("timeout"), bool(options.get("pull_inline"))
    layers = (*app.middlewares, *app.before, *app.after, *app.error_handlers.values())
    if not is_async(handler) and not any(is_async(fn) for fn in layers):
        chain = _sync_chain(app, app.middlewares, _sync_core(handler, app))
        if threaded:
            _needs_pool(runner, handler, "runs in the thread pool")
            return runner.run_in_thread(chain, timeout, pull_inline)
        return chain
    if runner is None:
        raise RuntimeError(f"{handler.__qualname__} runs on an asyncio loop (it or a hook or "
                           "middleware of the app is async): serve the app (fastsock "
                           "MODULE:APP) or test it with fastsock.testing")
    return runner.run_async(_async_chain(handler, app, runner, bool(threaded)), timeout,
                            pull_inline)


def async_layers(handler: Callable, app, runner) -> Callable:
    """An `async def handler(req, **params)` inside the app's layers, as a coroutine function
    of the same call returning a Response: for a route that is answered its own way (a
    WebSocket's handshake: wslayers)."""
    return _async_chain(handler, app, runner, False)


def _needs_pool(runner, handler: Callable, why: str) -> None:
    if runner is None or not runner.threads:
        raise RuntimeError(f"{handler.__qualname__} {why}, which this server has none of "
                           "(--threads 0)")


def _error_handler(app, exc: Exception):
    for t in type(exc).__mro__:
        found = app.error_handlers.get(t)
        if found is not None:
            return found
    return None


def _sync_core(handler: Callable, app) -> Callable:
    before, after = tuple(app.before), tuple(app.after)

    def core(req):
        try:
            for hook in before:
                result = hook(req)
                if result is not None:
                    break
            else:
                result = handler(req, **(req.path_params or {}))
            response = as_response(result)
        except Exception as e:
            found = _error_handler(app, e)
            if found is not None:
                response = as_response(found(req, e))
            elif isinstance(e, HTTPError):
                response = as_response(e)
            else:
                raise
        for hook in after:
            replaced = hook(req, response)
            if replaced is not None:
                response = as_response(replaced)
        return response
    core.__qualname__ = handler.__qualname__
    return core


def _sync_chain(app, middlewares, core: Callable) -> Callable:
    """core inside the plain middlewares (outermost first); what they raise goes to the
    error handlers."""
    chain = core
    for mw in reversed(middlewares):
        chain = _link(mw, chain)
    hooked = _outermost(chain, app)
    hooked.__qualname__ = core.__qualname__
    return hooked


def _link(mw: Callable, call_next: Callable) -> Callable:
    return lambda req: _answer(mw, mw(req, call_next))


def _answer(mw: Callable, result):
    """What a middleware returned, as a Response: None is a mistake (a forgotten return),
    not a 204. A Response goes as it is (the one call_next gave, or the middleware's own):
    copied only where it came from, the handler."""
    if type(result) is Response:
        return result
    if result is None:
        raise TypeError(f"the middleware {mw.__qualname__} returned None: return what "
                        "call_next(req) returned, or a response")
    return as_response(result)


def _outermost(chain: Callable, app) -> Callable:
    def hooked(req, **params):
        try:
            return chain(req)
        except Exception as e:
            found = _error_handler(app, e)
            if found is None:
                raise
            return as_response(found(req, e))
    return hooked


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


def _async_chain(handler: Callable, app, runner, threaded: bool) -> Callable:
    middlewares = list(app.middlewares)
    hooks_sync = not any(is_async(fn) for fn in (*app.before, *app.after,
                                                 *app.error_handlers.values()))
    if not is_async(handler) and hooks_sync:
        # the plain middleware innermost run with the plain handler: inline, or one pool job
        inner: list = []
        while middlewares and not is_async(middlewares[-1]):
            inner.insert(0, middlewares.pop())
        part = _sync_chain(app, inner, _sync_core(handler, app))
        if threaded:
            _needs_pool(runner, handler, "runs in the thread pool")
            limit = runner.threads + runner.backlog

            async def chain(req):
                if runner.thread_jobs >= limit:
                    runner.refused()
                    return busy_response()
                return await runner.in_pool(part, req)
        else:
            async def chain(req):
                return part(req)
    else:
        chain = _async_core(handler, app, runner, threaded)
    for mw in reversed(middlewares):
        if is_async(mw):
            chain = _async_link(mw, chain)
        else:
            _needs_pool(runner, mw, "is a plain middleware around an async part: it runs in "
                        "the thread pool")
            chain = _threaded_link(mw, chain, runner)

    async def hooked(req, **params):
        try:
            return await chain(req)
        except Exception as e:
            found = _error_handler(app, e)
            if found is None:
                raise
            return as_response(await _maybe_await(found(req, e)))
    hooked.__qualname__ = handler.__qualname__
    return hooked


def _async_core(handler: Callable, app, runner, threaded: bool) -> Callable:
    before, after = tuple(app.before), tuple(app.after)
    if is_async(handler):
        async def call(req):
            return await handler(req, **(req.path_params or {}))
    elif threaded:
        _needs_pool(runner, handler, "runs in the thread pool")

        async def call(req):
            return await runner.in_pool(handler, req, **(req.path_params or {}))
    else:
        async def call(req):
            return handler(req, **(req.path_params or {}))

    async def core(req):
        try:
            for hook in before:
                result = await _maybe_await(hook(req))
                if result is not None:
                    break
            else:
                result = await call(req)
            response = as_response(result)
        except Exception as e:
            found = _error_handler(app, e)
            if found is not None:
                response = as_response(await _maybe_await(found(req, e)))
            elif isinstance(e, HTTPError):
                response = as_response(e)
            else:
                raise
        for hook in after:
            replaced = await _maybe_await(hook(req, response))
            if replaced is not None:
                response = as_response(replaced)
        return response
    return core


def _async_link(mw: Callable, call_next: Callable) -> Callable:
    async def link(req):
        return _answer(mw, await mw(req, call_next))
    return link


def _threaded_link(mw: Callable, call_next: Callable, runner) -> Callable:
    """A plain middleware with something async inside: run in the pool, its call_next
    waiting (in that thread) for the rest on the asyncio loop."""
    limit = runner.threads + runner.backlog

    def in_thread(req, waits: Waits):
        return _answer(mw, mw(req, lambda r: runner.wait_on_loop(call_next(r), waits)))

    async def link(req):
        if runner.thread_jobs >= limit:     # as a threaded handler: 503 past the backlog
            runner.refused()
            return busy_response()
        waits = Waits()                     # what call_next runs on the loop meanwhile
        try:
            return await runner.in_pool(in_thread, req, waits)
        except asyncio.CancelledError:      # the client left, or the timeout: the handler
            waits.cancel()                  # under the middleware is cancelled too (or,
            raise                           # not started yet, never starts)
    return link


def run_lifecycle(hooks_: list, runner) -> None:
    """Run startup or shutdown hooks in order, async ones on the worker's asyncio loop."""
    for hook in hooks_:
        result = hook()
        if inspect.isawaitable(result):
            runner.aio.run_until_complete(result)
