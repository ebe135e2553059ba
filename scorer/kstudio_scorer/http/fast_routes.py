"""The ASGI fast routes: the scoring routes (those routes.py marks `fast`) served below FastAPI.

`POST /score`, the classic `.../execute` and the OIP V2 `.../infer` routes are answered here, inside the
metrics, limits and auth layers but before FastAPI's router and endpoint machinery (Request objects,
dependency solving), which cost about as much as scoring a small model. The endpoints are
scoring_endpoints.py's; errors are rendered by responses.render_error, as FastAPI's exception handlers
(app.py) render theirs, so every route answers errors alike.

app.py also registers each fast route with FastAPI's router (a `FastRoute` as its ASGI endpoint, outside
the OpenAPI schema, which openapi.py writes from the table): the router then answers their other methods
with 405 and redirects a trailing slash, as for any route. A POST to them never gets that far.
"""

from __future__ import annotations

import time

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from kstudio_core.serving import (
    MODEL_HEADER,
    MODEL_VERSION_HEADER,
    OUTCOME_ERROR,
    OUTCOME_OK,
    OUTCOME_REFUSED,
    SESSION_HEADER,
)
from kstudio_scorer.errors import ScorerError
from kstudio_scorer.http.responses import JSON_HEADERS, header_list, render_error, send_response
from kstudio_scorer.http.routing import Route, RouteTable, request_header
from kstudio_scorer.http.scoring_endpoints import ScoringCall
from kstudio_scorer.http.state import ScorerState
from kstudio_scorer.model.traffic import Served
from kstudio_scorer.protocols.oip import BINARY_HEADER


class ClientGoneError(Exception):
    pass


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class FastRoute:
    """One fast route as an ASGI app: read the body, call the endpoint, send its JSON or its error, naming
    the model that answered (headers, and the per-model metrics)."""

    def __init__(self, route: Route, state: ScorerState) -> None:
        self.route = route
        self.state = state
        self._binary_header = BINARY_HEADER.encode()
        self._session_header = SESSION_HEADER.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, state = self.route, self.state
        body: bytes | None = None
        call: ScoringCall | None = None
        try:
            body = await read_body(receive)
            started = time.perf_counter()
            session = request_header(scope, self._session_header)
            call = ScoringCall(
                route,
                body,
                scope.get("query_string", b"").decode("latin-1"),
                route.path_params(scope["path"]),
                request_header(scope, self._binary_header),
                session.encode("latin-1") if session else None,
            )
            out = await route.endpoint(state, call)
            status, headers = 200, JSON_HEADERS
        except ClientGoneError:
            return
        except (ScorerError, StarletteHTTPException) as exc:
            status, out, extra = render_error(exc, classic_envelope=route.classic)
            headers = header_list(extra)
            message = exc.message if isinstance(exc, ScorerError) else str(exc.detail)
            state.record_error(route.path, status, body, message)
        except BaseException:
            if call is not None:
                self._count(call, 500, started)
            raise
        if call is not None and call.served is not None:
            headers = [*headers, *_model_headers(call.served)]
            self._count(call, status, started)
        await send_response(send, status, out, headers)

    def _count(self, call: ScoringCall, status: int, started: float) -> None:
        if call.served is None:
            return
        name = call.served.model.name
        if status < 300:
            outcome = OUTCOME_OK
        else:
            outcome = OUTCOME_ERROR if call.predicting or status >= 500 else OUTCOME_REFUSED
        metrics = self.state.metrics
        metrics.model_requests.labels(name, outcome).inc()
        metrics.model_latency.labels(name).observe(time.perf_counter() - started)


def _model_headers(served: Served) -> list[tuple[bytes, bytes]]:
    """The headers naming the model that answered: its TrainedModel name and its sha256."""
    return [
        (MODEL_HEADER.encode(), served.model.name.encode("latin-1")),
        (MODEL_VERSION_HEADER.encode(), served.model.digest.encode()),
    ]


class FastRoutesMiddleware:
    """Serves a request for a fast route of the table itself; passes every other one on to FastAPI."""

    def __init__(self, app: ASGIApp, routes: RouteTable, state: ScorerState) -> None:
        self.app = app
        self.routes = routes
        self.served = {route: FastRoute(route, state) for route in routes if route.fast}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fast = self.served.get(self.routes.match_scope(scope).route)  # type: ignore[arg-type]
            if fast is not None:
                await fast(scope, receive, send)
                return
        await self.app(scope, receive, send)
