"""The `route` label of a WSGI or ASGI app's requests, from the framework where it tells which
route matched (Starlette and FastAPI, Flask), else one label for every path: bounded either
way, never the raw path (each path its own series would grow the metrics without end).

Routes are numbered from the app's route table at start, in its order: every worker numbers
them alike, so any worker can name the counters of all of them.
"""
from __future__ import annotations

from fastsock._message import RouteId

ANY_PATH = "*"          # the label of an app whose framework does not tell its routes


class RouteLabels:
    """route id per framework route; `names` (id -> template) is what the metrics print."""

    def __init__(self, app):
        self.names: dict[int, str] = {}
        self.by_key: dict[int, int] = {}       # id() of a route or endpoint object -> route id
        self.by_rule: dict[str, int] = {}      # a Flask URL rule -> route id
        self.framework = None
        router = _starlette_router(app)
        if router is not None:
            self.framework = "starlette"
            self._walk_starlette(router.routes, "")
        elif _is_flask(app):
            self.framework = "flask"
            for rule in app.url_map.iter_rules():
                self.by_rule.setdefault(rule.rule, self._add(rule.rule))
        else:
            self.fallback = self._add(ANY_PATH)
        if self.framework is not None:
            self.fallback = RouteId.ROUTE_NONE      # the framework matched no route: 404

    def _add(self, template: str) -> int:
        route_id = RouteId.FIRST_APP_ROUTE + len(self.names)
        self.names[route_id] = template
        return route_id

    def _walk_starlette(self, routes, prefix: str) -> None:
        for route in routes:
            path = getattr(route, "path", None)
            if path is None:                    # a Host: its routes have their own paths
                inner = getattr(route, "routes", None)
                if inner:
                    self._walk_starlette(inner, prefix)
                continue
            template = prefix + path
            inner = getattr(route, "routes", None)
            if inner:                           # a Mount of routes
                self._walk_starlette(inner, template)
                continue
            route_id = self._add(template or "/")
            self.by_key.setdefault(id(route), route_id)         # FastAPI: scope["route"]
            for attr in ("endpoint", "app"):                     # Starlette: scope["endpoint"]
                target = getattr(route, attr, None)
                if target is not None:
                    self.by_key.setdefault(id(target), route_id)

    def for_scope(self, scope: dict) -> int:
        """The route id of an ASGI request, once the app has routed it."""
        found = scope.get("route")
        if found is None:
            found = scope.get("endpoint")
            if found is None:
                return self.fallback
        return self.by_key.get(id(found), self.fallback)

    def for_environ(self, environ: dict) -> int:
        """The route id of a WSGI request, once the app has routed it: Flask's request
        object (werkzeug keeps it in the environ) holds the rule it matched."""
        if self.framework is None:
            return self.fallback
        rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
        if rule is None:
            return self.fallback
        return self.by_rule.get(rule.rule, self.fallback)


def _starlette_router(app):
    """The Starlette router under an app (FastAPI, Starlette, or middleware around one)."""
    for _ in range(16):
        if app is None:
            return None
        routes = getattr(app, "routes", None)
        if isinstance(routes, list) and hasattr(app, "url_path_for"):
            return app
        app = getattr(app, "app", None)
    return None


def _is_flask(app) -> bool:
    return hasattr(app, "url_map") and hasattr(app, "before_request_funcs")
