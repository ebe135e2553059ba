"""The Endpoint decision: which model the scorer pods should serve, the children to create or change, and
a status that says what the pods *really* serve (from ready pods, not from the spec).

Inputs are observed state only: the Endpoint, its WebService, the TrainedModels, the scorer Deployment and
its pods. A model change is refused when the input schema differs (unless allowed) and deferred while the
model is not Ready; either way the pods keep serving what they serve. A new model that cannot load stalls
the rollout (maxUnavailable 0 keeps the old pods) and the status says why.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kstudio_operator import constants as c
from kstudio_operator.builders import scorer
from kstudio_operator.builders.ownership import own
from kstudio_operator.builders.patches import merge_patch
from kstudio_operator.decisions import Decision, Event, describe_validation_error
from kstudio_operator.resources.common import Condition, ConditionStatus, digest_prefix, set_condition
from kstudio_operator.resources.endpoint import EndpointSpec, EndpointStatus, RollbackOverride, Rollout
from kstudio_operator.settings import OperatorConfig

HISTORY = 20
# Waiting reasons / exit codes of a scorer container that mean "this model will not come up by itself".
STUCK_WAITING = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerError", "StartError"}


@dataclass(frozen=True)
class CreateChild:
    manifest: dict[str, Any]


@dataclass(frozen=True)
class ReplaceDeployment:
    """Make the scorer Deployment `manifest` by sending `patch` (a merge patch, complete: see
    `deployment_patch`)."""

    manifest: dict[str, Any]
    patch: dict[str, Any]


@dataclass
class EndpointObserved:
    namespace: str
    name: str
    generation: int
    web_service: dict[str, Any] | None  # {"spec", "status"} of the WebService, None when it does not exist
    models: Mapping[str, dict[str, Any]]  # TrainedModel name → {"spec", "status"} (this namespace)
    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]] = field(default_factory=list)
    has_service: bool = False
    is_default: bool = False  # the WebService's own `<ws>-default`: it follows the service, whatever its spec
    rollback_request: str | None = None  # the kstudio.io/rollback annotation's value


def spec_hash(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest["spec"], sort_keys=True).encode()).hexdigest()[:16]


def deployment_patch(desired: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that makes the scorer Deployment `desired`, given its index entry `observed`.

    The spec is sent in full, with its spec-hash annotation (the other annotations are not ours: they
    stay). The builder leaves nodeSelector and tolerations out when the Endpoint sets none, so whatever
    placement the Deployment has and `desired` dropped is sent as null (or its pods stay pinned)."""
    placement = {
        "nodeSelector": observed.get("nodeSelector") or {},
        "tolerations": observed.get("tolerations") or [],
    }
    current = {"spec": {"template": {"spec": placement}}}
    wanted = {"metadata": {"annotations": desired["metadata"]["annotations"]}, "spec": desired["spec"]}
    return merge_patch(current, wanted, full=True)


def _ready(pod: dict[str, Any]) -> bool:
    return bool(pod.get("ready"))


def served(pods: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    """sha256 → (model name, ready pods serving it), from the pods' template annotations. A terminating
    pod that is still ready counts: while it drains, it still answers."""
    out: dict[str, tuple[str, int]] = {}
    for pod in pods:
        if _ready(pod) and pod.get("sha256"):
            name, count = out.get(pod["sha256"], (pod.get("model") or "", 0))
            out[pod["sha256"]] = (name, count + 1)
    return out


def schema_difference(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    """'' when equal, else which columns were added, removed or changed type."""
    a = {c["name"]: c.get("type") for c in old}
    b = {c["name"]: c.get("type") for c in new}
    parts = []
    if added := sorted(set(b) - set(a)):
        parts.append("added " + ", ".join(added))
    if removed := sorted(set(a) - set(b)):
        parts.append("removed " + ", ".join(removed))
    if changed := sorted(k for k in set(a) & set(b) if a[k] != b[k]):
        parts.append("changed type of " + ", ".join(f"{k} ({a[k]} -> {b[k]})" for k in changed))
    return "; ".join(parts)


def stuck_reason(pods: list[dict[str, Any]], sha256: str) -> str | None:
    """Why pods of the model `sha256` cannot become ready, if they say so (crash loop, exit 2, ...)."""
    for pod in pods:
        if pod.get("sha256") != sha256 or _ready(pod):
            continue
        waiting = pod.get("waiting") or ""
        last = pod.get("lastTerminated") or {}
        if waiting in STUCK_WAITING or (last and last.get("exitCode") not in (None, 0)):
            words = str(last.get("message") or "").strip().splitlines()
            detail = words[-1] if words else waiting
            return f"pod {pod.get('name')}: {detail} (exit code {last.get('exitCode', '?')})"
    return None


def decide_endpoint(
    spec_raw: dict[str, Any],
    status: dict[str, Any],
    observed: EndpointObserved,
    now: datetime,
    config: OperatorConfig,
    owner: dict[str, Any],
) -> Decision:
    previous = EndpointStatus.model_validate(status)
    gen = observed.generation
    decision = Decision(status={})
    conds = list(previous.conditions)
    try:
        spec = EndpointSpec.model_validate(spec_raw)
    except ValidationError as exc:
        message = describe_validation_error(exc)
        conds = set_condition(conds, "Ready", "False", "InvalidSpec", message, gen)
        decision.status = _status(previous, gen, "Failed", conds)
        return decision
    ws = observed.web_service
    if ws is None:
        message = f"WebService {spec.web_service} does not exist"
        conds = set_condition(conds, "Ready", "False", "WebServiceNotFound", message, gen)
        decision.status = _status(previous, gen, "Pending", conds, keep_serving=True)
        return decision

    now_serving = served(observed.pods)
    current_sha = previous.model_digest if previous.model_digest in now_serving else None
    if current_sha is None and len(now_serving) == 1:
        current_sha = next(iter(now_serving))
    current_model = now_serving[current_sha][0] if current_sha else None

    # Which model the pods should serve.
    following = observed.is_default or spec.model is None
    wanted = (ws.get("status") or {}).get("model") if following else spec.model
    rolled_back = _rollback(previous, observed.rollback_request, wanted, decision)
    if rolled_back is not None and rolled_back.active:
        wanted = rolled_back.model
    target_name, accept_reason, accept_status = _accept(observed, spec, wanted, current_model)
    conds = set_condition(conds, "ModelAccepted", accept_status, accept_reason[0], accept_reason[1], gen)
    target = observed.models.get(target_name or "")
    if target is None or target_name is None:
        conds = set_condition(conds, "Ready", "False", "NoModel", accept_reason[1], gen)
        decision.status = _status(previous, gen, "Pending", conds, keep_serving=True)
        return decision
    artifact = (target.get("spec") or {}).get("artifact") or {}
    model = scorer.ServedModel(
        name=target_name, uri=str(artifact.get("uri")), sha256=str(artifact.get("sha256"))
    )

    # Children.
    ws_spec = ws.get("spec") or {}
    desired = scorer.deployment(
        observed.namespace, observed.name, spec.web_service, spec, model, ws_spec.get("output") or {}, config
    )
    own(desired, owner)
    desired["metadata"].setdefault("annotations", {})[c.ANNOTATION_SPEC_HASH] = spec_hash(desired)
    if not observed.has_service:
        svc = scorer.service(observed.namespace, observed.name, spec.web_service)
        own(svc, owner)
        decision.actions.append(CreateChild(svc))
    deployment = observed.deployment
    if deployment is None:
        decision.actions.append(CreateChild(desired))
    elif (deployment.get("annotations") or {}).get(c.ANNOTATION_SPEC_HASH) != spec_hash(desired):
        decision.actions.append(ReplaceDeployment(desired, deployment_patch(desired, deployment)))

    # Status: what the ready pods serve, the rollout, the conditions.
    ready = sum(count for _, count in now_serving.values())
    on_target = now_serving.get(model.sha256, ("", 0))[1]
    rollout = previous.rollout
    if (
        current_sha
        and current_sha != model.sha256
        and (rollout is None or rollout.finished_at or rollout.to_model != model.name)
    ):
        rollout = Rollout.model_validate({"from": current_model, "to": model.name, "startedAt": now})
        decision.events.append(
            Event("Normal", "RolloutStarted", f"rolling out {model.name} (was {current_model})")
        )
    history = list(previous.history)
    # Switched only when no pod of another model is left at all (a draining pod may still answer).
    others = [p for p in observed.pods if p.get("sha256") != model.sha256]
    done = on_target >= max(spec.replicas, 1) and not others
    if spec.replicas == 0:
        done = not observed.pods
    served_sha, served_name = (model.sha256, model.name) if done else (current_sha, current_model)
    if done and rollout is not None and rollout.finished_at is None and rollout.to_model == model.name:
        started = rollout.started_at or now
        rollout = rollout.model_copy(
            update={"finished_at": now, "seconds": round((now - started).total_seconds(), 3)}
        )
        history = [*history, rollout][-HISTORY:]
        decision.events.append(
            Event("Normal", "RolloutFinished", f"serving {model.name} ({rollout.seconds}s)")
        )
    stuck = None if done else stuck_reason(observed.pods, model.sha256)
    if done:
        phase = "Ready"
        conds = set_condition(
            conds, "Ready", "True", "Serving", f"{ready} ready pod(s) serve {model.name}", gen
        )
        conds = set_condition(conds, "Progressing", "False", "RolloutComplete", f"serving {model.name}", gen)
    elif stuck:
        phase = "Stalled"
        message = (
            f"{model.name} does not come up, the pods keep serving {current_model or 'nothing'}: {stuck}"
        )
        ready_status: ConditionStatus = "True" if ready else "False"
        conds = set_condition(conds, "Ready", ready_status, "RolloutStalled", message, gen)
        conds = set_condition(conds, "Progressing", "False", "RolloutStalled", message, gen)
        if previous.phase != "Stalled":
            decision.events.append(Event("Warning", "RolloutStalled", message))
    elif current_sha:
        phase = "RollingOut"
        message = (
            f"{on_target}/{spec.replicas} pod(s) ready on {model.name}; {current_model} serves meanwhile"
        )
        conds = set_condition(conds, "Ready", "True", "RollingOut", message, gen)
        conds = set_condition(conds, "Progressing", "True", "RollingOut", message, gen)
    else:
        phase = "Pending"
        message = f"waiting for a pod serving {model.name} to be ready"
        conds = set_condition(conds, "Ready", "False", "PodsNotReady", message, gen)
        conds = set_condition(conds, "Progressing", "True", "Starting", message, gen)
    decision.status = EndpointStatus(
        observed_generation=gen,
        phase=phase,
        conditions=conds,
        model=served_name,
        model_digest=served_sha,
        model_digest_prefix=digest_prefix(served_sha),
        url=scorer.service_url(observed.namespace, observed.name),
        replicas=spec.replicas,
        ready_replicas=ready,
        rollout=rollout,
        history=history,
        rolled_back=rolled_back,
    ).to_wire()
    return decision


def _rollback(
    previous: EndpointStatus, request: str | None, wanted: str | None, decision: Decision
) -> RollbackOverride | None:
    """The model a `kstudio.io/rollback: <token>` request restores (the one served before the last
    rollout), kept until spec.model changes; a new token rolls back once more. Never writes the spec."""
    held = previous.rolled_back
    if held is not None and held.active and held.spec_model != wanted:
        held = held.model_copy(update={"active": False})  # the spec moved on: it wins
    if request and (held is None or held.token != request):
        last = previous.history[-1] if previous.history else None
        if last is None or not last.from_model:
            decision.events.append(
                Event("Warning", "RollbackImpossible", "no earlier model in the rollout history")
            )
            # Remembered as handled (restoring nothing), so it is said once and not acted on by surprise
            # after a later rollout.
            return RollbackOverride(token=request, model="", spec_model=wanted, active=False)
        held = RollbackOverride(token=request, model=last.from_model, spec_model=wanted)
        decision.events.append(
            Event(
                "Normal",
                "RollingBack",
                f"restoring {last.from_model} (spec.model {wanted} is kept until changed)",
            )
        )
    return held


def _accept(
    observed: EndpointObserved, spec: EndpointSpec, wanted: str | None, current: str | None
) -> tuple[str | None, tuple[str, str], ConditionStatus]:
    """(model to put in the pod template, (reason, message), ModelAccepted status)."""
    if wanted is None:
        return current, ("NoModel", "the WebService serves no model yet"), "False"
    candidate = observed.models.get(wanted)
    if candidate is None:
        return current, ("ModelNotFound", f"TrainedModel {wanted} does not exist"), "False"
    phase = (candidate.get("status") or {}).get("phase")
    if phase != "Ready":
        why = (candidate.get("status") or {}).get("message") or "not verified yet"
        return current, ("ModelNotReady", f"TrainedModel {wanted} is {phase or 'Pending'}: {why}"), "False"
    if current and current != wanted and not spec.allow_schema_change:
        old = ((observed.models.get(current) or {}).get("status") or {}).get("inputSchema") or []
        new = (candidate.get("status") or {}).get("inputSchema") or []
        if old and (diff := schema_difference(old, new)):
            message = (
                f"TrainedModel {wanted} has another input schema than {current} ({diff}); "
                "set spec.allowSchemaChange: true to serve it anyway"
            )
            return current, ("SchemaChanged", message), "False"
    return wanted, ("Accepted", f"serving TrainedModel {wanted} is allowed"), "True"


def _status(
    previous: EndpointStatus, gen: int, phase: str, conds: list[Condition], keep_serving: bool = False
) -> dict[str, Any]:
    update: dict[str, Any] = {"observed_generation": gen, "conditions": conds}
    if not keep_serving or previous.phase is None:
        update["phase"] = phase
    return previous.model_copy(update=update).to_wire()
