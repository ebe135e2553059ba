"""The canary step of a WebService's promotion: pure, with injected time.

A candidate that passed the metric gate first serves `weight` % of the default Endpoint's requests (the
service's status.traffic, which its default Endpoint follows). The clock starts once the Endpoint's ready
pods serve that split; from then on, for `durationSeconds`, the candidate's error rate (answers that are not
2xx, among those it gave: kstudio_core.serving, read by the handler from the scorer pods) must stay at most
`maxErrorRate`. Then it is promoted to 100 %; at the first reading over the bound, or when it answered
fewer than `minRequests`, or when its pods do not come up, it is removed from the split and refused, with
the reason. Every step is a record in status.promotions and an Event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from kstudio_operator.resources.webservice import Canary, CanaryStep

# Seconds between two readings of the candidate's error rate while it serves.
CHECK_SECONDS = 5.0
# The canary's pods must come up within this long (the scorer Deployment's progress deadline).
ROLLOUT_SECONDS = 600.0


@dataclass(frozen=True)
class CanaryReading:
    """What the scorer pods serving the split counted for the candidate: answers and errors."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class CanaryOutcome:
    """`verdict` None: the canary goes on (state updated, look again in `requeue` s); "promoted"/"refused":
    it is over, `reason` says why. `step`: a record to add to status.promotions, when one happened."""

    canary: Canary
    verdict: Literal["promoted", "refused"] | None = None
    reason: str = ""
    step: CanaryStep | None = None
    requeue: float | None = None


def split_of(canary: Canary) -> str:
    """The default Endpoint's split while the canary runs: the served model, then the candidate."""
    return f"{canary.from_model}:{100 - canary.weight},{canary.model}:{canary.weight}"


def decide_canary(
    canary: Canary,
    endpoint_phase: str | None,
    endpoint_split: str | None,
    reading: CanaryReading | None,
    now: datetime,
) -> CanaryOutcome:
    """The next step of a running canary, from what the default Endpoint serves and the candidate's counts
    (None: they could not be read)."""
    since = canary.serving_since
    if since is None:
        if endpoint_phase == "Ready" and endpoint_split == split_of(canary):
            serving = canary.model_copy(update={"serving_since": now})
            words = f"{canary.model} answers {canary.weight}% of the requests for {canary.duration_seconds}s"
            return CanaryOutcome(serving, step="CanaryServing", reason=words, requeue=CHECK_SECONDS)
        if endpoint_phase == "Stalled":
            return _refused(
                canary, "its pods do not come up (the default Endpoint's Ready condition says why)"
            )
        if now - canary.started_at > timedelta(seconds=ROLLOUT_SECONDS):
            return _refused(
                canary, f"the split {split_of(canary)} was not served within {ROLLOUT_SECONDS:.0f}s"
            )
        return CanaryOutcome(canary, requeue=CHECK_SECONDS)
    if reading is not None:
        canary = canary.model_copy(update={"requests": reading.requests, "errors": reading.errors})
    deadline = since + timedelta(seconds=canary.duration_seconds)
    counted = reading is not None and reading.requests >= max(canary.min_requests, 1)
    if reading is not None and counted and reading.error_rate > canary.max_error_rate:
        return _refused(canary, f"error rate {_rate(reading)} > maxErrorRate {canary.max_error_rate}")
    if now < deadline:
        return CanaryOutcome(canary, requeue=min(CHECK_SECONDS, (deadline - now).total_seconds()))
    if reading is None:
        return _refused(canary, "its error rate could not be read from the scorer pods")
    if reading.requests < canary.min_requests:
        why = f"it answered {reading.requests} request(s) in {canary.duration_seconds}s"
        return _refused(canary, f"{why}, fewer than minRequests {canary.min_requests}")
    words = (
        f"error rate {_rate(reading)} <= maxErrorRate {canary.max_error_rate} "
        f"over {canary.duration_seconds}s at {canary.weight}%"
    )
    return CanaryOutcome(canary, verdict="promoted", reason=words, step="CanaryPromoted")


def _refused(canary: Canary, why: str) -> CanaryOutcome:
    return CanaryOutcome(canary, verdict="refused", reason=why, step="CanaryRefused")


def _rate(reading: CanaryReading) -> str:
    return f"{reading.error_rate:.4f} ({reading.errors}/{reading.requests} answers)"
