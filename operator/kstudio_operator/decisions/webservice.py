"""The WebService decision: the model it serves (pinned, or followed from an Experiment behind a metric
gate), its default Endpoint `<name>-default` (created, kept following the service), and its status.

Every promotion decision is recorded in status.promotions with both metric values and the reason, the
refused ones too (once per candidate), so "why is this model (not) served?" has an answer in the status.
With `promote.canary`, a candidate that passed the gate first serves a share of the default Endpoint's
traffic (status.traffic, which that Endpoint follows) and is promoted or refused by decisions/canary.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from kstudio_core.vocabulary import LOWER_IS_BETTER
from kstudio_operator.builders.endpoint import default_endpoint, default_endpoint_name
from kstudio_operator.builders.ownership import own
from kstudio_operator.builders.patches import merge_patch
from kstudio_operator.builders.scorer import service_url
from kstudio_operator.decisions import Decision, Event, describe_validation_error, first_progress
from kstudio_operator.decisions.canary import CHECK_SECONDS, CanaryReading, decide_canary, split_of
from kstudio_operator.decisions.endpoint import CreateChild
from kstudio_operator.resources.common import digest_prefix, set_condition
from kstudio_operator.resources.scheduling import Scheduling
from kstudio_operator.resources.webservice import (
    LISTED_ENDPOINTS,
    Canary,
    ModelFrom,
    Promotion,
    TrafficShare,
    WebServiceSpec,
    WebServiceStatus,
)

PROMOTIONS = 50


def settles(written: Mapping[str, Any], desired: Mapping[str, Any], spec_raw: Mapping[str, Any]) -> bool:
    """Whether this first status of a new WebService may wait for its Ready (decisions.first_progress):
    its default Endpoint is not serving yet, and every model the status names is the one its spec names.
    A model chosen from an Experiment is written at once: the status is what makes the TrainedModel's
    deletion guard (the model_users index) see it in use. No model yet, a refused spec: written at once."""
    named = {desired.get("model"), *((t or {}).get("model") for t in desired.get("traffic") or [])} - {None}
    return first_progress(written, desired, {"EndpointNotReady"}) and named <= {spec_raw.get("model")}


@dataclass(frozen=True)
class PatchEndpointSpec:
    """Merge-patch the spec of the operator-owned default Endpoint (users' Endpoints are never written)."""

    name: str
    patch: dict[str, Any]


@dataclass
class WebServiceObserved:
    namespace: str
    name: str
    generation: int
    models: Mapping[str, dict[str, Any]]  # TrainedModel name → {"spec", "status", "labels"}
    experiment_latest: str | None = None  # modelFrom: the Experiment's status.latestTrainedModel
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # this service's Endpoints by name
    # During a canary: the candidate's answers and errors, summed over the default Endpoint's ready pods
    # (None: not read, or could not be read).
    canary_reading: CanaryReading | None = None


def _metric(model: dict[str, Any] | None, metric: str) -> float | None:
    value = ((model or {}).get("status") or {}).get("metrics", {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def gate(
    metric: str,
    min_delta: float,
    served: float | None,
    candidate: float | None,
    direction: Literal["higher", "lower"] | None = None,
) -> tuple[bool, str]:
    """(promote?, why). Without a direction, higher is better unless the metric is an error (rmse, ...)."""
    if candidate is None:
        return False, f"the candidate has no {metric}"
    if served is None:
        return True, f"nothing with a {metric} is served yet"
    lower = direction == "lower" if direction else metric in LOWER_IS_BETTER
    gain = (served - candidate) if lower else (candidate - served)
    direction = "lower" if lower else "higher"
    words = f"{metric} {candidate:.4f} vs {served:.4f} served ({direction} is better): gain {gain:+.4f}"
    if gain >= min_delta:
        return True, f"{words} >= minDelta {min_delta}"
    return False, f"{words} < minDelta {min_delta}"


def _named(pinned: Any) -> str:
    """A spec.model or spec.traffic in words: `m-9`, or `m-1:90,m-2:10`."""
    if isinstance(pinned, list):
        return ",".join(f"{t.get('model')}:{t.get('weight')}" for t in pinned if isinstance(t, dict))
    return str(pinned)


def _scheduling_patch(their: Any, wanted: Scheduling) -> dict[str, Any] | None:
    """The merge patch that gives the default Endpoint the service's scheduling, None when it has it.

    Compared as parsed models, so an absent field and its empty default are equal (no write); an invalid
    one is overwritten whole."""
    try:
        current = Scheduling.model_validate(their or {})
    except ValidationError:
        current = None
    if current == wanted:
        return None
    return merge_patch(their if isinstance(their, dict) else {}, wanted.to_wire(), full=True)


def decide_web_service(
    spec_raw: dict[str, Any],
    status: dict[str, Any],
    observed: WebServiceObserved,
    now: datetime,
    owner: dict[str, Any],
) -> Decision:
    previous = WebServiceStatus.model_validate(status)
    gen = observed.generation
    decision = Decision(status={})
    conds = list(previous.conditions)
    try:
        spec = WebServiceSpec.model_validate(spec_raw)
    except ValidationError as exc:
        message = describe_validation_error(exc)
        conds = set_condition(conds, "Ready", "False", "InvalidSpec", message, gen)
        decision.status = previous.model_copy(
            update={"observed_generation": gen, "phase": "Failed", "conditions": conds}
        ).to_wire()
        return decision

    model = previous.model
    promotions = list(previous.promotions)
    default = default_endpoint_name(observed.name)
    mine = observed.endpoints.get(default)
    ep_status = (mine or {}).get("status") or {}
    canary = previous.canary
    if canary is not None and (spec.model is not None or spec.model_from is None):
        why = f"spec.model pins {spec.model}" if spec.model else "spec.modelFrom was removed"
        promotions.append(_canary_record(canary, "CanaryRefused", now, f"the canary stopped: {why}"))
        canary = None
    if spec.model is not None:
        model = spec.model
    elif canary is not None:
        model, canary = _go_on(canary, model, ep_status, observed, now, promotions, decision)
    elif spec.model_from is not None:
        model, canary = _new_candidate(spec.model_from, model, observed, now, promotions, decision)
    promotions = promotions[-PROMOTIONS:]

    # The default Endpoint: created by us, follows the service (its spec names no model).
    endpoints = set(observed.endpoints)
    if mine is None:
        endpoint = default_endpoint(observed.namespace, observed.name, spec.scorer)
        decision.actions.append(CreateChild(own(endpoint, owner)))
        endpoints.add(default)  # listed from now on: its arrival in the index is nothing to write
    else:
        their = mine.get("spec") or {}
        patch: dict[str, Any] = {}
        for pinned in ("model", "traffic"):
            if not their.get(pinned):
                continue
            patch[pinned] = None
            decision.events.append(
                Event(
                    "Warning",
                    "DefaultEndpointReverted",
                    f"Endpoint {default} follows the WebService; its spec.{pinned} "
                    f"{_named(their[pinned])} was removed (create another Endpoint to pin a model or split "
                    "the traffic)",
                )
            )
        if their.get("replicas") != spec.scorer.replicas:
            patch["replicas"] = spec.scorer.replicas
        if their.get("resources") != spec.scorer.resources.to_wire():
            patch["resources"] = spec.scorer.resources.to_wire()
        if scheduling_patch := _scheduling_patch(their.get("scheduling"), spec.scorer.scheduling):
            patch["scheduling"] = scheduling_patch
        if patch:
            decision.actions.append(PatchEndpointSpec(default, patch))

    traffic = [TrafficShare(model=model, weight=100)] if model else []
    if canary is not None:
        traffic = [
            TrafficShare(model=canary.from_model, weight=100 - canary.weight),
            TrafficShare(model=canary.model, weight=canary.weight),
        ]
    split = ",".join(f"{t.model}:{t.weight}" for t in traffic) or None
    serving = ep_status.get("split")
    if model is None:
        phase, reason, message, ready = "Pending", "NoModel", "no model to serve yet", "False"
    elif ep_status.get("phase") == "Ready" and serving == split:
        phase, reason, message, ready = "Ready", "Serving", f"{default} serves {split}", "True"
    elif serving:
        phase, reason, message, ready = (
            "Degraded",
            "RollingOut",
            f"{default} serves {serving}; rolling to {split}",
            "True",
        )
    else:
        phase, reason, message, ready = (
            "Pending",
            "EndpointNotReady",
            f"{default} is not serving yet",
            "False",
        )
    conds = set_condition(conds, "Ready", ready, reason, message, gen)  # type: ignore[arg-type]
    decision.status = WebServiceStatus(
        observed_generation=gen,
        phase=phase,
        conditions=conds,
        model=model,
        traffic=traffic,
        split=split,
        canary=canary,
        model_digest=ep_status.get("modelDigest"),
        model_digest_prefix=digest_prefix(ep_status.get("modelDigest")),
        default_endpoint=default,
        # Known as soon as the Endpoint is named (the same as its own status says, not one write later).
        url=ep_status.get("url") or service_url(observed.namespace, default),
        endpoints=sorted(endpoints)[:LISTED_ENDPOINTS],
        endpoint_count=len(endpoints),
        promotions=promotions,
    ).to_wire()
    return decision


def _new_candidate(
    model_from: ModelFrom,
    model: str | None,
    observed: WebServiceObserved,
    now: datetime,
    promotions: list[Promotion],
    decision: Decision,
) -> tuple[str | None, Canary | None]:
    """(the model served, the canary started) after a look at the Experiment's latest model: judged once
    by the gate, then promoted at once, or first tried as a canary when the spec asks for one."""
    candidate = observed.experiment_latest
    cand = observed.models.get(candidate or "")
    ready = ((cand or {}).get("status") or {}).get("phase") == "Ready"
    already = any(p.to_model == candidate and p.from_model == model for p in promotions)
    if not candidate or candidate == model or not ready or already:
        return model, None
    promote, why = True, "following the experiment's latest model (no gate)"
    metric = delta = None
    rule = model_from.promote
    if rule is not None and model is not None:
        metric = rule.metric
        served_v, cand_v = _metric(observed.models.get(model), metric), _metric(cand, metric)
        promote, why = gate(metric, rule.min_delta, served_v, cand_v, rule.direction)
        if served_v is not None and cand_v is not None:
            delta = cand_v - served_v
    trial = rule.canary if rule is not None and promote and model is not None else None
    if trial is not None:
        why += (
            f"; canary: {candidate} serves {trial.weight}% for {trial.duration_seconds}s, promoted if its "
            f"error rate stays <= {trial.max_error_rate}"
        )
    record = {"from": model, "to": candidate, "metric": metric, "delta": delta, "at": now, "reason": why}
    step = "CanaryStarted" if trial is not None else "Gate"
    promotions.append(
        Promotion.model_validate(record | {"promoted": promote and trial is None, "step": step})
    )
    if trial is not None and model is not None:
        canary = Canary.model_validate(
            {
                "model": candidate,
                "from": model,
                "weight": trial.weight,
                "durationSeconds": trial.duration_seconds,
                "maxErrorRate": trial.max_error_rate,
                "minRequests": trial.min_requests,
                "startedAt": now,
            }
        )
        decision.events.append(Event("Normal", "CanaryStarted", f"{split_of(canary)}: {why}"))
        decision.requeue = CHECK_SECONDS
        return model, canary
    if promote:
        decision.events.append(Event("Normal", "Promoted", f"serving {candidate} instead of {model}: {why}"))
        return candidate, None
    decision.events.append(Event("Normal", "PromotionRefused", f"keeping {model}, not {candidate}: {why}"))
    return model, None


def _go_on(
    canary: Canary,
    model: str | None,
    ep_status: dict[str, Any],
    observed: WebServiceObserved,
    now: datetime,
    promotions: list[Promotion],
    decision: Decision,
) -> tuple[str | None, Canary | None]:
    """(the model served, the canary if it goes on) after the next step of a running canary."""
    outcome = decide_canary(
        canary, ep_status.get("phase"), ep_status.get("split"), observed.canary_reading, now
    )
    canary = outcome.canary
    if outcome.step is not None:
        promoted = outcome.verdict == "promoted"
        promotions.append(_canary_record(canary, outcome.step, now, outcome.reason, promoted))
    if outcome.verdict == "promoted":
        event = f"serving {canary.model} instead of {model} after its canary: {outcome.reason}"
        decision.events.append(Event("Normal", "Promoted", event))
        return canary.model, None
    if outcome.verdict == "refused":
        event = f"keeping {model}, not {canary.model}: its canary failed: {outcome.reason}"
        decision.events.append(Event("Warning", "PromotionRefused", event))
        return model, None
    if outcome.step == "CanaryServing":
        decision.events.append(Event("Normal", "CanaryServing", outcome.reason))
    decision.requeue = outcome.requeue
    return model, canary


def _canary_record(
    canary: Canary, step: str, now: datetime, reason: str, promoted: bool = False
) -> Promotion:
    return Promotion.model_validate(
        {
            "from": canary.from_model,
            "to": canary.model,
            "at": now,
            "step": step,
            "promoted": promoted,
            "reason": reason[:512],
            "requests": canary.requests,
            "errors": canary.errors,
        }
    )
