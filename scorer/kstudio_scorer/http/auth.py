"""The API key, required by every route the table marks `needs_key` (routes.py), checked before the
request's body is read: a caller without a valid key never gets as far as a body or a model.

The keys themselves come from keys.py. A refusal is a 401 with `WWW-Authenticate: Bearer` in the route's
envelope, recorded for the sample logger like any failed call; it never says which key was tried.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from kstudio_scorer.errors import UnauthorizedError
from kstudio_scorer.http.responses import header_list, render_error, send_response
from kstudio_scorer.http.routing import RouteTable, request_header
from kstudio_scorer.http.state import ScorerState


class AuthMiddleware:
    def __init__(self, app: ASGIApp, routes: RouteTable, state: ScorerState) -> None:
        self.app = app
        self.routes = routes
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keys = self.state.keys
        if keys is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = self.routes.match_scope(scope)
        if matched.route is None or not matched.route.needs_key:
            await self.app(scope, receive, send)
            return
        try:
            keys.check(request_header(scope, b"authorization"))
        except UnauthorizedError as exc:
            status, body, headers = render_error(exc, classic_envelope=matched.classic)
            self.state.record_error(matched.label, status, None, exc.message)
            await send_response(send, status, body, header_list(headers))
            return
        await self.app(scope, receive, send)
