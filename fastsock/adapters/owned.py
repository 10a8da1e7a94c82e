"""Which of the server's reserved paths (/healthz, /readyz, /metrics, as configured) the app
routes itself, read from its route table at start: fastsock's App (its exact routes), Flask
(url_map), Starlette and FastAPI (app.routes, mounts included) and Django (its URL resolver).

The app's route wins: an app served unchanged answers its own /healthz as its author meant
(a FastAPI app's database check, a prometheus_client /metrics), and the server says so once at
start, naming the option that moves its own answer elsewhere. Only a route for exactly that
path (or that path and a trailing slash) counts: a catch-all route (`/<path:p>`, `{rest:path}`)
does not take the probes away.
"""
from __future__ import annotations

import importlib
import logging

from fastsock.adapters.routelabels import RouteLabels

log = logging.getLogger("fastsock.error")

# the option that moves each reserved answer, by what it answers
_OPTIONS = {"healthz": ("--healthz-path", "liveness"), "readyz": ("--readyz-path", "readiness"),
            "metrics": ("--metrics-path or --metrics-port", "metrics")}


def reserved_paths(config) -> dict[str, str]:
    """path -> which of the server's answers it is, for those served on the main port."""
    paths = {}
    if config.healthz_path:
        paths[config.healthz_path] = "healthz"
    if config.readyz_path:
        paths[config.readyz_path] = "readyz"
    if config.metrics and not config.metrics_port:
        paths[config.metrics_path] = "metrics"
    return paths


def owned_paths(app, paths) -> set[str]:
    """The paths of `paths` the app has a route of its own for (the app as loaded: an App, a
    WSGI or an ASGI application)."""
    paths = list(paths)
    if not paths:
        return set()
    templates = _templates(app)
    if templates is not None:
        return {p for p in paths if p in templates or p.rstrip("/") + "/" in templates}
    if _is_django(app):
        return {p for p in paths if _django_routes(p)}
    return set()


def say_owned(app, config) -> set[str]:
    """Log one line for each reserved path the app routes itself; -> those paths."""
    reserved = reserved_paths(config)
    try:
        owned = owned_paths(app, reserved)
    except Exception as e:              # noqa: BLE001  (the app's table: its own to report)
        log.warning("cannot read the app's route table (%s: %s): fastsock answers %s",
                    type(e).__name__, e, ", ".join(reserved) or "none of its paths")
        return set()
    for path in sorted(owned):
        option, answer = _OPTIONS[reserved[path]]
        log.warning("the app's own %s route is served there: fastsock's %s answer is not "
                    "(%s moves it)", path, answer, option)
    return owned


def _templates(app) -> set[str] | None:
    """The app's literal route templates, or None for an app whose table is not read here."""
    router = getattr(app, "router", None)
    exact = getattr(router, "exact", None)
    if isinstance(exact, dict) and hasattr(app, "dispatcher"):      # fastsock's App
        return set(exact)
    labels = RouteLabels(app)
    if labels.framework is None:
        return None
    return set(labels.names.values())


def _is_django(app) -> bool:
    return any(cls.__module__.startswith("django.core.handlers.") for cls in type(app).__mro__)


def _django_routes(path: str) -> bool:
    """Django resolves path (or path/, which APPEND_SLASH redirects to) to a view without
    captured arguments."""
    urls = importlib.import_module("django.urls")      # (Django is the app's, when it is)
    for candidate in (path, path.rstrip("/") + "/"):
        try:
            match = urls.get_resolver().resolve(candidate)
        except urls.Resolver404:
            continue
        except Exception:               # noqa: BLE001  (a broken URLconf: the app's to report)
            return False
        if not match.args and not match.kwargs:
            return True
    return False
