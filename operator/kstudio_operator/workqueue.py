"""A work queue of object keys, as controller-runtime's (client-go's workqueue): what the reconcile workers
take their next object from.

- A key is at most once in the queue: a burst of watch events for one object makes one reconcile.
- A key is never handed to two workers at once: added while a worker reconciles it, it is queued again
  when that worker is done (one more pass sees the latest state).
- `add_after` queues a key later (a reconcile's requested delay, a retry after a failure, the resync);
  of two pending delays the earlier wins, since a reconcile reads the current state whenever it runs.

Pure asyncio, no kopf: one queue per kind, served by a fixed number of workers (runtime.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._ready: deque[K] = deque()
        self._queued: set[K] = set()  # in _ready
        self._active: set[K] = set()  # handed to a worker, not done yet
        self._again: set[K] = set()  # added while active: queued when done
        self._later: dict[K, asyncio.TimerHandle] = {}
        self._items = asyncio.Semaphore(0)  # one per key in _ready

    def add(self, key: K) -> None:
        """Queue `key` now, unless it is queued already (then nothing changes)."""
        if key in self._queued:
            return
        if key in self._active:
            self._again.add(key)
            return
        self._queued.add(key)
        self._ready.append(key)
        self._items.release()

    def add_after(self, key: K, delay: float) -> None:
        """Queue `key` in `delay` seconds, or sooner if it is due sooner already."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        pending = self._later.get(key)
        if pending is not None:
            if pending.when() <= when:
                return
            pending.cancel()
        self._later[key] = loop.call_at(when, self._due, key)

    def _due(self, key: K) -> None:
        self._later.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        """The next key, marked active until `done(key)`."""
        await self._items.acquire()
        key = self._ready.popleft()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        """A worker finished `key`: queue it again if it was added meanwhile."""
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def forget(self, key: K) -> None:
        """Drop `key`'s pending delay (its object is gone). A queued entry stays: the worker that takes it
        finds no object and moves on."""
        pending = self._later.pop(key, None)
        if pending is not None:
            pending.cancel()

    def queued(self) -> list[K]:
        """The keys waiting for a worker, in the order they will be handed out."""
        return [*self._ready, *self._again]

    def later(self) -> list[K]:
        """The keys waiting for their delay to be queued."""
        return list(self._later)

    def pending(self) -> int:
        """Keys waiting for a worker now (delayed ones not counted): the queue depth."""
        return len(self._ready) + len(self._again)

    def active(self) -> int:
        return len(self._active)

    def delayed(self) -> int:
        return len(self._later)
