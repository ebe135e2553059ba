"""The operator's per-process state and its one reconcile loop.

Each kstudio object has a reconcile loop (a kopf daemon) that runs `once()` when something relevant
changes and otherwise sleeps: watch events of the object itself and of what it owns or references
`wake()` its key (see main.py), and a slow resync (KSTUDIO_RESYNC_SECONDS, default 300 s) is the safety
net. Loops read everything from watch-fed indexes, so an idle operator makes no API requests; one loop
per object serialises its reconciles, and triggers that arrive during a reconcile coalesce into one more.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from kstudio_operator import metrics
from kstudio_operator.builders.patches import merge_patch
from kstudio_operator.kube import Kube
from kstudio_operator.settings import OperatorConfig

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass
class Backoff:
    """The operator's one retry policy: after failures in a row, wait `base`, 2 base, 4 base, ... seconds,
    at most `cap`; a success starts over. A reconcile that raised waits by it (reconcile_loop), and so
    does one that found a retryable condition (storage unreachable, an artifact not there yet)."""

    base: float = 2.0
    cap: float = 300.0
    failures: int = 0

    def failed(self) -> float:
        """Seconds to wait after one more failure."""
        self.failures += 1
        # The exponent stops growing long after the cap is reached (2**1024 overflows a float).
        return float(min(self.cap, self.base * 2 ** min(self.failures - 1, 64)))

    def succeeded(self) -> None:
        self.failures = 0


@dataclass
class Runtime:
    """Created once at startup and handed to handlers through kopf's memo (`runtime(memo)`)."""

    config: OperatorConfig
    store: Any | None  # kstudio_core.storage.ObjectStore; None when storage is not configured
    store_error: str | None = None
    kube_or_none: Kube | None = None
    wakeups: dict[Key, asyncio.Event] = field(default_factory=dict)
    # The status each loop wrote last, with the resourceVersion the API server answered: a reconcile
    # woken before the watch delivered our own write reads this instead of the older body.
    written: dict[Key, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # The Backoff of each object whose handler found a retryable condition (see backoff()).
    retries: dict[Key, Backoff] = field(default_factory=dict)
    # Models each WebService/Endpoint referenced at its last event: who to wake when that changes.
    references: dict[Key, set[str]] = field(default_factory=dict)
    verify_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    # Each Endpoint's phase at its last reconcile: the rollout gauges of metrics.py count them.
    endpoint_phases: dict[Key, str | None] = field(default_factory=dict)
    # Digest of what other loops read of each object at its last event (see view_changed).
    views: dict[Key, bytes] = field(default_factory=dict)

    def pending_wakeups(self) -> int:
        return sum(1 for event in list(self.wakeups.values()) if event.is_set())

    @property
    def kube(self) -> Kube:
        if self.kube_or_none is None:
            raise kopf.TemporaryError("not logged in to the API server yet", delay=1)
        return self.kube_or_none

    def wake(self, key: Key) -> None:
        event = self.wakeups.get(key)
        if event is not None:
            event.set()

    def view_changed(self, key: Key, view: Any, deleted: bool = False) -> bool:
        """Whether `view` (what other loops read of the object `key`) differs from the one last seen.

        Watch events come for every change of an object, most of them irrelevant to the loops that read
        it (a model's usedBy to the hundred Endpoints serving it, a pod's container state to its
        Endpoint): waking them only when their view changed keeps one change from fanning out N-fold.
        The first event of an object (also after a restart) and its deletion always count."""
        if deleted:
            self.views.pop(key, None)
            return True
        digest = hashlib.sha256(json.dumps(view, sort_keys=True, default=str).encode()).digest()
        if self.views.get(key) == digest:
            return False
        self.views[key] = digest
        return True

    def wake_on_change(self, key: Key, body: kopf.Body) -> None:
        """Wake `key`'s loop for an event of its own object, unless the event is the status this loop
        wrote last: the loop has already seen that state (any other change has another resourceVersion),
        so reconciling it again would only find nothing to do."""
        mine = self.written.get(key)
        if mine is not None and _rv((body.get("metadata") or {}).get("resourceVersion")) == mine[0]:
            return
        self.wake(key)

    def backoff(self, key: Key, base: float = 2.0, cap: float = 300.0) -> float:
        """Seconds to wait after another failure of `key` (its Backoff, made with `base` and `cap`)."""
        return self.retries.setdefault(key, Backoff(base, cap)).failed()

    def succeeded(self, key: Key) -> None:
        self.retries.pop(key, None)

    def current_status(self, key: Key, body: kopf.Body) -> dict[str, Any]:
        """The object's status as we last know it: the body's, unless our own later write is newer."""
        status = dict(body.get("status") or {})
        mine = self.written.get(key)
        if mine is not None:
            seen = _rv(body.get("metadata", {}).get("resourceVersion"))
            if seen is not None and seen < mine[0]:
                return dict(mine[1])
        return status

    async def write_status(self, key: Key, body: kopf.Body, plural: str, desired: dict[str, Any]) -> bool:
        """Merge-patch the status keys whose value differs from the current status; nothing when none
        does (so an unchanged object is never written). Returns whether it wrote."""
        current = self.current_status(key, body)
        patch = merge_patch(current, desired)
        if not patch:
            return False
        meta = body["metadata"]
        log.debug("%s/%s/%s: status %s", *key, ", ".join(sorted(patch)))
        answer = await self.kube.patch(
            str(body["apiVersion"]), plural, meta["namespace"], meta["name"], {"status": patch}, status=True
        )
        rv = _rv((answer.get("metadata") or {}).get("resourceVersion"))
        if rv is not None:
            self.written[key] = (rv, dict(answer.get("status") or {}))
        return True


def runtime(memo: kopf.Memo) -> Runtime:
    rt = memo.get("rt")
    if not isinstance(rt, Runtime):
        raise kopf.TemporaryError("operator runtime is not initialised yet", delay=1)
    return rt


def _rv(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


async def reconcile_loop(
    rt: Runtime, key: Key, stopped: kopf.DaemonStopped, once: Callable[[], Awaitable[float | None]]
) -> None:
    """Run `once()` now, then whenever `key` is woken, at the delay it asks for, or at the resync.

    `once()` returns the seconds until it wants to run again (None: only on a change or the resync). An
    exception is logged and retried after a Backoff; it never ends the loop.
    """
    event = rt.wakeups.setdefault(key, asyncio.Event())
    errors = Backoff()
    kind = key[0]
    metrics.LOOPS.labels(kind).inc()
    try:
        while not stopped:
            event.clear()
            outcome = "ok"
            started = time.monotonic()
            metrics.IN_FLIGHT.inc()
            try:
                delay = await once()
                errors.succeeded()
            except kopf.TemporaryError as exc:
                outcome = "retry"
                delay = exc.delay if exc.delay is not None else 2.0
                log.info("%s/%s/%s: %s; again in %.0fs", *key, exc, delay)
            except Exception as exc:  # an API or programming error: log it, back off, never end the loop
                outcome = "error"
                delay = errors.failed()
                log.exception("%s/%s/%s: reconcile failed (%s); again in %.0fs", *key, exc, delay)
            finally:
                metrics.IN_FLIGHT.dec()
            metrics.RECONCILES.labels(kind, outcome).inc()
            metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
            timeout = rt.config.resync_seconds if delay is None else min(delay, rt.config.resync_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=max(timeout, 0.05))
    finally:
        metrics.LOOPS.labels(kind).dec()
        if rt.wakeups.get(key) is event:
            del rt.wakeups[key]
        rt.written.pop(key, None)
        rt.retries.pop(key, None)
        rt.endpoint_phases.pop(key, None)
