"""Experiment: its reconcile, woken by changes of the Experiment and of its Jobs and pods.

observe (indexes: Jobs, pods, TrainedModels, model users; storage: results of succeeded runs; pod logs
of failed runs that left no message) → decide_experiment (pure) → apply (create Job + snapshot, create
TrainedModel, delete pruned runs) → Events → status. Schedules ask for the next reconcile at their next tick.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kstudio_core.runresult import RunResult
from kstudio_core.storage import ObjectNotFoundError, StorageError
from kstudio_operator import constants as c
from kstudio_operator.decisions.experiment import (
    CreateModel,
    DeleteRun,
    ExperimentObserved,
    ResultFailure,
    StartRun,
    decide_experiment,
    parse_spec,
    runs_awaiting_results,
)
from kstudio_operator.decisions.run_history import ObservedJob, observe_job, parse_time
from kstudio_operator.handlers.common import post_events
from kstudio_operator.indexes import values
from kstudio_operator.runtime import Body, Key, Runtime

# Failure reasons for which the trainer's log tail is worth reading when it left no termination message.
_LOG_REASONS = ("InvalidSpecOrData", "TrainerFailed", "JobFailed")
MAX_RESULT_BYTES = 4 * 1024 * 1024


async def observe_jobs(
    rt: Runtime, namespace: str, jobs: list[dict[str, Any]], pods: list[dict[str, Any]], memory: str | None
) -> list[ObservedJob]:
    by_run: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        by_run.setdefault(str(pod["metadata"].get("labels", {}).get(c.LABEL_RUN)), []).append(pod)
    observed = []
    for job in jobs:
        run = str(job["metadata"]["labels"][c.LABEL_RUN])
        job_pods = by_run.get(run, [])
        result = observe_job(job, job_pods, memory)
        if result.phase == "Failed" and result.reason in _LOG_REASONS:
            # As kubelet's FallbackToLogsOnError would: the tail of the log when there is no message.
            job_pods = [await _with_log_messages(rt, namespace, pod) for pod in job_pods]
            result = observe_job(job, job_pods, memory)
        observed.append(result)
    return observed


async def _with_log_messages(rt: Runtime, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
    statuses = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (status.get("state") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0 and not term.get("message"):
            tail = await rt.kube.pod_log_tail(namespace, pod["metadata"]["name"], c.TRAINER_CONTAINER)
            status = {**status, "state": {"terminated": {**term, "message": tail}}}
        statuses.append(status)
    return {**pod, "status": {**(pod.get("status") or {}), "containerStatuses": statuses}}


def read_result(store: Any, uri: str) -> RunResult | ResultFailure:
    """The run result at `uri` (blocking; StorageError propagates: infrastructure, retry later)."""
    try:
        raw = store.get_bytes(uri, max_bytes=MAX_RESULT_BYTES)
    except ObjectNotFoundError:
        return ResultFailure("ResultMissing", f"the trainer succeeded but wrote no {uri}")
    try:
        return RunResult.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        return ResultFailure("ResultUnreadable", f"{uri} is not a trainer result: {exc}")


async def reconcile_experiment(rt: Runtime, key: Key, body: Body) -> float | None:
    indexes = rt.indexes
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    spec_raw = dict(body.get("spec") or {})
    status = rt.current_status(key, body)
    parsed, _ = parse_spec(spec_raw)
    jobs = values(indexes["experiment_jobs"], (namespace, name))
    pods = values(indexes["experiment_pods"], (namespace, name))
    observed_jobs = await observe_jobs(rt, namespace, jobs, pods, parsed.resources.memory if parsed else None)
    observed = ExperimentObserved(
        name=name,
        namespace=namespace,
        generation=int(meta.get("generation") or 1),
        created_at=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
        token=(meta.get("annotations") or {}).get(c.ANNOTATION_RUN) or None,
        jobs=observed_jobs,
    )
    if parsed is not None:
        for run, uri in runs_awaiting_results(status, observed_jobs):
            if rt.store is None:
                observed.storage_error = f"object storage is not configured: {rt.store_error}"
                break
            try:
                observed.results[run] = await asyncio.to_thread(read_result, rt.store, uri)
            except StorageError as exc:
                observed.storage_error = f"cannot read the result of run {run}: {exc}"
        for (ns, model), entries in indexes["trained_models"].items():
            if ns == namespace and entries:
                observed.models[model] = next(iter(entries))["spec"]
        users = indexes["model_users"]
        observed.models_in_use = {m for (ns, m) in users if ns == namespace and users[(ns, m)]}
    decision = decide_experiment(spec_raw, status, observed, datetime.now(UTC), rt.config, dict(body))
    await apply(rt, namespace, name, decision.actions)
    await post_events(rt.kube, body, decision.events)
    await rt.write_status(key, body, c.EXPERIMENTS, decision.status)
    if observed.storage_error:
        return rt.backoff(key, base=5.0, cap=300.0)
    rt.succeeded(key)
    return decision.requeue


async def apply(rt: Runtime, namespace: str, name: str, actions: list[Any]) -> None:
    for action in actions:
        if isinstance(action, StartRun):
            await rt.kube.create(action.configmap)
            job, created = await rt.kube.create(action.job)
            labels = (job.get("metadata") or {}).get("labels") or {}
            if not created and labels.get(c.LABEL_EXPERIMENT) != name:
                what = f"a Job named {job['metadata'].get('name')} that is not this experiment's"
                raise kopf.TemporaryError(f"{what} exists; delete it", delay=30)
        elif isinstance(action, CreateModel):
            await rt.kube.create(action.manifest)
        elif isinstance(action, DeleteRun):
            await rt.kube.delete("batch/v1", "jobs", namespace, action.job)
            await rt.kube.delete("v1", "configmaps", namespace, action.configmap)
            if action.model:
                await rt.kube.delete(c.GROUP_VERSION, c.TRAINED_MODELS, namespace, action.model)


async def cleanup_experiment(rt: Runtime, key: Key, body: Body) -> float | None:
    """Jobs and snapshots go with the Experiment (owner references). Its TrainedModels are deleted too,
    except those a WebService or Endpoint uses: they stay, and say where they came from. Done at once
    (None): the finalizer goes (finalizer.py)."""
    trained_models, model_users = rt.indexes["trained_models"], rt.indexes["model_users"]
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    for (ns, model), entries in list(trained_models.items()):
        entry = next(iter(entries), None)
        if ns != namespace or entry is None or entry["labels"].get(c.LABEL_EXPERIMENT) != name:
            continue
        if values(model_users, (ns, model)):
            await rt.kube.event(body, "Normal", "ModelKept", f"TrainedModel {model} is in use and is kept")
        else:
            await rt.kube.delete(c.GROUP_VERSION, c.TRAINED_MODELS, namespace, model)
    return None
