"""The router: exact paths by one dict lookup, parameterised paths by compiled patterns."""
from __future__ import annotations

import re
from collections.abc import Callable

from fastsock._message import RouteId

Handler = Callable

# {name} matches one segment, {name:int} digits (passed as int), {name:path} the rest
_CONVERTERS = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]+", int),
    "path": (r".+", str),
}
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")


class Route:
    __slots__ = ("id", "template", "pattern", "converters", "handlers", "options")

    def __init__(self, template: str, route_id: int):
        self.id = route_id          # labels this route in the metrics
        self.template = template
        self.handlers: dict[str, Handler] = {}
        self.options: dict[str, dict] = {}     # per method: how its handler runs
        self.converters: dict[str, Callable] = {}
        regex, pos = [], 0
        for m in _PARAM.finditer(template):
            name, kind = m.group(1), m.group(2) or "str"
            if kind not in _CONVERTERS:
                raise ValueError(f"unknown parameter type {kind!r} in {template!r}")
            regex.append(re.escape(template[pos:m.start()]))
            regex.append(f"(?P<{name}>{_CONVERTERS[kind][0]})")
            self.converters[name] = _CONVERTERS[kind][1]
            pos = m.end()
        regex.append(re.escape(template[pos:]))
        self.pattern = re.compile("".join(regex) + r"\Z") if self.converters else None

    def allowed(self) -> str:
        methods = set(self.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))


class Router:
    def __init__(self):
        self.exact: dict[str, Route] = {}
        self.patterns: list[Route] = []
        self._by_template: dict[str, Route] = {}

    def add(self, template: str, methods, handler: Handler, options: dict | None = None) -> None:
        if not template.startswith("/"):
            raise ValueError(f"a route path starts with '/': {template!r}")
        route = self._by_template.get(template)
        if route is None:
            route = Route(template, RouteId.FIRST_APP_ROUTE + len(self._by_template))
            self._by_template[template] = route
            if route.pattern is None:
                self.exact[template] = route
            else:
                self.patterns.append(route)
        for method in methods:
            route.handlers[method.upper()] = handler
            route.options[method.upper()] = options or {}

    def routes(self) -> list[Route]:
        return list(self._by_template.values())

    def names(self) -> dict[int, str]:
        return {route.id: route.template for route in self._by_template.values()}

    def match(self, path: str):
        """-> (route, params) or (None, None)."""
        route = self.exact.get(path)
        if route is not None:
            return route, None
        return self.match_pattern(path)

    def match_pattern(self, path: str):
        """-> (route, params) of the first parameterised route that matches, or (None, None)."""
        for route in self.patterns:
            m = route.pattern.match(path)   # type: ignore[union-attr]  # patterns: those with one
            if m is not None:
                conv = route.converters
                try:
                    return route, {k: conv[k](v) for k, v in m.groupdict().items()}
                except ValueError:      # e.g. more digits than int() takes: not this route
                    continue
        return None, None
