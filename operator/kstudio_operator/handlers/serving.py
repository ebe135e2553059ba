"""WebService and Endpoint: their reconciles over the serving decisions (decisions/webservice.py,
decisions/endpoint.py), reading the indexes and writing children, keys, Events and status. During a
canary, the WebService reads its candidate's counts from the default Endpoint's ready pods (canary_reading).

Keys: the Secret `<endpoint>-keys` holds primaryKey and secondaryKey, generated here and never written
anywhere else (not in spec, status, Events, annotations or logs). Annotating the Endpoint with
`kstudio.io/rotate-key: primaryKey/<token>` (or secondaryKey/...) regenerates that one key once per
token; the other keeps working, and the scorer re-reads the mounted files within seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import kopf

from kstudio_core.serving import OUTCOME_ERROR, OUTCOME_OK, model_request_counts
from kstudio_operator import constants as c
from kstudio_operator import indexes
from kstudio_operator.builders import scorer
from kstudio_operator.builders.endpoint import default_endpoint_name
from kstudio_operator.builders.ownership import own
from kstudio_operator.decisions import endpoint as endpoint_decisions
from kstudio_operator.decisions import webservice as web_service_decisions
from kstudio_operator.decisions.canary import CanaryReading
from kstudio_operator.decisions.endpoint import (
    CreateChild,
    EndpointObserved,
    ReplaceDeployment,
    decide_endpoint,
)
from kstudio_operator.decisions.webservice import PatchEndpointSpec, WebServiceObserved, decide_web_service
from kstudio_operator.handlers.common import post_events
from kstudio_operator.indexes import NamespaceEntries, values, web_service_view
from kstudio_operator.kube import ApiError
from kstudio_operator.runtime import Body, Key, Runtime


def _first(index: Any, key: Any) -> Any:
    found = values(index, key)
    return found[0] if found else None


async def ensure_keys(rt: Runtime, body: Body, web_service: str, status: dict[str, Any]) -> dict[str, Any]:
    """The keys Secret exists and a requested rotation of one key is done (once per request). Never reads
    the Secret: what was done is remembered in the status (names and request tokens, never key values).
    Returns the status fields to write."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    secret_name = scorer.keys_secret_name(name)
    request = str((meta.get("annotations") or {}).get(c.ANNOTATION_ROTATE_KEY) or "")
    done = {"keysSecret": status.get("keysSecret"), "keysRotation": status.get("keysRotation")}
    if done["keysSecret"] != secret_name:
        keys = {k: scorer.new_key() for k in scorer.KEY_NAMES}
        # Already there (made by an operator that died before its status said so): kept as it is, unread.
        secret = own(scorer.keys_secret(namespace, name, web_service, keys), body)
        await rt.kube.create(secret, read_existing=False)
        done = {"keysSecret": secret_name, "keysRotation": request or None}
    if request and request != done["keysRotation"]:
        which = request.split("/", 1)[0]
        if which not in scorer.KEY_NAMES:
            message = (
                f"{c.ANNOTATION_ROTATE_KEY} must be primaryKey/<token> or secondaryKey/<token>, "
                f"got {request!r}"
            )
            await rt.kube.event(body, "Warning", "InvalidRotation", message)
        else:
            patch = {"stringData": {which: scorer.new_key()}}
            await rt.kube.patch("v1", "secrets", namespace, secret_name, patch, status=False)
            said = f"{which} of {secret_name} was regenerated; the other key is unchanged"
            await rt.kube.event(body, "Normal", "KeyRotated", said)
        done["keysRotation"] = request
    return done


def _deployment(rt: Runtime, key: Key, indexed: dict[str, Any] | None) -> dict[str, Any] | None:
    """The scorer Deployment's index entry, or the one this process just created (not indexed yet)."""
    made = rt.created_child(key, "Deployment", indexed)
    if made is None:
        return indexed
    body = kopf.Body(cast(kopf.RawBody, dict(made)))
    entries = indexes.endpoint_deployments(namespace=key[1], labels=body.metadata.labels, body=body)
    return next(iter(entries.values()), None)


def _has_service(rt: Runtime, key: Key, indexed: list[Any]) -> bool:
    return bool(indexed) or rt.created_child(key, "Service", indexed or None) is not None


async def reconcile_endpoint(rt: Runtime, key: Key, body: Body) -> float | None:
    idx = rt.indexes
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec_raw = dict(body.get("spec") or {})
    ws_name = str(spec_raw.get("webService") or "")
    web_service = _first(idx["web_services"], (namespace, ws_name))
    ws_key: Key = ("WebService", namespace, ws_name)
    ws_body = rt.objects.get(ws_key)
    if web_service is not None and ws_body is not None and (ws_key in rt.held or ws_key in rt.written):
        # The service's status as it decided it: held back (Runtime.write_status), or written and not in
        # the index yet. Its model is what a following Endpoint serves.
        web_service = {**web_service, "status": rt.current_status(ws_key, ws_body)}
    observed = EndpointObserved(
        namespace=namespace,
        name=name,
        generation=int(meta.get("generation") or 1),
        web_service=web_service,
        models=NamespaceEntries(idx["trained_models"], namespace),
        deployment=_deployment(rt, key, _first(idx["endpoint_deployments"], (namespace, name))),
        pods=values(idx["endpoint_pods"], (namespace, name)),
        has_service=_has_service(rt, key, values(idx["endpoint_services"], (namespace, name))),
        rollback_request=(meta.get("annotations") or {}).get(c.ANNOTATION_ROLLBACK),
        is_default=name == default_endpoint_name(ws_name)
        and any(ref.get("kind") == "WebService" for ref in meta.get("ownerReferences") or []),
    )
    status = rt.current_status(key, body)
    keys = await ensure_keys(rt, body, ws_name, status) if observed.web_service is not None else {}
    decision = decide_endpoint(spec_raw, status, observed, datetime.now(UTC), rt.config, dict(body))
    for action in decision.actions:
        if isinstance(action, CreateChild):
            child, _ = await rt.kube.create(action.manifest)
            rt.remember_created(key, str(action.manifest["kind"]), child)
        elif isinstance(action, ReplaceDeployment):
            await rt.kube.patch("apps/v1", "deployments", namespace, name, action.patch, status=False)
    await post_events(rt.kube, body, decision.events)
    reported = bool(((observed.web_service or {}).get("status") or {}).get("phase"))

    def settles(written: dict[str, Any], desired: dict[str, Any]) -> bool:
        return endpoint_decisions.settles(written, desired, reported)

    await rt.write_status(key, body, c.ENDPOINTS, {**decision.status, **keys}, settles)
    rt.endpoint_phases[key] = decision.status.get("phase")
    return rt.settling(key)  # a held status is written when it is due


async def reconcile_web_service(rt: Runtime, key: Key, body: Body) -> float | None:
    idx = rt.indexes
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec_raw = dict(body.get("spec") or {})
    experiment = (spec_raw.get("modelFrom") or {}).get("experiment")
    status = rt.current_status(key, body)
    canary = status.get("canary") or {}
    reading = None
    if canary.get("servingSince"):
        reading = await canary_reading(rt, namespace, default_endpoint_name(name), str(canary.get("model")))
    observed = WebServiceObserved(
        namespace=namespace,
        name=name,
        generation=int(meta.get("generation") or 1),
        models=NamespaceEntries(idx["trained_models"], namespace),
        experiment_latest=_first(idx["experiments_latest"], (namespace, experiment)) if experiment else None,
        endpoints={e["name"]: e for e in values(idx["endpoints_by_service"], (namespace, name))},
        canary_reading=reading,
    )
    decision = decide_web_service(spec_raw, status, observed, datetime.now(UTC), dict(body))
    for action in decision.actions:
        if isinstance(action, CreateChild):
            await rt.kube.create(action.manifest)
        elif isinstance(action, PatchEndpointSpec):
            try:
                await rt.kube.patch(
                    c.GROUP_VERSION, c.ENDPOINTS, namespace, action.name, {"spec": action.patch}, status=False
                )
            except ApiError as exc:
                if exc.status != 404:
                    raise
    await post_events(rt.kube, body, decision.events)

    def settles(written: dict[str, Any], desired: dict[str, Any]) -> bool:
        return web_service_decisions.settles(written, desired, spec_raw)

    await rt.write_status(key, body, c.WEB_SERVICES, decision.status, settles)
    held = rt.held_status(key)
    if held is not None and rt.view_changed(key, web_service_view(spec_raw, held)):
        # No watch event brings a held status to the Endpoints that follow the service's model: wake them
        # (its default one may not be in the index yet; wake does nothing until its watch event came).
        for endpoint in {*observed.endpoints, default_endpoint_name(name)}:
            rt.wake(("Endpoint", namespace, endpoint))
    due = [delay for delay in (decision.requeue, rt.settling(key)) if delay is not None]
    return min(due) if due else None


async def canary_reading(rt: Runtime, namespace: str, endpoint: str, model: str) -> CanaryReading | None:
    """The canary candidate's answers and errors, summed over the ready scorer pods of `endpoint` (from
    the pods index, so no LIST): each pod's /metrics through the API server's pods/proxy, which reaches the
    pod wherever the operator runs. None when a ready pod cannot be read (the decision waits, or refuses
    at the deadline: an unread error rate is not a good one). `refused` answers (input refused before the
    model saw it) are not the candidate's doing and are not counted."""
    requests = errors = 0.0
    for pod in values(rt.indexes["endpoint_pods"], (namespace, endpoint)):
        if not pod.get("ready") or not pod.get("name"):
            continue
        try:
            text = await rt.kube.pod_get(namespace, pod["name"], scorer.SCORER_PORT, "/metrics")
        except ApiError:
            return None
        counts = model_request_counts(text).get(model, {})
        requests += counts.get(OUTCOME_OK, 0.0) + counts.get(OUTCOME_ERROR, 0.0)
        errors += counts.get(OUTCOME_ERROR, 0.0)
    return CanaryReading(int(requests), int(errors))
