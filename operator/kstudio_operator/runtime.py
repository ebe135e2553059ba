"""The operator's per-process state and its reconcile workers.

Every kstudio object is reconciled by the workers of its kind: a fixed number of tasks per kind take keys
from the kind's work queue (workqueue.py: a burst of events is one reconcile, never two at once for one
object), as controller-runtime's controllers do. Watch events of the object itself and of what it owns or
references queue its key (`wake()`, see main.py); a reconcile may ask to run again after a delay, a failed
one is retried after a Backoff, and a slow resync (KSTUDIO_RESYNC_SECONDS, default 300 s) is the safety
net. Reconciles read the object and everything else from watch-fed caches (the objects here, kopf's
indexes), so an idle operator makes no API requests and its memory per object is the cached object, its
index entries and a queue key, whatever the order in which the operator and the objects came.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from kstudio_operator import metrics
from kstudio_operator.builders.patches import merge_patch
from kstudio_operator.indexes import cached_object
from kstudio_operator.kube import ApiError, Kube
from kstudio_operator.settings import OperatorConfig
from kstudio_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # (kind, namespace, name)
Body = Mapping[str, Any]  # an object as the cache holds it (indexes.cached_object)
# One reconcile of one object: the seconds until it wants to run again (None: on a change or the resync).
Reconcile = Callable[["Runtime", Key, Body], Awaitable[float | None]]


@dataclass
class Backoff:
    """The operator's one retry policy: after failures in a row, wait `base`, 2 base, 4 base, ... seconds,
    at most `cap`; a success starts over. A reconcile that raised waits by it (reconcile_once), and so
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
    # The kstudio objects as last seen by the watch (the reconciles' input), and how many of each kind.
    objects: dict[Key, Body] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    queues: dict[str, WorkQueue[Key]] = field(default_factory=dict)
    # kopf's indexes by name (live: kopf keeps them current from the watches), handed over at startup.
    indexes: Mapping[str, Any] = field(default_factory=dict)
    # The Backoff of each object whose last reconcile raised.
    failures: dict[Key, Backoff] = field(default_factory=dict)
    workers: list[asyncio.Task[None]] = field(default_factory=list)
    # Watch events and reconciles so far: what tells trim_after_bursts that there was a burst.
    activity: int = 0
    # The status each reconcile wrote last, with the resourceVersion the API server answered: a reconcile
    # woken before the watch delivered our own write reads this instead of the older body.
    written: dict[Key, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # The Backoff of each object whose handler found a retryable condition (see backoff()).
    retries: dict[Key, Backoff] = field(default_factory=dict)
    # Models each WebService/Endpoint referenced at its last event: who to wake when that changes.
    references: dict[Key, set[str]] = field(default_factory=dict)
    verify_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    # Each Endpoint's phase at its last reconcile: the rollout gauges of metrics.py count them.
    endpoint_phases: dict[Key, str | None] = field(default_factory=dict)
    # Digest of what other reconciles read of each object at its last event (see view_changed).
    views: dict[Key, bytes] = field(default_factory=dict)
    # Children a reconcile created, by their owner and kind, with when: until the watch shows them, the
    # next reconcile reads these instead of creating them again (see created_child).
    created: dict[Key, dict[str, tuple[float, Body]]] = field(default_factory=dict)
    # A new object's first status, held back while it only says "Pending, on its way" (write_status): when
    # it is due (time.monotonic()), and the status, which the reconciles read as the current one.
    held: dict[Key, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def queue(self, kind: str) -> WorkQueue[Key]:
        return self.queues.setdefault(kind, WorkQueue())

    def pending_wakeups(self) -> int:
        """Keys waiting for a worker: the queue depth."""
        return sum(queue.pending() for queue in self.queues.values())

    def in_flight(self) -> int:
        return sum(queue.active() for queue in self.queues.values())

    @property
    def kube(self) -> Kube:
        if self.kube_or_none is None:
            raise kopf.TemporaryError("not logged in to the API server yet", delay=1)
        return self.kube_or_none

    def wake(self, key: Key) -> None:
        """Queue `key`'s reconcile (nothing for an object the watch has not shown, or no longer shows)."""
        self.activity += 1
        if key in self.objects:
            self.queue(key[0]).add(key)

    def object_changed(self, key: Key, body: kopf.Body, type_: str | None) -> None:
        """A watch event of a kstudio object: keep its cached copy (or forget it when deleted) and wake
        its reconcile, unless the event is the status it wrote last (see wake_on_change)."""
        self.activity += 1
        if type_ == "DELETED":
            self.forget(key)
            return
        if key not in self.objects:
            self.counts[key[0]] += 1
        self.objects[key] = cached_object(body)
        self.wake_on_change(key, body)
        mine = self.written.get(key)
        seen = _rv((body.get("metadata") or {}).get("resourceVersion"))
        if mine is not None and seen is not None and seen >= mine[0]:
            del self.written[key]  # the cache has our write (or later): no copy of it to keep

    def forget(self, key: Key) -> None:
        """The object is gone: drop everything kept for it."""
        if self.objects.pop(key, None) is not None:
            self.counts[key[0]] -= 1
        self.queue(key[0]).forget(key)
        self.written.pop(key, None)
        self.retries.pop(key, None)
        self.failures.pop(key, None)
        self.endpoint_phases.pop(key, None)
        self.held.pop(key, None)
        self.created.pop(key, None)
        self.views.pop(key, None)

    def remember_created(self, owner: Key, kind: str, child: Body) -> None:
        """`owner`'s reconcile created `child` (the API server's answer)."""
        self.created.setdefault(owner, {})[kind] = (time.monotonic(), child)

    def created_child(self, owner: Key, kind: str, indexed: Any, within: float = 60.0) -> Body | None:
        """The child of `kind` that `owner`'s reconcile created and the watch has not shown yet (`indexed`:
        what the index has of it, None when nothing): a reconcile woken by its sibling's event (the
        Service's, right after the Deployment was sent) would otherwise create it a second time. Forgotten
        once indexed, or after `within` seconds (then the index is the truth again: a child deleted
        before it was ever seen is made again)."""
        made = self.created.get(owner, {})
        remembered = made.get(kind)
        if indexed or remembered is None or time.monotonic() - remembered[0] > within:
            made.pop(kind, None)
            if not made:
                self.created.pop(owner, None)
            return None
        return remembered[1]

    def view_changed(self, key: Key, view: Any, deleted: bool = False) -> bool:
        """Whether `view` (what other reconciles read of the object `key`) differs from the one last seen.

        Watch events come for every change of an object, most of them irrelevant to the reconciles that read
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

    def wake_after(self, key: Key, delay: float) -> None:
        """Queue `key`'s reconcile in `delay` seconds (or sooner if it is due sooner): the changes of a
        burst meanwhile make one reconcile."""
        self.activity += 1
        if key in self.objects:
            self.queue(key[0]).add_after(key, delay)

    def wake_on_change(self, key: Key, body: Body) -> None:
        """Wake `key`'s reconcile for an event of its own object, unless the event is the status it wrote
        last: it has already seen that state (any other change has another resourceVersion), so
        reconciling it again would only find nothing to do."""
        mine = self.written.get(key)
        if mine is not None and _rv((body.get("metadata") or {}).get("resourceVersion")) == mine[0]:
            return
        self.wake(key)

    def backoff(self, key: Key, base: float = 2.0, cap: float = 300.0) -> float:
        """Seconds to wait after another failure of `key` (its Backoff, made with `base` and `cap`)."""
        return self.retries.setdefault(key, Backoff(base, cap)).failed()

    def succeeded(self, key: Key) -> None:
        self.retries.pop(key, None)

    def written_status(self, key: Key, body: Body) -> dict[str, Any]:
        """The object's status as the API server has it: the body's, unless our own later write is newer."""
        status = dict(body.get("status") or {})
        mine = self.written.get(key)
        if mine is not None:
            seen = _rv(body.get("metadata", {}).get("resourceVersion"))
            if seen is not None and seen < mine[0]:
                return dict(mine[1])
        return status

    def current_status(self, key: Key, body: Body) -> dict[str, Any]:
        """The object's status as we last decided it: the one held back (write_status), else as written
        (as the object is cached now: the body a reconcile started with may predate our last write)."""
        held = self.held_status(key)
        return held if held is not None else self.written_status(key, self.objects.get(key) or body)

    def held_status(self, key: Key) -> dict[str, Any] | None:
        """The status held back for `key`, None when there is none."""
        held = self.held.get(key)
        return dict(held[1]) if held is not None else None

    def settling(self, key: Key) -> float | None:
        """Seconds until the status held back for `key` is due (None: none is held): when its reconcile
        must run again to write it if nothing else happened."""
        held = self.held.get(key)
        return max(0.0, held[0] - time.monotonic()) if held is not None else None

    async def write_status(
        self,
        key: Key,
        body: Body,
        plural: str,
        desired: dict[str, Any],
        settles: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None,
    ) -> bool:
        """Merge-patch the status keys whose value differs from the written status; nothing when none
        does (so an unchanged object is never written). Returns whether it wrote.

        `settles(written, desired)` (a pure decision) says whether `desired` is a new object's first
        status that only says it is on its way: it is then held in memory, read by the next reconciles
        as the current status, until config.settle_seconds after it was first held. Any other status
        (Ready, a failure, a condition the user must see) or the end of that time writes at once: one
        write for an object that gets Ready within it, instead of Pending then Ready."""
        # Compared with the object as cached now, not as this reconcile found it: our previous write may
        # have reached the cache meanwhile (and ended its copy in `written`).
        written = self.written_status(key, self.objects.get(key) or body)
        if settles is not None and self.config.settle_seconds > 0 and settles(written, desired):
            now = time.monotonic()
            due = self.held[key][0] if key in self.held else now + self.config.settle_seconds
            if now < due:
                self.held[key] = (due, dict(desired))
                return False
        patch = merge_patch(written, desired)
        if not patch:
            self.held.pop(key, None)
            return False
        if key in self.held:
            # Still what the others read (a following Endpoint its service's model) until the answer:
            # neither the index nor `written` has it before.
            self.held[key] = (self.held[key][0], dict(desired))
        meta = body["metadata"]
        log.debug("%s/%s/%s: status %s", *key, ", ".join(sorted(patch)))
        try:
            namespace, name = meta["namespace"], meta["name"]
            answer = await self.kube.patch(
                str(body["apiVersion"]), plural, namespace, name, {"status": patch}, status=True
            )
        except ApiError as exc:
            if exc.status != 404:
                # Any other failure keeps a held status, readable and already due: the retry writes it at
                # once, and a following Endpoint never reads its service as having no model meanwhile.
                raise
            # Deleted while we reconciled it (a WebService's default Endpoint goes with it, no finalizer
            # holds it): nothing left to write to, and its DELETED event is on its way.
            log.debug("%s/%s/%s: gone before its status was written", *key)
            self.held.pop(key, None)
            return False
        self.held.pop(key, None)
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


async def reconcile_once(rt: Runtime, key: Key, once: Callable[[], Awaitable[float | None]]) -> float | None:
    """Run one reconcile, counted in the metrics; the seconds until the next one (None: on a change or
    the resync). An exception is logged and retried after the object's Backoff; it stops nothing."""
    kind = key[0]
    outcome = "ok"
    started = time.monotonic()
    delay: float | None
    try:
        delay = await once()
        rt.failures.pop(key, None)
    except kopf.TemporaryError as exc:
        outcome = "retry"
        delay = exc.delay if exc.delay is not None else 2.0
        log.info("%s/%s/%s: %s; again in %.0fs", *key, exc, delay)
    except Exception as exc:  # an API or programming error: log it, back off, try again
        outcome = "error"
        delay = rt.failures.setdefault(key, Backoff()).failed()
        log.exception("%s/%s/%s: reconcile failed (%s); again in %.0fs", *key, exc, delay)
    metrics.RECONCILES.labels(kind, outcome).inc()
    metrics.RECONCILE_SECONDS.labels(kind).observe(time.monotonic() - started)
    return delay


async def work(rt: Runtime, kind: str, reconcile: Reconcile) -> None:
    """One worker of `kind`: reconcile the objects its queue hands out, one at a time, forever."""
    queue = rt.queue(kind)
    while True:
        key = await queue.get()
        try:
            body = rt.objects.get(key)
            if body is None:  # gone
                continue
            # An object being deleted is reconciled too: its kind's reconcile runs its cleanup and removes
            # its finalizer (finalizer.py), or does nothing.
            delay = await reconcile_once(rt, key, lambda: reconcile(rt, key, body))  # noqa: B023
            if key in rt.objects:  # not deleted meanwhile
                resync = rt.config.resync_seconds
                queue.add_after(key, resync if delay is None else min(delay, resync))
            else:
                # Deleted while it ran: the DELETED event's forget() came before what the reconcile then
                # kept for the object (a held status, a created child, a phase, a view), which nothing
                # would drop now.
                rt.forget(key)
        finally:
            queue.done(key)


def start_workers(rt: Runtime, reconcilers: Mapping[str, Reconcile]) -> None:
    """`rt.config.workers` workers for each kind (a bounded pool, whatever the number of objects), and the
    heap trimmer."""
    for kind, reconcile in reconcilers.items():
        for i in range(rt.config.workers):
            task = asyncio.create_task(work(rt, kind, reconcile), name=f"reconcile {kind} {i}")
            rt.workers.append(task)
    rt.workers.append(asyncio.create_task(trim_after_bursts(rt), name="heap trimmer"))


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, None elsewhere (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


async def trim_after_bursts(
    rt: Runtime,
    every: float = 30.0,
    trim: Callable[[int], int] | None = None,
    settled: Callable[[], bool] | None = None,
) -> None:
    """Give the heap's free pages back to the system once a burst of work is over.

    glibc keeps what is freed in the middle of its heap: a start-up burst (the initial listings, the
    first reconcile of every object) left 100 MB free at N = 300 and 758 MB at N = 1,000 (RSS 950 MB,
    bench/README.md), which malloc_trim returns. Only after activity, when `settled` (by default: no
    reconcile queued or running; a standby, whose queue waits for the Lease, passes its own): an idle
    operator never calls it."""
    trim = trim or _malloc_trim()
    if trim is None:
        return
    settled = settled or (lambda: not rt.pending_wakeups() and not rt.in_flight())
    seen = rt.activity
    while True:
        await asyncio.sleep(every)
        if rt.activity != seen and settled():
            seen = rt.activity
            trim(0)


async def stop_workers(rt: Runtime) -> None:
    for task in rt.workers:
        task.cancel()
    await asyncio.gather(*rt.workers, return_exceptions=True)
    rt.workers.clear()
