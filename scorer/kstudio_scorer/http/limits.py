"""Request limits as a pure ASGI middleware (no buffering, no BaseHTTPMiddleware overhead).

- Body size, on every route: a declared Content-Length above the limit gets 413 before any byte of the
  body is read; a body without Content-Length (chunked) is counted as it streams in and the request is
  stopped with 413 as soon as the count passes the limit, so at most `max_body_bytes` are ever held.
- Concurrency, on the routes the table marks `limited` (routes.py): at most `max_concurrent` of those
  calls in flight; the next one gets 429 + Retry-After immediately (no queueing: the caller or the load
  balancer decides where to retry).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kstudio_scorer.http.responses import JSON_HEADERS, error_response, send_response
from kstudio_scorer.http.routing import RouteTable


class BodyTooLargeError(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; rendered as 413 by the app."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


async def _refuse(
    send: Send, status: int, message: str, code: str, headers: list[tuple[bytes, bytes]], classic: bool
) -> None:
    """The error as our usual body, or in classic's envelope on the classic routes."""
    body = error_response(status, message, code, classic_envelope=classic)
    closing = (b"connection", b"close") if status == 413 else (b"cache-control", b"no-store")
    await send_response(send, status, body, [*JSON_HEADERS, closing, *headers])


class LimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: RouteTable,
        max_body_bytes: int,
        max_concurrent: int,
        retry_after_seconds: int,
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.retry_after = str(retry_after_seconds).encode()
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = self.routes.match_scope(scope)
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(
                        send, 400, "invalid Content-Length header", "malformed_request", [], matched.classic
                    )
                    return
                if declared > limit:
                    await _refuse(
                        send,
                        413,
                        f"request body of {declared} bytes is larger than the limit of {limit} bytes",
                        "body_too_large",
                        [],
                        matched.classic,
                    )
                    return
                break

        limited = matched.route is not None and matched.route.limited
        if limited and self.in_flight >= self.max_concurrent:
            await _refuse(
                send,
                429,
                f"too many concurrent calls (limit {self.max_concurrent}); retry later",
                "too_many_requests",
                [(b"retry-after", self.retry_after)],
                matched.classic,
            )
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        if limited:
            self.in_flight += 1
            try:
                await self.app(scope, counting_receive, send)
            finally:
                self.in_flight -= 1
        else:
            await self.app(scope, counting_receive, send)
