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
from kstudio_operator.builders.traffic import ServedModel, Split, parse_label
from kstudio_operator.decisions import (
    Decision,
    Event,
    condition_reason,
    describe_validation_error,
    first_progress,
)
from kstudio_operator.resources.common import Condition, ConditionStatus, digest_prefix, set_condition
from kstudio_operator.resources.endpoint import (
    EndpointSpec,
    EndpointStatus,
    RollbackOverride,
    Rollout,
    ServedMirror,
    ServedWeight,
)
from kstudio_operator.settings import OperatorConfig

HISTORY = 20
# Waiting reasons / exit codes of a scorer container that mean "this model will not come up by itself".
STUCK_WAITING = {"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "CreateContainerError", "StartError"}


def settles(written: Mapping[str, Any], desired: Mapping[str, Any], web_service_reported: bool) -> bool:
    """Whether this first status of a new Endpoint may wait for its Ready (decisions.first_progress): its
    model is accepted and its pods are starting, or it follows a WebService that has not said which model
    yet (`web_service_reported` False: the service's own status is about to name it). A model that does
    not exist or is not Ready, a refused spec or split, a missing WebService: written at once, the user
    may have to act."""
    if not first_progress(written, desired, {"PodsNotReady", "NoModel"}):
        return False
    accepted = condition_reason(desired, "ModelAccepted")
    return accepted == "Accepted" or (accepted == "NoModel" and not web_service_reported)


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


def pod_split(pod: dict[str, Any]) -> str | None:
    """What a pod loads, as its template's traffic annotation (a pod from before splits existed: its one
    model at 100)."""
    if pod.get("traffic"):
        return str(pod["traffic"])
    if pod.get("sha256"):
        return f"{pod.get('model') or ''}@{pod['sha256']}:100"
    return None


def served(pods: list[dict[str, Any]]) -> dict[str, tuple[Split, int]]:
    """What ready pods serve: split annotation -> (the split, ready pods serving it), from the pods'
    template annotations. A terminating pod that is still ready counts: while it drains, it still
    answers."""
    out: dict[str, tuple[Split, int]] = {}
    for pod in pods:
        key = pod_split(pod)
        split = Split.parse(key) if key and _ready(pod) else None
        if key and split is not None:
            out[key] = (split, out.get(key, (split, 0))[1] + 1)
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


def stuck_reason(pods: list[dict[str, Any]], split: str) -> str | None:
    """Why pods of `split` (its annotation) cannot become ready, if they say so (crash loop, exit 2, ...)."""
    for pod in pods:
        if pod_split(pod) != split or _ready(pod):
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
    current_key = _status_key(previous) if _status_key(previous) in now_serving else None
    if current_key is None and len(now_serving) == 1:
        current_key = next(iter(now_serving))
    current = now_serving[current_key][0] if current_key else None

    # Which models the pods should serve, and how much of the traffic each.
    wanted = wanted_traffic(spec, ws, observed.is_default)
    rolled_back = _rollback(previous, observed.rollback_request, _name_of(wanted), decision)
    if rolled_back is not None and rolled_back.active:
        wanted = parse_label(rolled_back.model)
    mirror = (spec.mirror.model, spec.mirror.percent) if spec.mirror else None
    target, accept_reason, accept_status = _accept(observed, spec, wanted, mirror, current)
    conds = set_condition(conds, "ModelAccepted", accept_status, accept_reason[0], accept_reason[1], gen)
    if target is not None and target is current:
        # Keeping what the pods serve: its URIs, which the pods' annotations do not carry.
        target = _with_uris(target, observed.models)
    if target is None:
        conds = set_condition(conds, "Ready", "False", "NoModel", accept_reason[1], gen)
        decision.status = _status(previous, gen, "Pending", conds, keep_serving=True)
        return decision

    # Children.
    ws_spec = ws.get("spec") or {}
    desired = scorer.deployment(
        observed.namespace, observed.name, spec.web_service, spec, target, ws_spec.get("output") or {}, config
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
    target_key = target.annotation()
    target_name = target.rollout_name()
    on_target = now_serving.get(target_key, (target, 0))[1]
    rollout = previous.rollout
    current_name = current.rollout_name() if current else None
    if (
        current_key
        and current_key != target_key
        and current_name != target_name
        and (rollout is None or rollout.finished_at or rollout.to_model != target_name)
    ):
        rollout = Rollout.model_validate({"from": current_name, "to": target_name, "startedAt": now})
        decision.events.append(
            Event("Normal", "RolloutStarted", f"rolling out {target_name} (was {current_name})")
        )
    history = list(previous.history)
    # Switched only when no pod of other models is left at all (a draining pod may still answer).
    others = [p for p in observed.pods if pod_split(p) != target_key]
    done = on_target >= max(spec.replicas, 1) and not others
    if spec.replicas == 0:
        done = not observed.pods
    serving = target if done else current
    if done and rollout is not None and rollout.finished_at is None and rollout.to_model == target_name:
        started = rollout.started_at or now
        rollout = rollout.model_copy(
            update={"finished_at": now, "seconds": round((now - started).total_seconds(), 3)}
        )
        history = [*history, rollout][-HISTORY:]
        decision.events.append(
            Event("Normal", "RolloutFinished", f"serving {target_name} ({rollout.seconds}s)")
        )
    stuck = None if done else stuck_reason(observed.pods, target_key)
    if done:
        phase = "Ready"
        conds = set_condition(
            conds, "Ready", "True", "Serving", f"{ready} ready pod(s) serve {target_name}", gen
        )
        conds = set_condition(conds, "Progressing", "False", "RolloutComplete", f"serving {target_name}", gen)
    elif stuck:
        phase = "Stalled"
        message = (
            f"{target_name} does not come up, the pods keep serving {current_name or 'nothing'}: {stuck}"
        )
        ready_status: ConditionStatus = "True" if ready else "False"
        conds = set_condition(conds, "Ready", ready_status, "RolloutStalled", message, gen)
        conds = set_condition(conds, "Progressing", "False", "RolloutStalled", message, gen)
        if previous.phase != "Stalled":
            decision.events.append(Event("Warning", "RolloutStalled", message))
    elif current_key:
        phase = "RollingOut"
        message = (
            f"{on_target}/{spec.replicas} pod(s) ready on {target_name}; {current_name} serves meanwhile"
        )
        conds = set_condition(conds, "Ready", "True", "RollingOut", message, gen)
        conds = set_condition(conds, "Progressing", "True", "RollingOut", message, gen)
    else:
        phase = "Pending"
        message = f"waiting for a pod serving {target_name} to be ready"
        conds = set_condition(conds, "Ready", "False", "PodsNotReady", message, gen)
        conds = set_condition(conds, "Progressing", "True", "Starting", message, gen)
    primary = serving.primary if serving else None
    decision.status = EndpointStatus(
        observed_generation=gen,
        phase=phase,
        conditions=conds,
        model=primary.name if primary else None,
        model_digest=primary.sha256 if primary else None,
        model_digest_prefix=digest_prefix(primary.sha256 if primary else None),
        traffic=[ServedWeight(model=m.name, weight=m.weight, digest=m.sha256) for m in serving.models]
        if serving
        else [],
        split=serving.label() if serving else None,
        mirror=ServedMirror(model=m.name, percent=m.weight, digest=m.sha256)
        if serving and (m := serving.mirror)
        else None,
        url=scorer.service_url(observed.namespace, observed.name),
        replicas=spec.replicas,
        ready_replicas=ready,
        rollout=rollout,
        history=history,
        rolled_back=rolled_back,
    ).to_wire()
    return decision


Wanted = list[tuple[str, int]]  # (TrainedModel, weight), in the order of the traffic list


def wanted_traffic(spec: EndpointSpec, ws: dict[str, Any], is_default: bool) -> Wanted:
    """The models the spec asks for: its traffic, its model, or (following) the service's: its
    status.traffic, else its status.model. [] when there is none yet."""
    if spec.traffic is not None and not is_default:
        return [(t.model, t.weight) for t in spec.traffic]
    if spec.model is not None and not is_default:
        return [(spec.model, 100)]
    ws_status = ws.get("status") or {}
    listed = [t for t in ws_status.get("traffic") or [] if isinstance(t, dict) and t.get("model")]
    if listed:
        return [(str(t["model"]), int(t.get("weight", 100))) for t in listed]
    model = ws_status.get("model")
    return [(str(model), 100)] if model else []


def _name_of(wanted: Wanted) -> str | None:
    """The wanted models as a rollout record names them (Split.rollout_name)."""
    if not wanted:
        return None
    if len(wanted) == 1 and wanted[0][1] == 100:
        return wanted[0][0]
    return ",".join(f"{name}:{weight}" for name, weight in wanted)


def _status_key(status: EndpointStatus) -> str | None:
    """The split annotation of what the last status said the ready pods serve."""
    if status.traffic:
        return ",".join(f"{t.model}@{t.digest}:{t.weight}" for t in status.traffic)
    if status.model_digest:
        return f"{status.model or ''}@{status.model_digest}:100"
    return None


def _rollback(
    previous: EndpointStatus, request: str | None, wanted: str | None, decision: Decision
) -> RollbackOverride | None:
    """The model (or split) a `kstudio.io/rollback: <token>` request restores (the one served before the
    last rollout), kept until the spec's models change; a new token rolls back once more. Never writes the
    spec."""
    held = previous.rolled_back
    if held is not None and held.active and held.spec_model != wanted:
        held = held.model_copy(update={"active": False})  # the spec moved on: it wins
    if request and (held is None or held.token != request):
        last = previous.history[-1] if previous.history else None
        if last is None or not last.from_model or not parse_label(last.from_model):
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
    observed: EndpointObserved,
    spec: EndpointSpec,
    wanted: Wanted,
    mirror: tuple[str, int] | None,
    current: Split | None,
) -> tuple[Split | None, tuple[str, str], ConditionStatus]:
    """(the split to put in the pod template, (reason, message), ModelAccepted status). Anything the
    wanted models (and mirror) cannot do keeps `current`, and the message names the models that wait."""
    if not wanted:
        return current, ("NoModel", "the WebService serves no model yet"), "False"
    several = len(wanted) > 1 or mirror is not None
    keeps = f"; the pods keep serving {current.rollout_name()}" if current and several else ""
    if mirror is not None and mirror[0] in {name for name, _ in wanted}:
        message = f"the mirror {mirror[0]} also answers requests (the split is {_name_of(wanted)})"
        return current, ("MirrorAnswers", message + keeps), "False"
    names = [name for name, _ in wanted] + ([mirror[0]] if mirror else [])
    missing = [name for name in names if name not in observed.models]
    if missing:
        message = "; ".join(f"TrainedModel {name} does not exist" for name in missing)
        return current, ("ModelNotFound", message + keeps), "False"
    statuses = {name: (observed.models[name].get("status") or {}) for name in names}
    waiting = [
        f"TrainedModel {name} is {st.get('phase') or 'Pending'}: {st.get('message') or 'not verified yet'}"
        for name, st in statuses.items()
        if st.get("phase") != "Ready"
    ]
    if waiting:
        return current, ("ModelNotReady", "; ".join(waiting) + keeps), "False"
    if problem := _split_problem(observed, spec, names, statuses, current, mirror is not None):
        reason, message = problem
        return current, (reason, message + keeps), "False"
    target = Split.of(
        [_served(observed.models[name], name, weight) for name, weight in wanted],
        _served(observed.models[mirror[0]], *mirror) if mirror else None,
    )
    what = f"TrainedModel {wanted[0][0]}" if len(wanted) == 1 else f"the split {target.label()}"
    also = f" with the mirror {mirror[0]} at {mirror[1]}%" if mirror else ""
    return target, ("Accepted", f"serving {what}{also} is allowed"), "True"


def _served(model: dict[str, Any], name: str, weight: int) -> ServedModel:
    artifact = (model.get("spec") or {}).get("artifact") or {}
    return ServedModel(name, str(artifact.get("uri")), str(artifact.get("sha256")), weight)


def _split_problem(
    observed: EndpointObserved,
    spec: EndpointSpec,
    names: list[str],
    statuses: dict[str, dict[str, Any]],
    current: Split | None,
    mirrored: bool,
) -> tuple[str, str] | None:
    """Why Ready models (the split's, then the mirror) cannot be served together: another input schema
    than the one served (unless allowed), another task than the others, a mirror of a task without
    predictions to compare, more than the pods' memory. None when they can."""
    reference = current.primary.name if current else names[0]
    if not spec.allow_schema_change:
        old = ((observed.models.get(reference) or {}).get("status") or {}).get("inputSchema") or []
        changed = [
            f"TrainedModel {name} has another input schema than {reference} ({diff})"
            for name in names
            if name != reference
            and old
            and (diff := schema_difference(old, statuses[name].get("inputSchema") or []))
        ]
        if changed:
            return "SchemaChanged", "; ".join(
                changed
            ) + "; set spec.allowSchemaChange: true to serve it anyway"
    tasks = {name: statuses[name].get("task") for name in names if statuses[name].get("task")}
    if len(set(tasks.values())) > 1:
        listed = ", ".join(f"{name} ({task})" for name, task in tasks.items())
        return "TaskMismatch", f"the models of a split (and its mirror) must do the same task: {listed}"
    if mirrored and set(tasks.values()) - {"classification", "regression"}:
        return (
            "MirrorCannotCompare",
            f"a mirror compares predictions: {names[-1]} is a {tasks[names[-1]]} model",
        )
    sizes = {name: int(statuses[name].get("sizeBytes") or 0) for name in names}
    budget = scorer.quantity_bytes(spec.resources.memory) // 2
    if sum(sizes.values()) > budget:
        listed = " + ".join(f"{name} {_mib(size)}" for name, size in sizes.items())
        return (
            "ModelsTooLarge",
            f"{listed} as stored (more once loaded) do not fit in half of the pods' memory "
            f"{spec.resources.memory} ({_mib(budget)}): raise spec.resources.memory",
        )
    return None


def _with_uris(split: Split | None, models: Mapping[str, dict[str, Any]]) -> Split | None:
    """`split` (as read from pods) with each model's artifact URI from its TrainedModel; None when one is
    gone or no longer has that sha256."""
    if split is None:
        return None
    found = [_with_uri(m, models) for m in split.models]
    mirror = _with_uri(split.mirror, models) if split.mirror else None
    if None in found or (split.mirror and mirror is None):
        return None
    return Split.of([m for m in found if m is not None], mirror)


def _with_uri(m: ServedModel, models: Mapping[str, dict[str, Any]]) -> ServedModel | None:
    artifact = ((models.get(m.name) or {}).get("spec") or {}).get("artifact") or {}
    if artifact.get("sha256") != m.sha256 or not artifact.get("uri"):
        return None
    return ServedModel(m.name, str(artifact["uri"]), m.sha256, m.weight)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _status(
    previous: EndpointStatus, gen: int, phase: str, conds: list[Condition], keep_serving: bool = False
) -> dict[str, Any]:
    update: dict[str, Any] = {"observed_generation": gen, "conditions": conds}
    if not keep_serving or previous.phase is None:
        update["phase"] = phase
    return previous.model_copy(update=update).to_wire()
