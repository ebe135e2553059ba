"""BatchJob: a reconcile per object, woken by changes of the BatchJob, of its Job and pods, and of the
TrainedModel or Endpoint it waits for.

observe (indexes: models, the Endpoint, the Job, its pods; storage: the input listing before the Job
exists, the shards' results once it completed) → decide_batch_job (pure) → apply (write the plan, create
the Job, publish the output) → Events → status. Storage calls block, so they run in a thread.

Publishing reads no part: errors.csv is written from the shards' (small) errors files, renumbering their
rows within each input; the one file is composed by the object store from the parts (ObjectStore.concatenate:
S3 multipart copy, only pieces under S3's 5 MiB part minimum are gathered here); manifest.json goes last,
so it marks a complete output, and a publication interrupted by a restart is simply done again.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kstudio_core.batch import (
    ERRORS_HEADER,
    BatchManifest,
    BatchPlan,
    InputObject,
    OutputLayout,
    ShardResult,
    format_from_name,
)
from kstudio_core.parquet_footer import TAIL_BYTES, FooterError, footer_length, summarize_footer
from kstudio_core.storage import (
    AccessDeniedError,
    BucketNotFoundError,
    ChunkStream,
    ObjectNotFoundError,
    Piece,
    S3Uri,
    StorageError,
)
from kstudio_operator import constants as c
from kstudio_operator.builders.batchjob import output_prefix
from kstudio_operator.decisions.batchjob import (
    BatchObserved,
    CreateJob,
    Listing,
    ModelChoice,
    Publish,
    Results,
    WritePlan,
    decide_batch_job,
    needs_listing,
    needs_results,
    parse_spec,
    resolve_model,
)
from kstudio_operator.handlers.common import post_events
from kstudio_operator.indexes import NamespaceEntries, values
from kstudio_operator.resources.batchjob import BatchInput, BatchJobSpec, BatchJobStatus
from kstudio_operator.runtime import Body, Key, Runtime

CSV_SAMPLE_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 4 * 1024 * 1024
MAX_PLAN_BYTES = 64 * 1024 * 1024
SHOWN_MISSING = 5


# --- the input, before any pod starts ---------------------------------------------------------------------
def list_inputs(store: Any, store_error: str | None, spec: BatchJobSpec, uid: str) -> Listing:
    """Find the input objects and their sizes, check the output prefix is free, count or estimate the rows
    when spec.rowsPerShard needs them. Blocking: run it in a thread."""
    if store is None:
        return Listing(
            problem="StorageNotConfigured", message=f"object storage: {store_error}", retryable=True
        )
    try:
        found = _find_inputs(store, spec.input, output_prefix(spec))
        if isinstance(found, Listing):
            return found
        inputs, fmt = found
        bucket = output_prefix(spec).removeprefix("s3://").split("/", 1)[0]
        if not store.bucket_exists(bucket):
            return Listing(problem="OutputNotFound", message=f"bucket {bucket} of output.uri does not exist")
        busy = _output_in_use(store, OutputLayout(output_prefix(spec)), uid)
        if busy is not None:
            return busy
        rows = _count_rows(store, inputs, fmt) if spec.rows_per_shard is not None else None
    except (AccessDeniedError, StorageError) as exc:
        return Listing(problem="StorageUnavailable", message=str(exc), retryable=True)
    except FooterError as exc:
        return Listing(problem="UnreadableInput", message=str(exc))
    return Listing(inputs=inputs, format=fmt, rows=rows)


def _find_inputs(store: Any, spec: BatchInput, output: str) -> tuple[list[InputObject], str] | Listing:
    if spec.uri is not None and spec.uri.endswith("/"):
        bucket, _, prefix = spec.uri.removeprefix("s3://").partition("/")
        try:
            listed = store.list_objects(bucket, prefix)
        except BucketNotFoundError:
            return Listing(problem="InputNotFound", message=f"bucket {bucket} of {spec.uri} does not exist")
        # What this job writes is no input of it, should the output prefix lie under the input's.
        objects = [
            (str(o.uri), o.size_bytes)
            for o in listed
            if format_from_name(o.uri.key) and not str(o.uri).startswith(output)
        ]
        if spec.format is not None:
            objects = [(u, s) for u, s in objects if format_from_name(u) == spec.format]
        if not objects:
            kind = f".{spec.format} " if spec.format else "CSV or Parquet "
            return Listing(problem="InputNotFound", message=f"no {kind}object under {spec.uri}")
    else:
        uris = [spec.uri] if spec.uri is not None else list(spec.uris or [])
        objects, missing = [], []
        for uri in uris:
            try:
                objects.append((uri, store.stat(uri).size_bytes))
            except (ObjectNotFoundError, BucketNotFoundError):
                missing.append(uri)
        if missing:
            shown = ", ".join(missing[:SHOWN_MISSING]) + (
                f" and {len(missing) - SHOWN_MISSING} more" if len(missing) > SHOWN_MISSING else ""
            )
            return Listing(
                problem="InputNotFound",
                message=f"{shown} does not exist" if len(missing) == 1 else f"{shown} do not exist",
            )
    formats = {spec.format} if spec.format else {format_from_name(u) for u, _ in objects}
    if len(formats) != 1 or None in formats:
        return Listing(
            problem="InputFormatUnknown",
            message="cannot tell csv from parquet by the object names: set input.format",
        )
    inputs = [InputObject(uri=u, size_bytes=s) for u, s in objects if s > 0]
    if not inputs:
        return Listing(problem="InputEmpty", message="every input object is empty")
    return inputs, str(formats.pop())


def _output_in_use(store: Any, layout: OutputLayout, uid: str) -> Listing | None:
    """Another BatchJob's plan or manifest under the output prefix: its output would be overwritten."""
    for uri in (layout.plan, layout.manifest):
        try:
            raw = store.get_bytes(uri, max_bytes=MAX_PLAN_BYTES)
        except (ObjectNotFoundError, BucketNotFoundError):
            continue
        try:
            owner = (
                BatchPlan.model_validate_json(raw)
                if uri == layout.plan
                else BatchManifest.model_validate_json(raw)
            )
        except ValidationError:
            owner = None
        if owner is None or owner.uid != uid:
            who = f"BatchJob {owner.batch_job} (another run)" if owner is not None else "something else"
            return Listing(
                problem="OutputInUse",
                message=f"{layout.prefix} holds the output of {who}: give output.uri a prefix of its own",
            )
    return None


def _count_rows(store: Any, inputs: list[InputObject], fmt: str) -> int:
    """Parquet: the rows in the footers (exact). CSV: the size over the bytes per row of the first MiB."""
    if fmt == "parquet":
        total = 0
        for obj in inputs:
            tail = store.read_range(obj.uri, obj.size_bytes - TAIL_BYTES, TAIL_BYTES)
            length = footer_length(tail, obj.size_bytes)
            footer = store.read_range(obj.uri, obj.size_bytes - TAIL_BYTES - length, length)
            total += summarize_footer(footer).rows
        return total
    sample: bytes = store.read_range(inputs[0].uri, 0, CSV_SAMPLE_BYTES)
    lines = max(sample.count(b"\n") - 1, 1)  # the header is no row
    return max(1, round(sum(o.size_bytes for o in inputs) * lines / max(len(sample), 1)))


# --- after the Job, the results and the output ------------------------------------------------------------
def read_results(store: Any, prefix: str, shards: int, uid: str) -> Results:
    """Every shard's result document (blocking)."""
    if store is None:
        return Results(
            problem="StorageNotConfigured", message="object storage is not configured", retryable=True
        )
    layout = OutputLayout(prefix)
    found = []
    try:
        for index in range(shards):
            uri = layout.result(index)
            try:
                result = ShardResult.model_validate_json(store.get_bytes(uri, max_bytes=MAX_RESULT_BYTES))
            except (ObjectNotFoundError, BucketNotFoundError):
                return Results(problem="ResultMissing", message=f"shard {index} succeeded but wrote no {uri}")
            except ValidationError as exc:
                return Results(problem="ResultUnreadable", message=f"{uri}: {exc}")
            if result.uid != uid or result.index != index or not result.ok:
                return Results(
                    problem="ResultMismatch", message=f"{uri} is not shard {index}'s result of this job"
                )
            found.append(result)
    except StorageError as exc:
        return Results(problem="StorageUnavailable", message=str(exc), retryable=True)
    return Results(shards=found)


def publish(store: Any, action: Publish, uid: str) -> None:
    """Write errors.csv, the one file, then manifest.json; remove the composed parts. Blocking; again from
    the start after an interruption (each object is rewritten whole), except that an existing manifest of
    this job means only the parts' removal may be left."""
    if action.manifest is not None and _manifest_uid(store, action.manifest_uri) == uid:
        _remove_parts(store, action)
        return
    if action.errors_uri is not None:
        store.put_stream(ChunkStream(_renumbered_errors(store, action)), action.errors_uri, "text/csv")
    if action.one_file_uri is not None:
        scratch = (
            OutputLayout(action.manifest_uri.rsplit("/", 1)[0] + "/").bundle(n) for n in itertools.count()
        )
        pieces = [Piece(S3Uri.parse(uri), offset, length) for uri, offset, length in action.pieces]
        store.concatenate(pieces, action.one_file_uri, scratch, "text/csv")
    if action.manifest is not None:
        store.put_bytes(action.manifest.to_json(), action.manifest_uri, "application/json")
        _remove_parts(store, action)


def _manifest_uid(store: Any, uri: str) -> str | None:
    try:
        return BatchManifest.model_validate_json(store.get_bytes(uri, max_bytes=MAX_PLAN_BYTES)).uid
    except (ObjectNotFoundError, BucketNotFoundError, ValidationError):
        return None


def _remove_parts(store: Any, action: Publish) -> None:
    if action.one_file_uri is None:
        return
    for uri, _, _ in action.pieces:
        with contextlib.suppress(ObjectNotFoundError):
            store.remove(uri)


def _renumbered_errors(store: Any, action: Publish) -> Iterator[bytes]:
    """The shards' errors files as one, each row's number counted from the start of its input."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ERRORS_HEADER)
    for part in action.errors:
        with store.open_stream(part.uri) as stream:
            reader = csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
            next(reader, None)
            for source, row, column, reason in reader:
                writer.writerow((source, part.first_rows.get(source, 1) + int(row) - 1, column, reason))
                if out.tell() >= 1024 * 1024:
                    yield out.getvalue().encode()
                    out.seek(0)
                    out.truncate()
    yield out.getvalue().encode()


# --- the reconcile ------------------------------------------------------------------------------------------
def _first(index: Any, key: Any) -> Any:
    found = values(index, key)
    return found[0] if found else None


async def reconcile_batch_job(rt: Runtime, key: Key, body: Body) -> float | None:
    idx = rt.indexes
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], str(meta.get("uid"))
    spec_raw = dict(body.get("spec") or {})
    status = rt.current_status(key, body)
    spec, _ = parse_spec(spec_raw)
    job = _first(idx["batch_job_jobs"], (namespace, name))
    # The Endpoint as the watch last showed it (the cache of kstudio objects): its phase and served model.
    endpoint = rt.objects.get(("Endpoint", namespace, spec.endpoint)) if spec and spec.endpoint else None
    observed = BatchObserved(
        namespace=namespace,
        name=name,
        uid=uid,
        generation=int(meta.get("generation") or 1),
        models=NamespaceEntries(idx["trained_models"], namespace),
        endpoint=dict(endpoint) if endpoint is not None else None,
        job=job,
        pods=values(idx["batch_job_pods"], (namespace, name)),
    )
    retry = False
    if spec is not None and needs_listing(spec, status, job):
        choice = resolve_model(
            spec, BatchJobStatus.model_validate(status), observed.models, observed.endpoint
        )
        if isinstance(choice, ModelChoice):
            observed.listing = await asyncio.to_thread(list_inputs, rt.store, rt.store_error, spec, uid)
            retry = observed.listing.retryable
    if spec is not None and needs_results(spec, status, job):
        shards = int(((job or {}).get("spec") or {}).get("completions") or 0)
        observed.results = await asyncio.to_thread(read_results, rt.store, output_prefix(spec), shards, uid)
        retry = observed.results.retryable
    decision = decide_batch_job(spec_raw, status, observed, datetime.now(UTC), rt.config, dict(body))
    for action in decision.actions:
        await _apply(rt, key, action, uid)
    await post_events(rt.kube, body, decision.events)
    await rt.write_status(key, body, c.BATCH_JOBS, decision.status)
    if retry:
        return rt.backoff(key, base=5.0, cap=300.0)
    rt.succeeded(key)
    return decision.requeue


async def _apply(rt: Runtime, key: Key, action: Any, uid: str) -> None:
    try:
        if isinstance(action, WritePlan):
            store = rt.store
            if store is None:  # decide never plans without storage (the listing needs it)
                raise kopf.TemporaryError("object storage is not configured", delay=30)
            await asyncio.to_thread(store.put_bytes, action.document, action.uri, "application/json")
        elif isinstance(action, CreateJob):
            job, created = await rt.kube.create(action.manifest)
            owners = {ref.get("uid") for ref in (job.get("metadata") or {}).get("ownerReferences") or []}
            if not created and uid not in owners:
                name = (job.get("metadata") or {}).get("name")
                raise kopf.TemporaryError(
                    f"a Job named {name} that is not this BatchJob's exists; delete it", delay=30
                )
        elif isinstance(action, Publish):
            await asyncio.to_thread(publish, rt.store, action, uid)
    except StorageError as exc:  # the status is not written: the next reconcile does it again
        raise kopf.TemporaryError(
            f"object storage: {exc}", delay=rt.backoff(key, base=5.0, cap=300.0)
        ) from exc
