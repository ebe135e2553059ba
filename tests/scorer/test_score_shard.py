"""BatchJob shards (`kstudio score-shard`'s work) against a real MinIO: the parts of n shards, merged in
shard order, are byte for byte what the scorer's own batch scoring writes for the same input; bad rows go
to the errors file with their row and reason; a missing column and too many bad rows stop the shard."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from scorer_support import KSTUDIO, BuiltModel, settings_for

from kstudio_core.batch import (
    BatchPlan,
    ErrorThreshold,
    InputObject,
    PlannedModel,
    ShardResult,
    numbered_slices,
)
from kstudio_core.storage import ObjectStore, S3Uri
from kstudio_scorer.bes.file_scoring import ScoringTask, StreamLimits, score_file
from kstudio_scorer.bes.shard_input import ShardInputError
from kstudio_scorer.bes.shard_scoring import ErrorThresholdExceeded, ShardLimits, ShardScorer
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ScoringModel

BUCKET = "shard-tests"
# Small blocks and batches, so that a few thousand rows make many chunks per shard.
LIMITS = ShardLimits(csv_block_bytes=64 * 1024, chunk_rows=500, parquet_buffer_bytes=64 * 1024)


@pytest.fixture(scope="module")
def loaded(models: dict[str, BuiltModel]) -> dict[str, ScoringModel]:
    out = {}
    for name in ("forest", "classifier"):
        model = ScoringModel(settings_for(models[name]))
        model.load()
        out[name] = model
    return out


def _plan(
    model: ScoringModel,
    inputs: list[str],
    store: ObjectStore,
    fmt: str,
    prefix: str,
    shards: int,
    **extra: Any,
) -> BatchPlan:
    store.ensure_bucket(BUCKET)
    objects = [InputObject(uri=u, size_bytes=store.stat(u).size_bytes) for u in inputs]
    return BatchPlan(
        batch_job="ns/job",
        uid=prefix,
        inputs=objects,
        input_format=fmt,  # type: ignore[arg-type]
        output_prefix=f"s3://{BUCKET}/{prefix}/",
        output_format=extra.pop("output_format", fmt),
        shards=shards,
        model=PlannedModel(name="m", uri="s3://models/m.ilearner", sha256=model.digest),
        **extra,
    )


def _run_all(plan: BatchPlan, model: ScoringModel, store: ObjectStore) -> list[ShardResult]:
    return [ShardScorer(plan, i, model, store, LIMITS, pod=f"p{i}").run() for i in range(plan.shards)]


def _reference(model: ScoringModel, store: ObjectStore, source: str, target: str, tmp: Path) -> None:
    """The scorer's own batch scoring (what POST /jobs runs) of the same input."""
    fmt = "csv" if source.endswith(".csv") else "parquet"
    task = ScoringTask(
        input=S3Uri.parse(source),
        output=S3Uri.parse(target),
        input_format=fmt,  # type: ignore[arg-type]
        output_format=fmt,  # type: ignore[arg-type]
        input_store=store,
        output_store=store,
    )
    projection = OutputProjection.for_task(model.task, None, False)
    score_file(
        task, model, projection, tmp, StreamLimits(), on_rows=lambda n: None, should_stop=lambda: False
    )


def _merged_csv(results: list[ShardResult], store: ObjectStore) -> bytes:
    out = b""
    for result in sorted(results, key=lambda r: r.index):
        if result.part is None:
            continue
        data = store.get_bytes(result.part.uri)
        out += data if not out else data[result.part.header_bytes :]
    return out


def _forest_rows(n: int, seed: int = 3) -> pa.Table:
    x = np.round(np.random.default_rng(seed).normal(size=(n, 6)), 4)
    return pa.Table.from_arrays([pa.array(x[:, j]) for j in range(6)], names=[f"f{j}" for j in range(6)])


@pytest.mark.parametrize("shards", [1, 3, 8])
def test_csv_shards_merge_to_exactly_the_scorers_batch_output(
    shards: int, loaded: dict[str, ScoringModel], object_store: ObjectStore, tmp_path: Path
) -> None:
    model = loaded["forest"]
    source = f"s3://{BUCKET}/in/forest-{shards}.csv"
    object_store.ensure_bucket(BUCKET)
    buffer = io.BytesIO()
    pacsv.write_csv(_forest_rows(4000), buffer)
    object_store.put_bytes(buffer.getvalue(), source)
    _reference(model, object_store, source, f"s3://{BUCKET}/ref/forest-{shards}.csv", tmp_path)

    plan = _plan(model, [source], object_store, "csv", f"csv-{shards}", shards)
    results = _run_all(plan, model, object_store)
    assert sum(r.rows_scored for r in results) == 4000 and all(r.rows_rejected == 0 for r in results)
    assert _merged_csv(results, object_store) == object_store.get_bytes(
        f"s3://{BUCKET}/ref/forest-{shards}.csv"
    )
    stored = ShardResult.model_validate_json(object_store.get_bytes(plan.layout.result(shards - 1)))
    assert stored.ok and stored.peak_rss_bytes and stored.model_sha256 == model.digest


def test_parquet_shards_merge_to_exactly_the_scorers_batch_output(
    loaded: dict[str, ScoringModel], object_store: ObjectStore, tmp_path: Path
) -> None:
    model = loaded["classifier"]
    frame = pa.Table.from_pandas(_mixed(3000), preserve_index=False)
    source = f"s3://{BUCKET}/in/mixed.parquet"
    object_store.ensure_bucket(BUCKET)
    buffer = io.BytesIO()
    pq.write_table(frame, buffer, row_group_size=250)
    object_store.put_bytes(buffer.getvalue(), source)
    _reference(model, object_store, source, f"s3://{BUCKET}/ref/mixed.parquet", tmp_path)

    plan = _plan(model, [source], object_store, "parquet", "pq-3", 3)
    results = _run_all(plan, model, object_store)
    assert [r.rows_scored > 0 for r in results] == [True, True, True]
    merged = pa.concat_tables(
        [pq.read_table(io.BytesIO(object_store.get_bytes(r.part.uri))) for r in results if r.part]
    )
    reference = pq.read_table(io.BytesIO(object_store.get_bytes(f"s3://{BUCKET}/ref/mixed.parquet")))
    assert merged.equals(reference)


def _mixed(n: int) -> Any:
    import pandas as pd

    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "bill_length_mm": rng.normal(44, 5, n).round(1),
            "flipper_count": rng.integers(1, 9, n).astype(float),
            "island": rng.choice(["Biscoe", "Dream", "Torgersen"], n),
            "male": rng.random(n) > 0.5,
        }
    )


def test_bad_rows_go_to_the_errors_file_and_the_rest_is_scored_as_the_scorer_would(
    loaded: dict[str, ScoringModel], object_store: ObjectStore, tmp_path: Path
) -> None:
    model = loaded["forest"]
    good = io.BytesIO()
    pacsv.write_csv(_forest_rows(3000, seed=4), good)
    lines = good.getvalue().split(b"\n")
    bad_rows = {17: b"1,2,oops,4,5,6", 1500: b"1,2,3", 2999: b"x,1,1,1,1,1"}
    for row, text in bad_rows.items():
        lines.insert(row, text)  # lines[0] is the header: row r of the data is lines[r]
    object_store.ensure_bucket(BUCKET)
    source = f"s3://{BUCKET}/in/with-bad.csv"
    object_store.put_bytes(b"\n".join(lines), source)
    clean = f"s3://{BUCKET}/in/clean.csv"
    object_store.put_bytes(good.getvalue(), clean)
    _reference(model, object_store, clean, f"s3://{BUCKET}/ref/clean.csv", tmp_path)

    plan = _plan(model, [source], object_store, "csv", "bad", 3, error_threshold=ErrorThreshold(rows=5))
    results = _run_all(plan, model, object_store)
    assert sum(r.rows_rejected for r in results) == 3 and sum(r.rows_scored for r in results) == 3000
    assert _merged_csv(results, object_store) == object_store.get_bytes(f"s3://{BUCKET}/ref/clean.csv")
    errors = []
    first_rows = numbered_slices(results)  # rows are numbered within each slice: where each slice starts
    for result in results:
        if result.errors is not None:
            text = object_store.get_bytes(result.errors.uri).decode()
            for error in csv.DictReader(io.StringIO(text)):
                error["row"] = str(first_rows[(result.index, source)] + int(error["row"]) - 1)
                errors.append(error)
    assert [e["row"] for e in errors] == ["17", "1500", "2999"]
    assert "f2" in errors[0]["column"] and "oops" in errors[0]["reason"]
    assert "Expected 6 columns, got 3" in errors[1]["reason"]
    assert errors[2]["column"] == "f0"


def test_a_missing_column_stops_the_shard_naming_it(
    loaded: dict[str, ScoringModel], object_store: ObjectStore
) -> None:
    model = loaded["forest"]
    object_store.ensure_bucket(BUCKET)
    source = f"s3://{BUCKET}/in/no-f4.csv"
    object_store.put_bytes(b"f0,f1,f2,f3,f5\n1,2,3,4,5\n", source)
    plan = _plan(model, [source], object_store, "csv", "missing", 1)
    with pytest.raises(ShardInputError) as info:
        ShardScorer(plan, 0, model, object_store, LIMITS).run()
    assert info.value.reason == "MissingColumn" and "'f4'" in info.value.message
    assert not object_store.exists(plan.layout.part(0, "csv"))


def test_beyond_the_threshold_the_shard_stops_with_the_counts_and_leaves_its_errors(
    loaded: dict[str, ScoringModel], object_store: ObjectStore
) -> None:
    model = loaded["forest"]
    object_store.ensure_bucket(BUCKET)
    source = f"s3://{BUCKET}/in/many-bad.csv"
    rows = [b"f0,f1,f2,f3,f4,f5"] + [b"1,2,3,4,5,6" if i % 10 else b"1,2,3,4,5,no" for i in range(200)]
    object_store.put_bytes(b"\n".join(rows) + b"\n", source)
    plan = _plan(model, [source], object_store, "csv", "over", 1, error_threshold=ErrorThreshold(rows=4))
    with pytest.raises(ErrorThresholdExceeded) as info:
        ShardScorer(plan, 0, model, object_store, LIMITS).run()
    # Checked after each chunk (here the whole slice): the counts of what it read.
    assert "shard 0: 20 rows could not be scored (180 scored)" in info.value.message
    assert "row 1 of this shard's part of" in info.value.message and "Row #" not in info.value.message
    assert "errorThreshold.rows 4" in info.value.message
    result = ShardResult.model_validate_json(object_store.get_bytes(plan.layout.result(0)))
    assert not result.ok and result.reason == "ErrorThresholdExceeded" and result.errors is not None
    assert not object_store.exists(plan.layout.part(0, "csv"))  # no part of a failed shard


def test_score_shard_command_exits_2_naming_the_column_and_0_when_done(
    models: dict[str, BuiltModel], object_store: ObjectStore, minio_server: Any, tmp_path: Path
) -> None:
    built = models["forest"]
    loaded_model = ScoringModel(settings_for(built))
    loaded_model.load()
    object_store.ensure_bucket(BUCKET)
    model_uri = f"s3://{BUCKET}/models/forest.ilearner"
    object_store.upload(built.path, model_uri)
    good, missing = f"s3://{BUCKET}/in/cmd.csv", f"s3://{BUCKET}/in/cmd-missing.csv"
    buffer = io.BytesIO()
    pacsv.write_csv(_forest_rows(300), buffer)
    object_store.put_bytes(buffer.getvalue(), good)
    object_store.put_bytes(b"f0,f1\n1,2\n", missing)
    for name, source, expected in (("cmd-ok", good, 0), ("cmd-missing", missing, 2)):
        plan = _plan(loaded_model, [source], object_store, "csv", name, 2)
        plan = plan.model_copy(update={"model": PlannedModel(name="m", uri=model_uri, sha256=built.sha256)})
        object_store.put_bytes(plan.to_json(), plan.layout.plan)
        log = tmp_path / "termination"
        proc = subprocess.run(
            [sys.executable, str(KSTUDIO), "score-shard", "--termination-log", str(log)],
            env=_shard_env(plan, model_uri, built.sha256, minio_server, tmp_path)
            | {"JOB_COMPLETION_INDEX": "1"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == expected, proc.stderr[-2000:]
        if expected == 2:
            assert '"reason": "MissingColumn"' in log.read_text() and "'f2'" in log.read_text()
        else:
            assert object_store.exists(plan.layout.result(1)) and object_store.exists(
                plan.layout.part(1, "csv")
            )


def _shard_env(
    plan: BatchPlan, model_uri: str, sha256: str, minio_server: Any, tmp_path: Path
) -> dict[str, str]:
    """A shard pod's environment (the operator's ShardEnv), pointing at the test's MinIO."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTUDIO_")}
    return (
        env
        | minio_server.settings.to_env()
        | {
            "KSTUDIO_BATCH_PLAN_URI": plan.layout.plan,
            "KSTUDIO_MODEL_URI": model_uri,
            "KSTUDIO_MODEL_SHA256": sha256,
            "KSTUDIO_MODEL_DIR": str(tmp_path / "model"),
        }
    )


# `kstudio score-shard` in a process, then the modules it had imported.
_MODULES_PROBE = """
import json, sys
from kstudio_cli.main import main
code = main(["score-shard", "--index", "0"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
# What a shard never needs: the scorer's HTTP layer and web stack, plotting, the operator's and the
# trainer's code. pandas only for a model fitted on a DataFrame (bes/shard_memory.py).
_NEVER_IN_A_SHARD = (
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "matplotlib",
    "kopf",
    "kubernetes",
    "kstudio_scorer.http",
    "kstudio_operator",
    "kstudio_trainer",
)


@pytest.mark.parametrize("model_name", ["forest", "classifier"])
def test_a_shard_process_imports_no_web_stack_and_pandas_only_for_a_dataframe_model(
    model_name: str,
    models: dict[str, BuiltModel],
    loaded: dict[str, ScoringModel],
    object_store: ObjectStore,
    minio_server: Any,
    tmp_path: Path,
) -> None:
    built, model = models[model_name], loaded[model_name]
    object_store.ensure_bucket(BUCKET)
    model_uri = f"s3://{BUCKET}/models/{model_name}.ilearner"
    object_store.upload(built.path, model_uri)
    source = f"s3://{BUCKET}/in/modules-{model_name}.csv"
    table = _forest_rows(2000) if model_name == "forest" else pa.Table.from_pandas(_mixed(2000))
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    object_store.put_bytes(buffer.getvalue(), source)
    reference = f"s3://{BUCKET}/ref/modules-{model_name}.csv"
    _reference(model, object_store, source, reference, tmp_path / "ref")
    plan = _plan(model, [source], object_store, "csv", f"modules-{model_name}", 1)
    plan = plan.model_copy(update={"model": PlannedModel(name="m", uri=model_uri, sha256=built.sha256)})
    object_store.put_bytes(plan.to_json(), plan.layout.plan)

    proc = subprocess.run(
        [sys.executable, "-c", _MODULES_PROBE],
        env=_shard_env(plan, model_uri, built.sha256, minio_server, tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["code"] == 0, proc.stderr[-2000:]
    modules = set(probe["modules"])
    heavy = sorted(m for m in modules for h in _NEVER_IN_A_SHARD if m == h or m.startswith(h + "."))
    assert heavy == []
    # The forest was fitted on a matrix: no pandas. The classifier's pipeline selects DataFrame columns.
    assert ("pandas" in modules) is (model_name == "classifier")
    # And the shard scored exactly what the scorer's own batch scoring writes.
    result = ShardResult.model_validate_json(object_store.get_bytes(plan.layout.result(0)))
    assert result.rows_scored == 2000
    assert _merged_csv([result], object_store) == object_store.get_bytes(reference)
