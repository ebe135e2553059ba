"""Zero-downtime termination: drain on SIGTERM before uvicorn's graceful shutdown.

When Kubernetes deletes a pod it sends SIGTERM while the pod's removal from the Service's EndpointSlice
is still propagating to every node's kube-proxy: for a second or more, new connections still arrive,
and keep-alive clients keep reusing the connections they hold. A server that stops listening at once
fails those requests. So on the first SIGTERM the scorer

1. reports not-ready at once: the readiness endpoints (status_endpoints.py) answer 503 while the
   `Drain` is active,
2. keeps serving every request for `KSTUDIO_DRAIN_SECONDS`, answering each with `Connection: close`
   (`DrainMiddleware`), so a keep-alive client opens its next connection through the Service, to a live
   pod,
3. then lets uvicorn stop listening, finish in-flight requests (`KSTUDIO_SHUTDOWN_GRACE_SECONDS`) and
   exit 0.

A pod that never became ready received no traffic and skips the drain; a second SIGTERM, or SIGINT,
ends the drain early. Liveness (`/healthz`) stays 200 throughout: the process is healthy, just leaving.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class Drain:
    """The drain's state: not started, draining until a deadline, or over."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.deadline: float | None = None

    @property
    def active(self) -> bool:
        """True from the drain's start until the process exits (readiness stays 503 after the deadline)."""
        return self.deadline is not None

    def begin(self) -> None:
        if self.deadline is None:
            self.deadline = self._clock() + self.seconds

    def end_now(self) -> None:
        self.deadline = self._clock()

    def over(self) -> bool:
        return self.deadline is not None and self._clock() >= self.deadline


class DrainMiddleware:
    """Outermost ASGI layer: while draining, every response closes its connection."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.drain.active:
            await self.app(scope, receive, send)
            return

        async def send_with_close(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_with_close)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first SIGTERM starts a drain instead of the immediate graceful shutdown.

    `serving()` says whether the app has been ready (only then can traffic be routed here);
    `on_drain()` runs once, on the event loop, when the drain starts (e.g. to zero a readiness gauge).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        drain: Drain,
        serving: Callable[[], bool],
        on_drain: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self.drain = drain
        self._serving = serving
        self._on_drain = on_drain
        self._announced = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        starts_drain = (
            sig == signal.SIGTERM
            and not self.drain.active
            and self.drain.seconds > 0
            and self.started
            and self._serving()
        )
        if starts_drain:
            # Runs in the signal handler: only set state here; on_tick logs and exits when it is over.
            self.drain.begin()
            return
        if self.drain.active:
            self.drain.end_now()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain.active and not self._announced:
            self._announced = True
            log.info(
                "SIGTERM: not ready, serving with Connection: close for %.1f s before shutting down",
                self.drain.seconds,
            )
            if self._on_drain is not None:
                self._on_drain()
        if self.drain.over() and not self.should_exit:
            log.info("drain over: no longer accepting connections, finishing in-flight requests")
            self.should_exit = True
        return await super().on_tick(counter)
