"""The WebService decision: the model it serves (pinned, or followed from an Experiment behind a metric
gate), its default Endpoint `<name>-default` (created, kept following the service), and its status.

Every promotion decision is recorded in status.promotions with both metric values and the reason, the
refused ones too (once per candidate), so "why is this model (not) served?" has an answer in the status.
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
from kstudio_operator.decisions import Decision, Event, describe_validation_error
from kstudio_operator.decisions.endpoint import CreateChild
from kstudio_operator.resources.common import digest_prefix, set_condition
from kstudio_operator.resources.scheduling import Scheduling
from kstudio_operator.resources.webservice import (
    LISTED_ENDPOINTS,
    Promotion,
    WebServiceSpec,
    WebServiceStatus,
)

PROMOTIONS = 50


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
    if spec.model is not None:
        model = spec.model
    elif spec.model_from is not None:
        candidate = observed.experiment_latest
        cand = observed.models.get(candidate or "")
        ready = ((cand or {}).get("status") or {}).get("phase") == "Ready"
        already = any(p.to_model == candidate and p.from_model == model for p in promotions)
        if candidate and candidate != model and ready and not already:
            promote, why = True, "following the experiment's latest model (no gate)"
            metric = delta = None
            if spec.model_from.promote is not None and model is not None:
                rule = spec.model_from.promote
                metric = rule.metric
                served_v, cand_v = _metric(observed.models.get(model), metric), _metric(cand, metric)
                promote, why = gate(metric, rule.min_delta, served_v, cand_v, rule.direction)
                if served_v is not None and cand_v is not None:
                    delta = cand_v - served_v
            record = Promotion.model_validate(
                {
                    "from": model,
                    "to": candidate,
                    "metric": metric,
                    "delta": delta,
                    "at": now,
                    "promoted": promote,
                    "reason": why,
                }
            )
            promotions = [*promotions, record][-PROMOTIONS:]
            if promote:
                decision.events.append(
                    Event("Normal", "Promoted", f"serving {candidate} instead of {model}: {why}")
                )
                model = candidate
            else:
                decision.events.append(
                    Event("Normal", "PromotionRefused", f"keeping {model}, not {candidate}: {why}")
                )

    # The default Endpoint: created by us, follows the service (its spec names no model).
    default = default_endpoint_name(observed.name)
    mine = observed.endpoints.get(default)
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

    ep_status = (mine or {}).get("status") or {}
    serving = ep_status.get("model")
    if model is None:
        phase, reason, message, ready = "Pending", "NoModel", "no model to serve yet", "False"
    elif ep_status.get("phase") == "Ready" and serving == model:
        phase, reason, message, ready = "Ready", "Serving", f"{default} serves {model}", "True"
    elif serving:
        phase, reason, message, ready = (
            "Degraded",
            "RollingOut",
            f"{default} serves {serving}; rolling to {model}",
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
