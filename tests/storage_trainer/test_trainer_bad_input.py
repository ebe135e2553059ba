"""Every kind of bad input gives a message naming the problem and the right exit class.

Exit 2: the spec or the data is wrong (the operator must not retry). Exit 75: infrastructure (retry).
Nothing is written to the output on failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from fixtures.minio_server import MinioServer, free_port
from kstudio_devtools import examples
from kstudio_trainer import cli


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "penguins.csv"
    examples.penguins_frame().to_csv(path, index=False)
    return path


class Run:
    def __init__(self, code: int, term: dict[str, Any], output: Path) -> None:
        self.code, self.term, self.output = code, term, output

    @property
    def message(self) -> str:
        return str(self.term.get("message", ""))


def train(tmp_path: Path, snapshot: dict[str, Any] | str, output: str | None = None) -> Run:
    snap = tmp_path / "snapshot.json"
    snap.write_text(snapshot if isinstance(snapshot, str) else json.dumps(snapshot))
    out = tmp_path / "out" / "m.ilearner"
    term = tmp_path / "termination-log"
    code = cli.main(
        [
            "--snapshot",
            str(snap),
            "--run",
            "1",
            "--output",
            output or str(out),
            "--termination-log",
            str(term),
        ]
    )
    return Run(code, json.loads(term.read_text()), out)


def assert_input_error(run: Run, *fragments: str) -> None:
    assert run.code == 2, run.term
    assert run.term["ok"] is False and run.term["exitCode"] == 2
    for fragment in fragments:
        assert fragment in run.message, run.message
    assert not run.output.exists()
    assert not Path(str(run.output) + ".result.json").exists()


def write_frame(tmp_path: Path, mutate: Callable[[pd.DataFrame], pd.DataFrame], name: str = "d.csv") -> Path:
    path = tmp_path / name
    mutate(examples.penguins_frame()).to_csv(path, index=False)
    return path


# -- the spec ------------------------------------------------------------------------------------------


def test_unknown_feature_column(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv), features=["island", "beak_colour"])
    assert_input_error(train(tmp_path, spec), "unknown feature column(s) 'beak_colour'", "'bill_length_mm'")


def test_missing_label_column(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv), label="genus", features=None)
    assert_input_error(train(tmp_path, spec), "label column 'genus' is not in the dataset")


def test_label_field_missing_from_spec(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv))
    del spec["label"]
    run = train(tmp_path, spec)
    assert_input_error(run, "label: required field is missing")
    assert run.term["reason"] == "InvalidSpec"


def test_unknown_algorithm(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv), algorithm={"name": "DeepForest", "params": {}})
    assert_input_error(train(tmp_path, spec), "unknown algorithm 'DeepForest'", "RandomForestClassifier")


def test_algorithm_for_the_other_task(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv), algorithm={"name": "Ridge"})
    assert_input_error(train(tmp_path, spec), "algorithm 'Ridge' is for regression, not classification")


def test_unknown_algorithm_parameter(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(
        str(penguins_csv), algorithm={"name": "RandomForestClassifier", "params": {"n_trees": 10}}
    )
    assert_input_error(train(tmp_path, spec), "unknown parameter(s) 'n_trees' for RandomForestClassifier")


def test_invalid_algorithm_parameter_value(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(
        str(penguins_csv), algorithm={"name": "RandomForestClassifier", "params": {"n_estimators": -3}}
    )
    assert_input_error(
        train(tmp_path, spec), "algorithm.params.n_estimators", "-3 is not accepted", "[1, inf)"
    )


def test_unknown_sweep_parameter(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv), sweep={"params": {"depth": [1, 2]}})
    assert_input_error(train(tmp_path, spec), "sweep.params: unknown parameter(s) 'depth'")


def test_metric_not_valid_for_task(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(
        str(penguins_csv), evaluation={"testFraction": 0.2, "seed": 1, "metrics": ["accuracy", "rmse"]}
    )
    assert_input_error(
        train(tmp_path, spec), "metric(s) rmse not valid for classification", "is for the other task"
    )


def test_sweep_metric_not_valid_for_task(tmp_path: Path) -> None:
    spec = examples.diabetes_snapshot("unused.csv", sweep={"params": {"alpha": [1.0]}, "metric": "f1_macro"})
    assert_input_error(train(tmp_path, spec), "sweep.metric: metric(s) f1_macro not valid for regression")


def test_typo_in_spec_field(tmp_path: Path, penguins_csv: Path) -> None:
    spec = examples.penguins_snapshot(str(penguins_csv), evaluation={"testFracton": 0.3})
    assert_input_error(train(tmp_path, spec), "evaluation.testFracton: unknown field")


def test_snapshot_that_is_not_json(tmp_path: Path) -> None:
    assert_input_error(train(tmp_path, "{dataset: "), "is not valid JSON")


# -- the data ------------------------------------------------------------------------------------------


def test_text_in_a_numeric_column(tmp_path: Path) -> None:
    def corrupt(f: pd.DataFrame) -> pd.DataFrame:
        f["bill_length_mm"] = f["bill_length_mm"].astype(object)
        f.loc[[4, 10], "bill_length_mm"] = ["forty", "n/a?"]
        return f

    data = write_frame(tmp_path, corrupt)
    run = train(tmp_path, examples.penguins_snapshot(str(data)))
    assert_input_error(
        run, "column 'bill_length_mm' looks numeric but has non-numeric text", "'forty' (row 5)"
    )
    assert run.term["reason"] == "InvalidData"


def test_text_in_a_declared_numeric_column(tmp_path: Path) -> None:
    data = write_frame(tmp_path, lambda f: f)
    spec = examples.penguins_snapshot(str(data), preprocessing={"numericColumns": ["island"]})
    assert_input_error(train(tmp_path, spec), "column 'island' is declared numeric", "'Torgersen' (row 1)")


def test_non_numeric_regression_label(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    frame = examples.diabetes_frame()
    frame["target"] = frame["target"].astype(object)
    frame.loc[2, "target"] = "high"
    frame.to_csv(path, index=False)
    spec = examples.diabetes_snapshot(str(path))
    assert_input_error(train(tmp_path, spec), "label column 'target' must be numeric", "'high' (row 3)")


def test_single_class_label(tmp_path: Path) -> None:
    data = write_frame(tmp_path, lambda f: f[f["species"] == "Adelie"])
    assert_input_error(
        train(tmp_path, examples.penguins_snapshot(str(data))), "has a single class ('Adelie')"
    )


def test_empty_file(tmp_path: Path) -> None:
    data = tmp_path / "empty.csv"
    data.write_bytes(b"")
    assert_input_error(
        train(tmp_path, examples.penguins_snapshot(str(data))), "is empty (no header, no rows)"
    )


def test_header_without_rows(tmp_path: Path) -> None:
    data = write_frame(tmp_path, lambda f: f.iloc[:0])
    assert_input_error(train(tmp_path, examples.penguins_snapshot(str(data))), "has a header but no rows")


def test_tiny_dataset(tmp_path: Path) -> None:
    data = write_frame(tmp_path, lambda f: f.iloc[[0, 1, 2, 200, 201, 300, 301]])
    assert_input_error(
        train(tmp_path, examples.penguins_snapshot(str(data))), "too small: 7 row(s)", "at least 10"
    )


def test_unreadable_parquet_file(tmp_path: Path) -> None:
    data = tmp_path / "d.parquet"
    data.write_bytes(b"PAR1 this is not parquet at all")
    spec = examples.penguins_snapshot(str(data), dataset={"uri": str(data), "format": "parquet"})
    assert_input_error(train(tmp_path, spec), f"dataset {data} is not a readable parquet file")


def test_unreadable_csv_file(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_bytes(b"\xff\xfe\x00\x81binary\x00garbage\xc3\x28" * 50)
    assert_input_error(train(tmp_path, examples.penguins_snapshot(str(data))), "is not a readable CSV file")


def test_missing_local_file(tmp_path: Path) -> None:
    spec = examples.penguins_snapshot(str(tmp_path / "nowhere.csv"))
    assert_input_error(train(tmp_path, spec), "nowhere.csv does not exist")


def test_missing_dataset_object_in_minio(
    tmp_path: Path, minio_server: MinioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in minio_server.settings.to_env().items():
        monkeypatch.setenv(key, value)
    spec = examples.penguins_snapshot("s3://datasets/no-such-file.csv")
    assert_input_error(train(tmp_path, spec), "dataset s3://datasets/no-such-file.csv does not exist")


# -- infrastructure (exit 75: retry) --------------------------------------------------------------------


def _assert_infrastructure_error(run: Run, *fragments: str) -> None:
    assert run.code == 75, run.term
    assert run.term["ok"] is False and run.term["reason"] == "InfrastructureError"
    for fragment in fragments:
        assert fragment in run.message, run.message


@pytest.mark.timeout(60)
def test_unreachable_storage_is_an_infrastructure_error(
    tmp_path: Path, penguins_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("KSTUDIO_S3_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("KSTUDIO_S3_ACCESS_KEY", "a")
    monkeypatch.setenv("KSTUDIO_S3_SECRET_KEY", "b")
    run = train(tmp_path, examples.penguins_snapshot("s3://datasets/penguins.csv"))
    _assert_infrastructure_error(run, f"127.0.0.1:{port} unreachable")


def test_rejected_credentials_are_an_infrastructure_error(
    tmp_path: Path, penguins_csv: Path, minio_server: MinioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in minio_server.settings.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KSTUDIO_S3_SECRET_KEY", "not-the-secret")
    run = train(tmp_path, examples.penguins_snapshot(str(penguins_csv)), output="s3://models/x/y.ilearner")
    _assert_infrastructure_error(run, "access denied")
    assert "not-the-secret" not in json.dumps(run.term)


def test_storage_not_configured_is_an_infrastructure_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY", "CREDENTIALS_DIR"):
        monkeypatch.delenv(f"KSTUDIO_S3_{key}", raising=False)
    run = train(tmp_path, examples.penguins_snapshot("s3://datasets/penguins.csv"))
    _assert_infrastructure_error(run, "KSTUDIO_S3_ENDPOINT is not set")


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--run", "1"]) == 2
    assert "--snapshot" in capsys.readouterr().err
