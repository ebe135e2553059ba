"""Leader election on a coordination.k8s.io Lease: of the operator's replicas one reconciles, the others
wait, as client-go's leaderelection does for controller-manager and kubebuilder operators.

A candidate holds the Lease while it renews it (every `retry` seconds, one PUT from its own last write;
the others read it as often: 1 request/s for two replicas at the default 10 s lease); a holder that could
not renew for `renew_deadline` seconds stops at once (the process exits, its pod restarts as a
candidate), and another candidate takes the Lease over when it has seen no renewal for `duration`
seconds, so the old holder has stopped writing before the new one starts (`renew_deadline` < `duration`).
Expiry is measured on the candidate's own clock, from when it last saw the record change, never by
comparing clocks of two machines. A holder that stops normally (SIGTERM: a rolling update, a drain)
releases the Lease, and a candidate takes it over at its next try.

The standby is hot, as controller-runtime's managers are (they start the informer caches on every
replica; only the controllers wait for the Lease): it runs kopf's watches, indexes and wake-ups, so its
cache of every object and its work queues are current, but it starts no reconcile worker until it holds
the Lease (cli.run_elected, main.lead). Nothing but the workers writes (kopf writes nothing for our
handlers, main.py; deletion is the reconciles' own, finalizer.py), so a standby writes nothing but the
Lease and two replicas never both reconcile. Why hot: a cold standby (the design before) did the whole
start-up after taking over (every LIST, the indexes, the first event of every object), which at 1,000
WebServices took 16 s on top of the takeover; a hot one only reconciles its queue, and an object nothing
changed costs a reconcile that writes nothing. The cost: a standby holds the same caches as the leader
(its memory is the leader's at rest, about 100 MB at 1,000 + 1,000 objects, bench/README.md) and keeps
its own watch of every kind open on the API server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kstudio_operator.kube import ApiError, Kube, resource_path

log = logging.getLogger(__name__)
LEASES = ("coordination.k8s.io/v1", "leases")
Step = Literal["create", "renew", "take", "wait"]


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    duration: float = 10.0  # seconds without a renewal after which others may take the Lease
    renew_deadline: float = 7.0  # the holder stops when it could not renew for this long
    retry: float = 2.0  # seconds between two tries to acquire or renew

    @classmethod
    def parse(cls, where: str, **timing: float) -> LeaseConfig:
        """From `namespace/name` (the --leader-election value); the identity is this host (the pod's
        name in a cluster), this process and a random suffix, so two candidates never share one."""
        namespace, _, name = where.partition("/")
        if not namespace or not name:
            raise ValueError(f"--leader-election wants NAMESPACE/NAME, got {where!r}")
        identity = f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(4)}"
        return cls(namespace=namespace, name=name, identity=identity, **timing)


def next_step(lease: dict[str, Any] | None, unchanged_for: float, me: str) -> Step:
    """What a candidate does with the Lease as it reads it now (pure).

    `unchanged_for`: seconds since this candidate saw the record (holder, renewTime) change."""
    if lease is None:
        return "create"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if holder == me:
        return "renew"
    if not holder or unchanged_for >= float(spec.get("leaseDurationSeconds") or 0):
        return "take"
    return "wait"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One candidate. `acquire()` returns once it holds the Lease; `hold()` renews it until it cannot."""

    def __init__(self, kube: Kube, config: LeaseConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube, self.config, self.clock = kube, config, clock
        self._seen: tuple[Any, Any] | None = None  # (holder, renewTime) last read
        self._seen_at = clock()
        self._mine: dict[str, Any] | None = None  # the Lease as we last wrote it, while we hold it
        self.transitions = 0

    def _path(self) -> str:
        return resource_path(*LEASES, self.config.namespace, self.config.name)

    def _spec(self, previous: dict[str, Any], taking: bool) -> dict[str, Any]:
        now = _now()
        spec = {
            **previous,
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": max(1, round(self.config.duration)),
            "renewTime": now,
        }
        if taking:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(previous.get("leaseTransitions") or 0) + (1 if previous else 0)
        return spec

    async def _read(self) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = await self.kube.request("GET", self._path())
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.get("spec") or {}
        seen = (spec.get("holderIdentity"), spec.get("renewTime"))
        if seen != self._seen:
            self._seen, self._seen_at = seen, self.clock()
        return lease

    async def try_once(self) -> bool:
        """One try to acquire or renew; whether this candidate holds the Lease now. A conflict (someone
        else wrote first) or an API error means no, this time."""
        try:
            if self._mine is not None:
                # Renew from our own last write, without reading first (one request, not two); if anyone
                # else wrote since, its resourceVersion is stale and the API server answers 409.
                renewal = {**self._mine, "spec": self._spec(self._mine.get("spec") or {}, taking=False)}
                self._mine = await self.kube.request("PUT", self._path(), renewal)
                return True
            lease = await self._read()
            step = next_step(lease, self.clock() - self._seen_at, self.config.identity)
            if step == "wait":
                return False
            if step == "create":
                body = {
                    "apiVersion": LEASES[0],
                    "kind": "Lease",
                    "metadata": {"name": self.config.name, "namespace": self.config.namespace},
                    "spec": self._spec({}, taking=True),
                }
                collection = resource_path(*LEASES, self.config.namespace)
                self._mine = await self.kube.request("POST", collection, body)
                return True
            assert lease is not None
            # A replace with the resourceVersion we read: if another candidate wrote in between, the API
            # server answers 409 and nobody holds it twice.
            lease["spec"] = self._spec(lease.get("spec") or {}, taking=step == "take")
            self._mine = await self.kube.request("PUT", self._path(), lease)
            if step == "take":
                self.transitions += 1
            return True
        except ApiError as exc:
            self._mine = None  # read it again next time
            if exc.status not in (0, 409) and exc.status < 500:
                log.warning("leader election: %s", exc)
            return False

    async def acquire(self) -> None:
        """Wait until this candidate holds the Lease."""
        log.info("leader election: %s waits for Lease %s/%s", self.config.identity, *self._where())
        while not await self.try_once():
            await asyncio.sleep(self.config.retry)
        log.info("leader election: %s leads (Lease %s/%s)", self.config.identity, *self._where())

    async def hold(self) -> None:
        """Renew every `retry` seconds; return when the Lease could not be renewed for `renew_deadline`
        seconds (or someone else holds it): the caller must stop reconciling at once."""
        renewed = self.clock()
        while True:
            await asyncio.sleep(self.config.retry)
            if await self.try_once():
                renewed = self.clock()
            elif self._seen is not None and self._seen[0] not in (None, self.config.identity):
                log.error("leader election: %s lost the Lease to %s", self.config.identity, self._seen[0])
                return
            if self.clock() - renewed > self.config.renew_deadline:
                log.error(
                    "leader election: %s could not renew the Lease for %.0f s", self.config.identity,
                    self.clock() - renewed,
                )  # fmt: skip
                return

    async def release(self) -> None:
        """Give the Lease up (a normal stop): the next candidate takes it at its next try."""
        try:
            lease = await self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.config.identity:
                return
            lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            await self.kube.request("PUT", self._path(), lease)
            self._mine = None
            log.info("leader election: %s released the Lease", self.config.identity)
        except ApiError as exc:
            log.warning("leader election: could not release the Lease: %s", exc)

    def _where(self) -> tuple[str, str]:
        return self.config.namespace, self.config.name
