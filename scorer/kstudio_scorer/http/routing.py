"""What a route is, and how a request finds its route: once per request, by every layer that asks.

A `Route` says everything the layers of the app need to know about it: the method and path template
(the template is also its metric label), the endpoint, whether it needs the API key, whether it counts
against the concurrency limit, and whether the ASGI fast routes (fast_routes.py) serve it instead of
FastAPI. `RouteTable` matches a request against all templates with one regular expression and keeps the
answer in the ASGI scope, so the metrics, limits, auth and fast-route layers match each request once.
The scorer's own table is routes.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from starlette.types import Scope

_PARAM = re.compile(r"{(\w+)}")
_SCOPE_KEY = "kstudio.route"


def _pattern(template: str, *, named: bool) -> str:
    """The regular expression of a path template: each `{param}` matches one non-empty path segment."""
    parts = _PARAM.split(template)  # literal, name, literal, name, ..., literal
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.escape(part))
        else:
            out.append(f"(?P<{part}>[^/]+)" if named else "[^/]+")
    return "".join(out)


@dataclass(frozen=True, eq=False)
class Route:
    """One route of the app. `path` is the template (`/v2/models/{name}/infer`) and the metric label."""

    method: str
    path: str
    endpoint: Callable[..., Any]
    name: str = ""  # FastAPI's operation name; the endpoint's name unless two routes share the endpoint
    needs_key: bool = False  # refused with 401 before the body is read unless the key is valid
    limited: bool = False  # counts against max_concurrent_calls (the body-size limit applies to all)
    fast: bool = False  # answered by the ASGI fast routes, below FastAPI's endpoint machinery
    classic: bool = False  # errors in Azure ML Studio (classic)'s envelope
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.endpoint.__name__)
        object.__setattr__(self, "_regex", re.compile(_pattern(self.path, named=True)))

    @property
    def params(self) -> list[str]:
        """Names of the path parameters, in order."""
        return _PARAM.findall(self.path)

    def path_params(self, path: str) -> dict[str, str]:
        """The parameters of a path this route matched."""
        matched = self._regex.fullmatch(path)
        return matched.groupdict() if matched else {}


class Match(NamedTuple):
    """Where a request landed: its path `template` (None: no route has this path), the route for its
    method (None: no route, or the path's routes take other methods), and the error envelope to use."""

    template: str | None
    route: Route | None
    classic: bool

    @property
    def label(self) -> str:
        """The metric label: the template, also when the limits layer answered before any endpoint."""
        return self.template or "unmatched"


def request_header(scope: Scope, name: bytes) -> str | None:
    """One header of an ASGI request (`name` in lower case, as ASGI gives them), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RouteTable:
    """Routes in match order (the first whose template fits a path wins, as in Starlette's router)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        templates = list(dict.fromkeys(r.path for r in self.routes))
        self._methods = {t: {r.method: r for r in self.routes if r.path == t} for t in templates}
        self._groups = {f"t{i}": t for i, t in enumerate(templates)}
        self._regex = re.compile(
            "|".join(f"(?P<{g}>{_pattern(t, named=False)})" for g, t in self._groups.items())
        )
        # The literal heads of the classic routes (`/workspaces/`): any path under one, routed or not,
        # answers in classic's envelope, as classic did for its whole URL space.
        self._classic_heads = tuple({_PARAM.split(r.path, maxsplit=1)[0] for r in self.routes if r.classic})
        # Requests reuse a handful of paths: remember their matches (bounded, whatever clients send).
        self._remembered = lru_cache(maxsize=1024)(self._match)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def match(self, method: str, path: str) -> Match:
        """The route of `method` on `path`."""
        return self._remembered(method, path)

    def _match(self, method: str, path: str) -> Match:
        found = self._regex.fullmatch(path)
        classic = path.startswith(self._classic_heads) if self._classic_heads else False
        if found is None or found.lastgroup is None:
            return Match(None, None, classic)
        template = self._groups[found.lastgroup]
        return Match(template, self._methods[template].get(method), classic)

    def match_scope(self, scope: Scope) -> Match:
        """The match of an HTTP request, computed by the first layer that asks and kept in its scope."""
        matched: Match | None = scope.get(_SCOPE_KEY)
        if matched is None:
            matched = self.match(scope["method"], scope["path"])
            scope[_SCOPE_KEY] = matched
        return matched
