"""Shared by the BatchJob tests and bench/batch_scale.py: models, inputs, the scorer's own batch scoring of
the same input (the reference a BatchJob's output must equal), reading a BatchJob's output back, and one
small BatchJob over the example penguins (the chart and console tests run it under the chart's RBAC)."""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from operator_support import Kubectl, wait_until
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kstudio_core.batch import BatchManifest
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_core.storage import ObjectStore, S3Uri
from kstudio_scorer.bes.file_scoring import ScoringTask, StreamLimits, score_file
from kstudio_scorer.model.scored_columns import OutputProjection
from kstudio_scorer.model.served_model import ScoringModel
from kstudio_scorer.settings import ScorerSettings
from kstudio_trainer.artifact_writer import write_ilearner

# penguins.csv of the example data (kstudio_devtools.examples): its rows, some with missing values.
PENGUIN_ROWS = 344


def build_model(path: Path, features: int, forest_trees: int = 0) -> str:
    """A real .ilearner over f0..f{features-1}: LogisticRegression, or a forest of `forest_trees` trees."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, features))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    if forest_trees:
        estimator: Any = RandomForestClassifier(n_estimators=forest_trees, random_state=0).fit(x, y)
    else:
        estimator = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    manifest = IlearnerManifest(
        task="classification",
        label="y",
        inputSchema=[ColumnSpec(name=f"f{i}", type="number") for i in range(features)],
        classes=[0, 1],
    )
    return write_ilearner(path, estimator, manifest).sha256


def rows_table(rows: int, features: int, seed: int = 1, start: int = 0) -> pa.Table:
    x = np.round(np.random.default_rng(seed + start).normal(size=(rows, features)), 4)
    return pa.Table.from_arrays(
        [pa.array(x[:, j]) for j in range(features)], names=[f"f{j}" for j in range(features)]
    )


def csv_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pacsv.write_csv(table, out)
    return out.getvalue()


def parquet_bytes(table: pa.Table, row_group_rows: int) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_rows)
    return out.getvalue()


def scorer_batch_output(model_path: Path, sha256: str, store: ObjectStore, source: str, target: str) -> None:
    """What the scorer's own batch scoring (`POST /jobs`, bes/file_scoring.py) writes for `source`, with
    the default output columns: the reference a BatchJob must equal row for row."""
    settings = ScorerSettings(
        model_uri=str(model_path), model_sha256=sha256, auth_enabled=False, termination_log=None
    )
    model = ScoringModel(settings)
    model.load()
    fmt = "csv" if source.endswith(".csv") else "parquet"
    task = ScoringTask(
        input=S3Uri.parse(source),
        output=S3Uri.parse(target),
        input_format=fmt,  # type: ignore[arg-type]
        output_format=fmt,  # type: ignore[arg-type]
        input_store=store,
        output_store=store,
    )
    with tempfile.TemporaryDirectory(prefix="kstudio-reference-") as spool:
        score_file(
            task,
            model,
            OutputProjection.for_task(model.task, None, False),
            Path(spool),
            StreamLimits(),
            on_rows=lambda n: None,
            should_stop=lambda: False,
        )


def manifest(store: ObjectStore, prefix: str) -> BatchManifest:
    return BatchManifest.model_validate_json(store.get_bytes(f"{prefix}manifest.json"))


def parquet_parts(store: ObjectStore, prefix: str) -> pa.Table:
    """Every part the manifest lists, read and concatenated in shard order."""
    parts = manifest(store, prefix).parts
    return pa.concat_tables(
        [pq.read_table(io.BytesIO(store.get_bytes(p.uri, max_bytes=2**30))) for p in parts]
    )


def batch_job(name: str, **spec: Any) -> str:
    return json.dumps(
        {"apiVersion": "kstudio.io/v1alpha1", "kind": "BatchJob", "metadata": {"name": name}, "spec": spec}
    )


def finished_batch_job(kube: Kubectl, name: str, timeout: float = 240) -> dict[str, Any]:
    """The BatchJob's status once it is Succeeded or Failed."""

    def probe() -> dict[str, Any] | None:
        status = kube.status("batchjob", name)
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_until(f"BatchJob {name} to finish", probe, timeout=timeout)


def score_penguins(
    kube: Kubectl, store: ObjectStore, namespace: str, name: str
) -> tuple[dict[str, Any], str]:
    """BatchJob `name`: the example penguins.csv scored with TrainedModel penguins-1 by one small shard pod,
    into s3://batch/<namespace>/<name>/. Returns its final status and that output prefix."""
    store.ensure_bucket("batch")
    out = f"s3://batch/{namespace}/{name}/"
    spec = {
        "model": "penguins-1",
        "input": {"uri": "s3://datasets/penguins.csv"},
        "output": {"uri": out},
        "errorThreshold": {"percent": 5},  # rows with missing values the model may refuse
        "resources": {"cpu": "250m", "memory": "512Mi"},
    }
    assert kube.apply(batch_job(name, **spec)).returncode == 0
    return finished_batch_job(kube, name), out
