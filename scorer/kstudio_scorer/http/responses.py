"""How the scorer answers: JSON bodies, and every error in one shape (or classic's envelope).

Domain errors (errors.py) map to HTTP statuses here, in one place (`ERROR_STATUS`). FastAPI's exception
handlers (app.py), the fast routes and the auth layer render errors with `render_error`; the limits layer
builds its bodies with `error_response`; so an error looks the same whichever layer answered it. Which
envelope a path gets is the route table's business (routing.Match.classic).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Send

from kstudio_scorer.errors import (
    InputValidationError,
    JobNotFoundError,
    MalformedRequestError,
    ModelNotFoundError,
    ModelNotReadyError,
    PredictionError,
    ScorerError,
    TooManyRowsError,
    UnauthorizedError,
)
from kstudio_scorer.protocols import classic

ERROR_STATUS: dict[type[ScorerError], int] = {
    MalformedRequestError: 400,
    UnauthorizedError: 401,
    ModelNotFoundError: 404,
    JobNotFoundError: 404,
    TooManyRowsError: 413,
    InputValidationError: 422,
    PredictionError: 422,
    ModelNotReadyError: 503,
}

JSON = "application/json"
JSON_HEADERS = [(b"content-type", JSON.encode())]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


async def send_response(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A whole response from an ASGI layer: `headers` plus the body's length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _status_of(exc: ScorerError) -> int:
    for cls in type(exc).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def error_body(message: str, code: str, **extra: Any) -> bytes:
    """Every error response has this shape; `error` is a string as the V2 protocol wants."""
    doc: dict[str, Any] = {"error": message, "code": code}
    doc.update({k: v for k, v in extra.items() if v is not None})
    return orjson.dumps(doc)


def error_response(status: int, message: str, code: str, *, classic_envelope: bool) -> bytes:
    """An error body without row or column: ours, or classic's envelope on the classic routes."""
    if classic_envelope:
        return classic.error_envelope(status, message, code)
    return error_body(message, code)


def render_error(exc: Exception, *, classic_envelope: bool = False) -> tuple[int, bytes, dict[str, str]]:
    """(status, JSON body, extra headers) for a domain error or an HTTP error raised below the app.

    `classic_envelope`: the body in Azure ML Studio (classic)'s error shape (the classic routes).
    """
    headers: dict[str, str] = {}
    if isinstance(exc, ScorerError):
        status, message, code = _status_of(exc), exc.message, exc.code
        row, column = getattr(exc, "row", None), getattr(exc, "column", None)
        target = column or getattr(exc, "target", None)
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
    elif isinstance(exc, StarletteHTTPException):
        status, message = exc.status_code, str(exc.detail)
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(status, "http_error")
        row = column = target = None
        headers.update(exc.headers or {})
        if status == 413:
            headers["Connection"] = "close"
    else:
        status, message, code, row, column, target = 500, "internal error", "internal", None, None, None
    if classic_envelope:
        return status, classic.error_envelope(status, message, code, target), headers
    return status, error_body(message, code, row=row, column=column), headers


def header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """Extra headers of `render_error`, for an ASGI response after the JSON content type."""
    return JSON_HEADERS + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
