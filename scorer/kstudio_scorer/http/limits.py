"""Request limits as a pure ASGI middleware (no buffering, no BaseHTTPMiddleware overhead).

- Body size: a declared Content-Length above the limit gets 413 before any byte of the body is read;
  a body without Content-Length (chunked) is counted as it streams in and the request is stopped with 413
  as soon as the count passes the limit, so at most `max_body_bytes` are ever held.
- Concurrency: at most `max_concurrent` scoring calls in flight; the next one gets 429 + Retry-After
  immediately (no queueing: the caller or the load balancer decides where to retry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kstudio_scorer.protocols.classic import error_envelope, is_classic_path


class BodyTooLargeError(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; rendered as 413 by the app."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


async def send_json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]], path: str = ""
) -> None:
    """The error as our usual body, or in classic's envelope on the classic routes."""
    if is_classic_path(path):
        body = error_envelope(status, payload["error"], payload["code"])
    else:
        body = orjson.dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close") if status == 413 else (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_concurrent: int,
        retry_after_seconds: int,
        is_limited: Callable[[str, str], bool],
        on_rejected: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_concurrent = max_concurrent
        self.retry_after = str(retry_after_seconds).encode()
        self.is_limited = is_limited
        self.on_rejected = on_rejected
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(
                        send,
                        400,
                        {"error": "invalid Content-Length header", "code": "malformed_request"},
                        [],
                        scope["path"],
                    )
                    return
                if declared > limit:
                    await send_json(
                        send,
                        413,
                        {
                            "error": f"request body of {declared} bytes is larger than the limit of "
                            f"{limit} bytes",
                            "code": "body_too_large",
                        },
                        [],
                        scope["path"],
                    )
                    return
                break

        limited = self.is_limited(scope["method"], scope["path"])
        if limited and self.in_flight >= self.max_concurrent:
            await send_json(
                send,
                429,
                {
                    "error": f"too many concurrent calls (limit {self.max_concurrent}); retry later",
                    "code": "too_many_requests",
                },
                [(b"retry-after", self.retry_after)],
                scope["path"],
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
