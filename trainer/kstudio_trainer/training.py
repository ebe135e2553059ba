"""One training run, without I/O: table + snapshot -> fitted pipeline, metrics, manifest."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from kstudio_core.evaluation import EvaluationReport
from kstudio_core.ilearner import ColumnSpec, IlearnerManifest
from kstudio_trainer.artifact_writer import framework_versions
from kstudio_trainer.data import TrainingData, prepare
from kstudio_trainer.errors import DataError
from kstudio_trainer.evaluation import build_report
from kstudio_trainer.metrics import evaluate
from kstudio_trainer.pipeline import build_pipeline
from kstudio_trainer.spec import ExperimentSnapshot
from kstudio_trainer.sweep import run_sweep

log = logging.getLogger("kstudio.train")


@dataclass
class TrainingOutcome:
    pipeline: Pipeline
    manifest: IlearnerManifest
    metrics: dict[str, float]
    schema: list[ColumnSpec]
    classes: list[Any]
    rows: dict[str, int]
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_params: dict[str, Any] | None = None
    sweep_metric: str | None = None
    seconds: float = 0.0
    evaluation: EvaluationReport | None = None


def train(
    frame: pd.DataFrame,
    spec: ExperimentSnapshot,
    snapshot: dict[str, Any],
    run: int | None,
    *,
    report: bool = True,
) -> TrainingOutcome:
    """Fit, evaluate on the held-out split, describe. Raises DataError/InputError for bad data.

    `report`: also compute the evaluation report (kstudio_trainer.evaluation) on the test split."""
    started = time.monotonic()
    data = prepare(frame, spec)
    log.info(
        "columns: %d numeric %s, %d categorical %s; label %r",
        len(data.plan.numeric),
        data.plan.numeric,
        len(data.plan.categorical),
        data.plan.categorical,
        spec.target,
    )
    x_train, x_test, y_train, y_test = _split(data, spec)
    log.info(
        "split: %d training rows, %d test rows (seed %d)", len(x_train), len(x_test), spec.evaluation.seed
    )

    pipeline = build_pipeline(spec, data.plan)
    trials: list[dict[str, Any]] = []
    best_params: dict[str, Any] | None = None
    sweep_metric: str | None = None
    if spec.sweep is not None:
        outcome = run_sweep(pipeline, spec, x_train, y_train)
        pipeline, trials, best_params, sweep_metric = (
            outcome.pipeline,
            outcome.trials,
            outcome.best_params,
            outcome.metric,
        )
    else:
        log.info(
            "fitting %s%s", spec.estimator.name, f" {spec.estimator.params}" if spec.estimator.params else ""
        )
        try:
            pipeline.fit(x_train, y_train)
        except ValueError as exc:
            raise DataError(f"training failed on this data: {exc}") from exc
    fitted_at = time.monotonic()
    log.info("fitted in %.2fs", fitted_at - started)

    metrics = evaluate(spec.task, spec.metric_names, pipeline, x_test, y_test)
    log.info("test metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()) or "(none defined)")
    classes = [_plain(c) for c in pipeline.classes_] if spec.task == "classification" else []
    evaluation = (
        _evaluation_report(pipeline, spec, y_train, x_test, y_test, metrics, run, trials, snapshot)
        if report
        else None
    )
    manifest = IlearnerManifest(
        task=spec.task,
        label=spec.target,
        inputSchema=data.schema,
        classes=classes,
        metrics=metrics,
        frameworks={**framework_versions(), "pandas": pd.__version__},
        experiment=snapshot,
        run=run,
    )
    return TrainingOutcome(
        pipeline=pipeline,
        manifest=manifest,
        metrics=metrics,
        schema=data.schema,
        classes=classes,
        rows={"train": len(x_train), "test": len(x_test), "droppedNoLabel": data.dropped_rows},
        trials=trials,
        best_params=best_params,
        sweep_metric=sweep_metric,
        seconds=round(time.monotonic() - started, 3),
        evaluation=evaluation,
    )


def _evaluation_report(
    pipeline: Pipeline,
    spec: ExperimentSnapshot,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    metrics: dict[str, float],
    run: int | None,
    trials: list[dict[str, Any]],
    snapshot: dict[str, Any],
) -> EvaluationReport | None:
    started = time.monotonic()
    try:
        built = build_report(
            pipeline,
            spec,
            y_train,
            x_test,
            y_test,
            metrics=metrics,
            run=run,
            trials=trials,
            snapshot=snapshot,
        )
    except Exception:
        # The model is good; a report that cannot be computed (an unforeseen shape of data) must not cost
        # the run. The traceback goes to the log, and the model simply has no report.
        log.exception("evaluation report not computed; the model is kept without one")
        return None
    log.info("evaluation report computed in %.2fs", time.monotonic() - started)
    return built


def _split(data: TrainingData, spec: ExperimentSnapshot) -> tuple[Any, Any, Any, Any]:
    frac = spec.evaluation.test_fraction
    n = len(data.y)
    n_test = max(1, round(n * frac))
    if n - n_test < 2:
        raise DataError(f"evaluation.testFraction {frac} leaves {n - n_test} training row(s) of {n}")
    stratify = None
    if spec.task == "classification":
        counts = data.y.value_counts()
        if counts.min() >= 2 and n_test >= len(counts):
            stratify = data.y
        else:
            log.info("split: not stratified (a class has fewer than 2 rows or the test split is too small)")
    x_train, x_test, y_train, y_test = train_test_split(
        data.x, data.y, test_size=n_test, random_state=spec.evaluation.seed, stratify=stratify
    )
    if spec.task == "classification" and y_train.nunique() < 2:
        raise DataError("the training split holds a single class; add data or lower evaluation.testFraction")
    return x_train, x_test, y_train, y_test


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
