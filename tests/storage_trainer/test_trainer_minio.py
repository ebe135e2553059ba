"""`kstudio train` end to end against a real MinIO: examples uploaded, trained, read back by digest."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fixtures.minio_server import MinioServer
from kstudio_core.ilearner import DigestMismatchError, sha256_file
from kstudio_core.storage import ObjectStore
from kstudio_devtools import examples
from kstudio_scorer.model.artifact import load_ilearner
from kstudio_trainer import artifact_writer, cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def uploaded_examples(
    minio_server: MinioServer, object_store: ObjectStore, tmp_path_factory: pytest.TempPathFactory
) -> None:
    keys = tmp_path_factory.mktemp("keys")
    (keys / "ak").write_text(minio_server.access_key)
    (keys / "sk").write_text(minio_server.secret_key)
    code = examples.main(
        [
            "--endpoint",
            minio_server.endpoint,
            "--access-key-file",
            str(keys / "ak"),
            "--secret-key-file",
            str(keys / "sk"),
        ]
    )
    assert code == 0


@pytest.fixture
def storage_env(minio_server: MinioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in minio_server.settings.to_env().items():
        monkeypatch.setenv(key, value)


class PipelineSpy:
    """Keeps the in-memory pipeline the trainer serialized (the real writer still runs)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pipelines: list[Any] = []
        real = artifact_writer.write_ilearner

        def spy(path: Any, pipeline: Any, manifest: Any) -> Any:
            self.pipelines.append(pipeline)
            return real(path, pipeline, manifest)

        monkeypatch.setattr(cli, "write_ilearner", spy)


def _train(
    tmp_path: Path, snapshot: dict[str, Any], output: str, run: int = 1
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(snapshot))
    result_file = tmp_path / "result.json"
    term = tmp_path / "termination-log"
    code = cli.main(
        [
            "--snapshot",
            str(snap),
            "--run",
            str(run),
            "--output",
            output,
            "--result-file",
            str(result_file),
            "--termination-log",
            str(term),
        ]
    )
    result = json.loads(result_file.read_text()) if result_file.exists() else {}
    return code, result, json.loads(term.read_text())


def test_upload_examples_puts_the_datasets(uploaded_examples: None, object_store: ObjectStore) -> None:
    penguins = pd.read_csv(io.BytesIO(object_store.get_bytes("s3://datasets/penguins.csv")))
    early = pd.read_csv(io.BytesIO(object_store.get_bytes("s3://datasets/penguins-2007-2008.csv")))
    diabetes = pd.read_csv(io.BytesIO(object_store.get_bytes("s3://datasets/diabetes.csv")))
    assert penguins.shape == (344, 8) and penguins.isna().any().any()
    assert len(early) == (penguins["year"] < 2009).sum() and set(early["year"]) == {2007, 2008}
    assert diabetes.shape == (442, 11) and "target" in diabetes


def test_penguins_round_trip_through_minio(
    uploaded_examples: None,
    storage_env: None,
    object_store: ObjectStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = PipelineSpy(monkeypatch)
    snapshot = json.loads((REPO / "examples/experiments/penguins.snapshot.json").read_text())
    output = "s3://models/penguins/penguins-3.ilearner"
    code, result, term = _train(tmp_path, snapshot, output, run=3)
    assert code == 0

    # The result in MinIO, next to the artifact, is the one the operator reads.
    stored = json.loads(object_store.get_bytes(output + ".result.json"))
    assert stored == result
    assert result["artifact"]["uri"] == output
    artifact_path = tmp_path / "downloaded.ilearner"
    assert object_store.download(output, artifact_path) == result["artifact"]["sha256"]
    assert sha256_file(artifact_path) == result["artifact"]["sha256"]
    assert artifact_path.stat().st_size == result["artifact"]["sizeBytes"]
    assert object_store.stat(output).sha256 == result["artifact"]["sha256"]

    loaded = load_ilearner(artifact_path, result["artifact"]["sha256"])
    frame = examples.penguins_frame()
    x = frame[snapshot["features"]]
    (in_memory,) = spy.pipelines
    np.testing.assert_array_equal(loaded.pipeline.predict(x), in_memory.predict(x))
    np.testing.assert_array_equal(loaded.pipeline.predict_proba(x), in_memory.predict_proba(x))
    assert (loaded.pipeline.predict(x) == frame["species"]).mean() > 0.95

    m = loaded.manifest
    assert m.task == "classification" and m.label == "species" and m.run == 3
    assert m.classes == ["Adelie", "Chinstrap", "Gentoo"] == result["classes"]
    assert [(c.name, c.type) for c in m.inputSchema] == [
        ("island", "string"),
        ("bill_length_mm", "number"),
        ("bill_depth_mm", "number"),
        ("flipper_length_mm", "number"),
        ("body_mass_g", "number"),
        ("sex", "string"),
    ]
    assert m.inputSchema[0].categories == ["Biscoe", "Dream", "Torgersen"]
    assert set(m.metrics) == {"accuracy", "f1_macro", "roc_auc"} and m.metrics == result["metrics"]
    assert m.metrics["accuracy"] > 0.9
    assert m.frameworks["sklearn"] == "1.9.1" and m.frameworks["skops"] == "0.16.0"
    assert m.experiment == snapshot
    assert result["inputSchema"] == [c.model_dump(exclude_none=True) for c in m.inputSchema]

    assert term == {
        "ok": True,
        "uri": output,
        "sha256": result["artifact"]["sha256"],
        "sizeBytes": result["artifact"]["sizeBytes"],
        "metrics": result["metrics"],
    }
    assert len(json.dumps(term)) < 4096


def test_diabetes_regression_from_parquet(
    uploaded_examples: None, storage_env: None, object_store: ObjectStore, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    examples.diabetes_frame().to_parquet(buffer, index=False)
    object_store.put_bytes(buffer.getvalue(), "s3://datasets/diabetes.parquet")
    snapshot = examples.diabetes_snapshot("s3://datasets/diabetes.parquet")
    snapshot["dataset"] = {"uri": "s3://datasets/diabetes.parquet", "format": "parquet"}
    code, result, _ = _train(tmp_path, snapshot, "s3://models/diabetes/diabetes-1.ilearner")
    assert code == 0
    assert result["task"] == "regression" and result["classes"] == []
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert 0.3 < result["metrics"]["r2"] < 0.7  # Ridge on diabetes: a real but modest fit
    assert len(result["inputSchema"]) == 10


def test_sweep_records_all_trials_and_keeps_the_best(
    uploaded_examples: None, storage_env: None, object_store: ObjectStore, tmp_path: Path
) -> None:
    snapshot = examples.penguins_snapshot(
        algorithm={"name": "LogisticRegression", "params": {"max_iter": 500}},
        sweep={"params": {"C": [0.0005, 0.005, 1.0]}, "metric": "f1_macro", "folds": 3},
    )
    output = "s3://models/penguins/sweep.ilearner"
    code, result, _ = _train(tmp_path, snapshot, output)
    assert code == 0
    trials = result["trials"]
    assert [t["params"] for t in trials] == [{"C": 0.0005}, {"C": 0.005}, {"C": 1.0}]
    assert all(t["metric"] == "f1_macro" and len(t["foldScores"]) == 3 for t in trials)
    scores = [t["meanScore"] for t in trials]
    assert len(set(scores)) == 3, "the grid should separate the candidates"
    best = max(trials, key=lambda t: t["meanScore"])
    assert best["rank"] == 1
    assert result["bestParams"] == best["params"] and result["sweepMetric"] == "f1_macro"

    object_store.download(output, tmp_path / "m.ilearner")
    model = load_ilearner(tmp_path / "m.ilearner", result["artifact"]["sha256"]).pipeline
    assert best["params"]["C"] == model.named_steps["model"].C


def test_sweep_on_lower_is_better_metric_keeps_the_smallest_error(tmp_path: Path) -> None:
    data = tmp_path / "diabetes.csv"
    examples.diabetes_frame().to_csv(data, index=False)
    snapshot = examples.diabetes_snapshot(
        str(data),
        algorithm={"name": "KNeighborsRegressor", "params": {}},
        sweep={"params": {"n_neighbors": [1, 15, 40]}, "metric": "rmse", "folds": 3},
    )
    code, result, _ = _train(tmp_path, snapshot, str(tmp_path / "out" / "m.ilearner"))
    assert code == 0
    best = min(result["trials"], key=lambda t: t["meanScore"])
    assert best["rank"] == 1 and best["meanScore"] > 0  # reported as an error, not sklearn's negative score
    assert result["bestParams"] == best["params"] != {"n_neighbors": 1}


def test_cli_process_exit_codes(minio_server: MinioServer, uploaded_examples: None, tmp_path: Path) -> None:
    """The real console script, as a training Job runs it: 0 on success, 75 when storage is down."""
    snap = tmp_path / "s.json"
    snap.write_text(json.dumps(examples.diabetes_snapshot()))
    kstudio = str(Path(sys.executable).with_name("kstudio"))
    args = [kstudio, "train", "--snapshot", str(snap), "--run", "1", "--output", "s3://models/p/cli.ilearner"]
    ok = subprocess.run(args, env=minio_server.settings.to_env(), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "test metrics: rmse=" in ok.stderr
    assert minio_server.secret_key not in ok.stderr + ok.stdout

    down = minio_server.settings.model_copy(update={"endpoint": "127.0.0.1:9"}).to_env()
    down["KSTUDIO_S3_ENDPOINT"] = "127.0.0.1:9"
    failed = subprocess.run(args, env=down, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 75, failed.stderr
    assert "unreachable" in failed.stderr


def test_upload_examples_reads_settings_from_env(
    minio_server: MinioServer,
    object_store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in minio_server.settings.to_env().items():
        monkeypatch.setenv(key, value)
    assert examples.main(["--bucket", "datasets-from-env"]) == 0
    assert capsys.readouterr().out.split() == [
        "s3://datasets-from-env/penguins.csv",
        "s3://datasets-from-env/penguins-2007-2008.csv",
        "s3://datasets-from-env/diabetes.csv",
    ]
    assert object_store.get_bytes("s3://datasets-from-env/diabetes.csv") == examples.example_csv(
        "diabetes.csv"
    )


def test_upload_examples_flag_and_env_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KSTUDIO_S3_ENDPOINT", raising=False)
    assert examples.main([]) == 2  # nothing configured
    assert examples.main(["--endpoint", "127.0.0.1:9"]) == 2  # endpoint without key files


def test_artifact_tampered_in_minio_is_refused_by_the_recorded_digest(
    uploaded_examples: None, storage_env: None, object_store: ObjectStore, tmp_path: Path
) -> None:
    output = "s3://models/diabetes/tampered.ilearner"
    code, result, _ = _train(tmp_path, examples.diabetes_snapshot(), output)
    assert code == 0
    data = bytearray(object_store.get_bytes(output))
    data[len(data) // 2] ^= 0x40
    object_store.put_bytes(bytes(data), output)
    local = tmp_path / "tampered.ilearner"
    assert object_store.download(output, local) != result["artifact"]["sha256"]
    with pytest.raises(DigestMismatchError, match=f"expected {result['artifact']['sha256']}"):
        load_ilearner(local, result["artifact"]["sha256"])


def test_binary_svc_reports_roc_auc_from_decision_scores(tmp_path: Path) -> None:
    data = tmp_path / "two-species.csv"
    frame = examples.penguins_frame()
    frame[frame["species"] != "Chinstrap"].to_csv(data, index=False)
    snapshot = examples.penguins_snapshot(str(data), algorithm={"name": "SVC", "params": {"C": 0.5}})
    code, result, _ = _train(tmp_path, snapshot, str(tmp_path / "out" / "svc.ilearner"))
    assert code == 0
    assert result["classes"] == ["Adelie", "Gentoo"]
    assert set(result["metrics"]) == {"accuracy", "f1_macro", "roc_auc"}
    assert result["metrics"]["roc_auc"] > 0.95
