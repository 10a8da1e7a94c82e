"""An app's before/after hooks, middleware and error handlers, composed around each handler once,
when the dispatcher is built. A handler of an app without any is called as it is.

Order: middleware (first registered outermost) around [before hooks, handler], error handlers
for what any of them raise, then after hooks on the result. A plain handler gets the plain
middleware and hooks; an async one the async middleware and every hook (a plain hook is simply
called, an async one awaited).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

from fastsock.runner import is_async


def wrap(handler: Callable, app) -> Callable:
    return _wrap_async(handler, app) if is_async(handler) else _wrap_sync(handler, app)


def _error_handler(app, exc: Exception):
    for t in type(exc).__mro__:
        found = app.error_handlers.get(t)
        if found is not None:
            return found
    return None


def _wrap_sync(handler: Callable, app) -> Callable:
    for hook in (*app.before, *app.after):
        if is_async(hook):
            raise TypeError(f"the async hook {hook.__qualname__} cannot run around the plain "
                            f"handler {handler.__qualname__}")
    before, after = tuple(app.before), tuple(app.after)

    def innermost(req):
        for hook in before:
            result = hook(req)
            if result is not None:
                return result
        return handler(req, **(req.path_params or {}))
    chain = innermost
    for mw in reversed([m for m in app.middlewares if not is_async(m)]):
        chain = _link(mw, chain)

    def hooked(req, **params):
        try:
            result = chain(req)
        except Exception as e:
            found = _error_handler(app, e)
            if found is None:
                raise
            result = found(req, e)
        for hook in after:
            replaced = hook(req, result)
            if replaced is not None:
                result = replaced
        return result
    hooked.__qualname__ = handler.__qualname__
    return hooked


def _link(mw: Callable, call_next: Callable) -> Callable:
    return lambda req: mw(req, call_next)


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


def _wrap_async(handler: Callable, app) -> Callable:
    before, after = tuple(app.before), tuple(app.after)

    async def innermost(req):
        for hook in before:
            result = await _maybe_await(hook(req))
            if result is not None:
                return result
        return await handler(req, **(req.path_params or {}))
    chain = innermost
    for mw in reversed([m for m in app.middlewares if is_async(m)]):
        chain = _link(mw, chain)

    async def hooked(req, **params):
        try:
            result = await chain(req)
        except Exception as e:
            found = _error_handler(app, e)
            if found is None:
                raise
            result = await _maybe_await(found(req, e))
        for hook in after:
            replaced = await _maybe_await(hook(req, result))
            if replaced is not None:
                result = replaced
        return result
    hooked.__qualname__ = handler.__qualname__
    return hooked


def run_lifecycle(hooks_: list, runner) -> None:
    """Run startup or shutdown hooks in order, async ones on the worker's asyncio loop."""
    for hook in hooks_:
        result = hook()
        if inspect.isawaitable(result):
            runner.aio.run_until_complete(result)
