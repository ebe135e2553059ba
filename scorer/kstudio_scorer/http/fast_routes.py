"""The ASGI fast path for the two scoring routes.

`POST /score`, `POST /v2/models/{name}[/versions/{version}]/infer` and the classic
`POST /workspaces/{workspace}/services/{service}/execute` are answered here, below the
limits and metrics middlewares but before FastAPI's router and endpoint machinery (Request objects,
dependency solving), which cost about as much as scoring a small model. The work itself is the same
function the FastAPI routes call (service.score_rrs / score_v2 / score_classic), errors are rendered
by the same service.render_error, so both layers answer identically; FastAPI keeps the routes for the
OpenAPI document and for every other path.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from kstudio_scorer.errors import ScorerError
from kstudio_scorer.http.state import (
    ROUTE_EXECUTE,
    ScorerState,
    render_error,
    score_classic,
    score_rrs,
    score_v2,
)
from kstudio_scorer.protocols.classic import execute_path_matches

_JSON_HEADERS = [(b"content-type", b"application/json")]
ROUTE_SCORE = "/score"
ROUTE_INFER = "/v2/models/{name}/infer"
ROUTE_INFER_VERSION = "/v2/models/{name}/versions/{version}/infer"


class ClientGoneError(Exception):
    pass


def match(path: str) -> tuple[str, str | None, str | None] | None:
    """(route template, model name, version) for a hot path, else None."""
    if path == ROUTE_SCORE:
        return ROUTE_SCORE, None, None
    if execute_path_matches(path):
        return ROUTE_EXECUTE, None, None
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[len("/v2/models/") : -len("/infer")].split("/")
        if len(parts) == 1 and parts[0]:
            return ROUTE_INFER, parts[0], None
        if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            return ROUTE_INFER_VERSION, parts[0], parts[2]
    return None


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


class HotPathMiddleware:
    def __init__(self, app: ASGIApp, state: Callable[[], ScorerState]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        matched = match(scope["path"])
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, name, version = matched
        scope["kstudio.route"] = route
        state = self.state()
        authorization = binary_header = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"inference-header-content-length":
                binary_header = value.decode("latin-1")
        body: bytes | None = None
        try:
            if state.keys is not None:  # refuse before reading the body
                state.authorize(authorization)
            body = await read_body(receive)
            query = scope.get("query_string", b"").decode("latin-1")
            if route == ROUTE_EXECUTE:
                out = await score_classic(state, authorization, body, query)
            elif name is None:
                out = await score_rrs(state, authorization, body, query)
            else:
                out = await score_v2(state, name, version, authorization, binary_header, body)
            status, headers = 200, _JSON_HEADERS
        except ClientGoneError:
            return
        except (ScorerError, StarletteHTTPException) as exc:
            status, out, extra = render_error(exc, classic_envelope=route == ROUTE_EXECUTE)
            headers = _JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in extra.items()]
            if state.samples is not None:
                message = exc.message if isinstance(exc, ScorerError) else str(exc.detail)
                state.samples.record(route=route, status=status, request=body, response=None, error=message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(out)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": out})
