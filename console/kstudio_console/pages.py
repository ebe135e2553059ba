"""What each page shows, as plain dicts for the templates: pure functions of the cached objects.

No I/O here (the cache is read by the caller and passed in, storage is read by reports.py), so every page's
content is unit-tested without a server. Times are RFC 3339 strings from the API; `now` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from kstudio_console.cache import event_time
from kstudio_core.labels import ANNOTATION_MODEL, LABEL_ENDPOINT

Obj = Mapping[str, Any]
# The kstudio kinds a page exists for, by kind: the path segment of its page.
PAGE_OF_KIND = {
    "Experiment": "experiments",
    "TrainedModel": "models",
    "WebService": "webservices",
    "Endpoint": "endpoints",
    "BatchJob": "batchjobs",
}


# --- small helpers -----------------------------------------------------------------------------------


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def spec_of(obj: Obj | None) -> dict[str, Any]:
    return dict((obj or {}).get("spec") or {})


def status_of(obj: Obj | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})


def url(namespace: str, kind: str, name: str) -> str:
    """The console page of a kstudio object (kind as in PAGE_OF_KIND)."""
    return f"/ns/{quote(namespace)}/{PAGE_OF_KIND[kind]}/{quote(name)}"


def compare_url(namespace: str, a: str, b: str) -> str:
    return f"/ns/{quote(namespace)}/compare?{urlencode({'a': a, 'b': b})}"


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_text(seconds: float | None) -> str:
    """12 s, 3 min 04 s, 2 h 05 min: a duration as people read it."""
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def duration(start: Any, end: Any) -> str:
    began, ended = parse_time(start), parse_time(end)
    return seconds_text((ended - began).total_seconds()) if began and ended else ""


def age(value: Any, now: datetime) -> str:
    """How long ago: '5 s ago'; '' for no time."""
    when = parse_time(value)
    return f"{seconds_text((now - when).total_seconds())} ago" if when else ""


def short_time(value: Any) -> str:
    when = parse_time(value)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else ""


def headline(metrics: Mapping[str, float], preferred: Iterable[str]) -> tuple[str, float] | None:
    """(name, value) of the first preferred metric present, else the first by name (as the operator's
    headlineMetric)."""
    for name in [*preferred, *sorted(metrics)]:
        if name in metrics:
            return name, float(metrics[name])
    return None


def condition(obj: Obj, type_: str = "Ready") -> dict[str, Any]:
    return next((c for c in status_of(obj).get("conditions") or [] if c.get("type") == type_), {})


def digest_prefix(sha256: Any) -> str:
    return str(sha256)[:12] if sha256 else ""


# --- who uses a model ----------------------------------------------------------------------------------


def model_users(
    web_services: Iterable[Obj], endpoints: Iterable[Obj]
) -> dict[str, list[tuple[str, str, str]]]:
    """model name -> [(kind, name, how)] of the WebServices and Endpoints serving or pinning it; `how` is
    "serves", "pinned in spec" or both."""
    found: dict[str, dict[tuple[str, str], list[str]]] = {}

    def add(model: Any, kind: str, name: str, how: str) -> None:
        if model:
            hows = found.setdefault(str(model), {}).setdefault((kind, name), [])
            if how not in hows:
                hows.append(how)

    for ws in web_services:
        add(status_of(ws).get("model"), "WebService", name_of(ws), "serves")
        add(spec_of(ws).get("model"), "WebService", name_of(ws), "pinned in spec")
    for ep in endpoints:
        add(status_of(ep).get("model"), "Endpoint", name_of(ep), "serves")
        add(spec_of(ep).get("model"), "Endpoint", name_of(ep), "pinned in spec")
    return {
        model: [(kind, name, ", ".join(hows)) for (kind, name), hows in users.items()]
        for model, users in found.items()
    }


# --- experiments ---------------------------------------------------------------------------------------


def preferred_metrics(experiment: Obj) -> list[str]:
    return [str(m) for m in (spec_of(experiment).get("evaluation") or {}).get("metrics") or []]


def run_rows(experiment: Obj, models: Mapping[str, Obj]) -> list[dict[str, Any]]:
    """The run history, newest first: phase, triggers, times, duration, headline metric, why it failed."""
    namespace = str(experiment["metadata"].get("namespace") or "")
    preferred = preferred_metrics(experiment)
    rows = []
    for record in sorted(status_of(experiment).get("runs") or [], key=lambda r: -int(r.get("run") or 0)):
        model = record.get("trainedModel")
        best = headline(record.get("metrics") or {}, preferred)
        rows.append(
            {
                "run": record.get("run"),
                "phase": record.get("phase") or "",
                "triggers": ", ".join(record.get("triggers") or []),
                "generation": record.get("generation"),
                "started": short_time(record.get("startedAt")),
                "duration": duration(record.get("startedAt"), record.get("finishedAt")),
                "metric": f"{best[0]} {best[1]:.4f}" if best else "",
                "value": best[1] if best else None,
                "model": model or "",
                "model_url": url(namespace, "TrainedModel", model) if model and model in models else "",
                "failure": ": ".join(str(x) for x in (record.get("reason"), record.get("message")) if x)
                if record.get("phase") == "Failed"
                else "",
            }
        )
    return rows


def chart_metric(experiment: Obj) -> str | None:
    """The metric the run-history chart plots: the experiment's headline, else the first any run has."""
    preferred = preferred_metrics(experiment)
    for record in status_of(experiment).get("runs") or []:
        best = headline(record.get("metrics") or {}, preferred)
        if best:
            return best[0]
    return None


def chart_points(experiment: Obj, metric: str) -> list[tuple[int, float | None, str]]:
    """(run, value of `metric` or None, phase) per run, oldest first."""
    points = []
    for record in sorted(status_of(experiment).get("runs") or [], key=lambda r: int(r.get("run") or 0)):
        value = (record.get("metrics") or {}).get(metric)
        points.append((int(record["run"]), None if value is None else float(value), str(record.get("phase"))))
    return points


def experiment_rows(experiments: Iterable[Obj]) -> list[dict[str, Any]]:
    rows = []
    for exp in experiments:
        st, spec = status_of(exp), spec_of(exp)
        runs = st.get("runs") or []
        latest = max(runs, key=lambda r: int(r.get("run") or 0)) if runs else {}
        rows.append(
            {
                "name": name_of(exp),
                "url": url(exp["metadata"]["namespace"], "Experiment", name_of(exp)),
                "phase": st.get("phase") or "",
                "runs": len(runs),
                "latest_run": latest.get("run") or "",
                "latest_phase": latest.get("phase") or "",
                "metric": st.get("latestMetric") or "",
                "algorithm": (spec.get("algorithm") or {}).get("name") or "",
                "schedule": spec.get("schedule") or "",
            }
        )
    return rows


# --- models --------------------------------------------------------------------------------------------


def model_rows(
    models: Iterable[Obj], users: Mapping[str, list[tuple[str, str, str]]]
) -> list[dict[str, Any]]:
    rows = []
    for model in models:
        st, spec = status_of(model), spec_of(model)
        source = spec.get("source") or {}
        name = name_of(model)
        rows.append(
            {
                "name": name,
                "url": url(model["metadata"]["namespace"], "TrainedModel", name),
                "phase": st.get("phase") or "",
                "source": f"{source['experiment']} run {source.get('run')}" if source else "imported",
                "metric": st.get("headlineMetric") or "",
                "digest": digest_prefix((spec.get("artifact") or {}).get("sha256")),
                "used_by": len(users.get(name, [])),
                "created": short_time(model["metadata"].get("creationTimestamp")),
            }
        )
    return rows


def user_links(namespace: str, users: Iterable[tuple[str, str, str]]) -> list[dict[str, str]]:
    return [{"kind": k, "name": n, "how": how, "url": url(namespace, k, n)} for k, n, how in users]


# --- serving -------------------------------------------------------------------------------------------


def rollout_timeline(endpoint: Obj) -> list[dict[str, Any]]:
    """The endpoint's rollouts, newest first (the current one first when it is still going)."""
    st = status_of(endpoint)
    entries = list(st.get("history") or [])
    current = st.get("rollout")
    if current and current not in entries:
        entries.append(current)
    entries.sort(key=lambda r: str(r.get("startedAt") or ""), reverse=True)
    return [
        {
            "from": r.get("from") or "",
            "to": r.get("to") or "",
            "started": short_time(r.get("startedAt")),
            "finished": short_time(r.get("finishedAt")),
            "seconds": seconds_text(r.get("seconds")) if r.get("seconds") is not None else "",
            "done": bool(r.get("finishedAt")),
        }
        for r in entries
    ]


def promotion_rows(web_service: Obj) -> list[dict[str, Any]]:
    rows = []
    for p in sorted(
        status_of(web_service).get("promotions") or [], key=lambda p: str(p.get("at")), reverse=True
    ):
        rows.append(
            {
                "at": short_time(p.get("at")),
                "from": p.get("from") or "",
                "to": p.get("to") or "",
                "metric": p.get("metric") or "",
                "delta": f"{p['delta']:+.4f}" if p.get("delta") is not None else "",
                "promoted": bool(p.get("promoted", True)),
                "reason": p.get("reason") or "",
            }
        )
    return rows


def endpoint_rows(namespace: str, endpoints: Iterable[Obj]) -> list[dict[str, Any]]:
    rows = []
    for ep in endpoints:
        st, spec = status_of(ep), spec_of(ep)
        model = st.get("model") or ""
        rows.append(
            {
                "name": name_of(ep),
                "url": url(namespace, "Endpoint", name_of(ep)),
                "web_service": spec.get("webService") or "",
                "web_service_url": url(namespace, "WebService", spec["webService"])
                if spec.get("webService")
                else "",
                "model": model,
                "model_url": url(namespace, "TrainedModel", model) if model else "",
                "digest": st.get("modelDigestPrefix") or digest_prefix(st.get("modelDigest")),
                "ready": f"{st.get('readyReplicas', 0)}/{st.get('replicas', spec.get('replicas', 1))}",
                "phase": st.get("phase") or "",
                "pinned": bool(spec.get("model")),
            }
        )
    return rows


def web_service_rows(namespace: str, web_services: Iterable[Obj]) -> list[dict[str, Any]]:
    rows = []
    for ws in web_services:
        st, spec = status_of(ws), spec_of(ws)
        follows = (spec.get("modelFrom") or {}).get("experiment")
        model = st.get("model") or ""
        rows.append(
            {
                "name": name_of(ws),
                "url": url(namespace, "WebService", name_of(ws)),
                "model": model,
                "model_url": url(namespace, "TrainedModel", model) if model else "",
                "digest": st.get("modelDigestPrefix") or digest_prefix(st.get("modelDigest")),
                "mode": f"follows {follows}" if follows else f"pinned to {spec.get('model') or '?'}",
                "phase": st.get("phase") or "",
                "endpoints": st.get("endpointCount", len(st.get("endpoints") or [])),
            }
        )
    return rows


def scorer_pods(pods: Iterable[Obj], endpoint: str) -> list[dict[str, Any]]:
    """The endpoint's scorer pods: ready or not, restarts, the model each one was told to serve."""
    rows = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(LABEL_ENDPOINT) != endpoint:
            continue
        st = status_of(pod)
        statuses = st.get("containerStatuses") or []
        ready: dict[str, Any] = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
        rows.append(
            {
                "name": meta.get("name"),
                "phase": st.get("phase") or "",
                "ready": ready.get("status") == "True",
                "restarts": sum(int(c.get("restartCount") or 0) for c in statuses),
                "model": (meta.get("annotations") or {}).get(ANNOTATION_MODEL, ""),
                "deleting": bool(meta.get("deletionTimestamp")),
            }
        )
    return sorted(rows, key=lambda r: str(r["name"]))


# --- batch jobs ----------------------------------------------------------------------------------------


def batch_model(job: Obj) -> str:
    """What a BatchJob scores with: the TrainedModel it recorded, else what its spec names."""
    st, spec = status_of(job), spec_of(job)
    if st.get("model"):
        return str(st["model"])
    return str(
        spec.get("model") or (f"the model Endpoint {spec['endpoint']} serves" if spec.get("endpoint") else "")
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _rate(value: Any) -> str:
    return f"{float(value):,.0f}" if value is not None else ""


def batch_job_rows(namespace: str, jobs: Iterable[Obj]) -> list[dict[str, Any]]:
    """The list page: newest first, with the shards done, the rows and, for a failed job, why."""
    rows = []
    ordered = sorted(jobs, key=lambda j: str((j.get("metadata") or {}).get("creationTimestamp") or ""))
    for job in reversed(ordered):
        st = status_of(job)
        shards, counted = st.get("shards") or {}, st.get("rows") or {}
        model = str(st.get("model") or "")
        rows.append(
            {
                "name": name_of(job),
                "url": url(namespace, "BatchJob", name_of(job)),
                "phase": st.get("phase") or "",
                "model": batch_model(job),
                "model_url": url(namespace, "TrainedModel", model) if model else "",
                "digest": st.get("modelDigestPrefix") or digest_prefix(st.get("modelDigest")),
                "shards": f"{shards.get('succeeded', 0)}/{shards.get('total', 0)}",
                "active": shards.get("active", 0),
                "failed": shards.get("failed", 0),
                "scored": counted.get("scored", 0),
                "rejected": counted.get("rejected", 0),
                "rate": _rate(st.get("rowsPerSecond")),
                "started": short_time(st.get("startedAt")),
                "duration": duration(st.get("startedAt"), st.get("finishedAt")),
                "failure": ": ".join(str(x) for x in (st.get("reason"), st.get("message")) if x)
                if st.get("phase") == "Failed"
                else "",
            }
        )
    return rows


def batch_job_facts(job: Obj) -> dict[str, Any]:
    """The detail page's facts: the spec's input, output and sharding beside what the status says."""
    st, spec = status_of(job), spec_of(job)
    source, output = spec.get("input") or {}, spec.get("output") or {}
    found = st.get("inputs") or {}
    threshold = spec.get("errorThreshold") or {}
    if threshold.get("rows") is not None:
        allowed = f"{threshold['rows']} rows"
    elif threshold.get("percent") is not None:
        allowed = f"{threshold['percent']} % of the rows read"
    else:
        allowed = "none (the first bad row fails the job)"
    return {
        "model": batch_model(job),
        "model_source": st.get("modelSource") or "",
        "model_digest": st.get("modelDigest") or "",
        "input": source.get("uri") or ", ".join(source.get("uris") or []),
        "input_found": f"{_count(found.get('objects', 0), 'object')}, {found.get('sizeBytes', 0):,} bytes"
        + (f", {found['format']}" if found.get("format") else "")
        if found
        else "",
        "output": output.get("uri") or "",
        "output_format": (output.get("format") or "csv") + (", one file" if output.get("oneFile") else ""),
        "sharding": f"{spec['shards']} shards"
        if spec.get("shards")
        else f"about {spec['rowsPerShard']:,} rows per shard"
        if spec.get("rowsPerShard")
        else "1 shard",
        "parallelism": spec.get("parallelism") or "every shard at once",
        "error_threshold": allowed,
        "shards": {"total": 0, "active": 0, "succeeded": 0, "failed": 0, **(st.get("shards") or {})},
        "rows": {"scored": 0, "rejected": 0, **(st.get("rows") or {})},
        "rate": _rate(st.get("rowsPerSecond")),
        "started": short_time(st.get("startedAt")),
        "finished": short_time(st.get("finishedAt")),
        "duration": duration(st.get("startedAt"), st.get("finishedAt")),
        "job": st.get("job") or "",
        "outputs": list(st.get("outputs") or []),
        "failed_shards": [
            {
                "index": f.get("index"),
                "exit_code": "" if f.get("exitCode") is None else f.get("exitCode"),
                "reason": f.get("reason") or "",
                "message": f.get("message") or "",
            }
            for f in st.get("failedShards") or []
        ],
    }


# --- events --------------------------------------------------------------------------------------------


def event_rows(
    events: Iterable[Obj], now: datetime, limit: int, about: str | None = None
) -> list[dict[str, Any]]:
    """The newest `limit` Events (of the object named `about`, when given)."""
    chosen = [e for e in events if about is None or (e.get("involvedObject") or {}).get("name") == about]
    chosen.sort(key=event_time, reverse=True)
    rows = []
    for e in chosen[:limit]:
        involved = e.get("involvedObject") or {}
        kind, name = str(involved.get("kind") or ""), str(involved.get("name") or "")
        namespace = str(involved.get("namespace") or "")
        rows.append(
            {
                "age": age(event_time(e), now),
                "type": e.get("type") or "",
                "reason": e.get("reason") or "",
                "object": f"{kind}/{name}",
                "object_url": url(namespace, kind, name) if kind in PAGE_OF_KIND and namespace else "",
                "message": e.get("message") or "",
                "count": e.get("count") or 1,
            }
        )
    return rows
