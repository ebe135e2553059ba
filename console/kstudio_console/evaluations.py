"""A TrainedModel's evaluation as people see it: the verified report and figures, or why there is none,
and two models' numbers side by side with the deltas.

Shared by the console's pages and by `kstudio report` / `kstudio compare` (kstudio_cli.report), which
imports it from here. Nothing is shown before its sha256 matched: the report's bytes the one the
TrainedModel's status names, each figure's the one the (verified) report names (kstudio_core.evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kstudio_core.evaluation import (
    EvaluationError,
    EvaluationRef,
    EvaluationReport,
    read_figure,
    read_report,
)
from kstudio_core.storage import BucketNotFoundError, ObjectNotFoundError, StorageError
from kstudio_core.vocabulary import LOWER_IS_BETTER

# Draws figures from reports, overlaid when there are several: the trainer's render_comparison
# (kstudio_trainer.report_figures), handed in by the `kstudio` command; the console never imports the
# trainer. Each figure it returns has `name`, `title` and `svg` (bytes).
Renderer = Callable[[Sequence[tuple[str, EvaluationReport]]], list[Any]]


class NothingToShow(Exception):
    """The user asked for something that cannot be shown; the message says why (no traceback)."""


class Unreachable(Exception):
    """The cluster or the storage did not answer (retry later)."""


@dataclass
class ModelEvaluation:
    """A TrainedModel with its verified report (None when it has none) and the report's figures."""

    name: str
    model: dict[str, Any]
    ref: EvaluationRef | None = None
    report: EvaluationReport | None = None
    figures: dict[str, bytes] = field(default_factory=dict)  # figure name -> verified SVG bytes
    missing: str = ""  # why there is no report

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.model.get("status") or {})

    @property
    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in (self.status.get("metrics") or {}).items()}


def report_ref(model: Mapping[str, Any]) -> EvaluationRef:
    """The report a TrainedModel's status names; NothingToShow saying why there is none."""
    name = model["metadata"]["name"]
    status = model.get("status") or {}
    named = status.get("evaluation")
    if named:
        return EvaluationRef.model_validate(named)
    phase = status.get("phase") or "Pending"
    if phase != "Ready" and (model.get("spec") or {}).get("evaluation"):
        reason = f": {status.get('reason')}" if status.get("reason") else ""
        raise NothingToShow(
            f"TrainedModel {name} is {phase}{reason}; "
            "its evaluation report is shown once the model is verified"
        )
    raise NothingToShow(
        f"TrainedModel {name} has no evaluation report (imported, or trained without one): nothing to show"
    )


def load_evaluation(model: dict[str, Any], store: Any, *, required: bool = True) -> ModelEvaluation:
    """The model's report and figures, each verified by sha256. NothingToShow when there is no report
    (only if `required`) or when its bytes are not the ones named; Unreachable when storage fails."""
    evaluation = ModelEvaluation(name=model["metadata"]["name"], model=model)
    try:
        evaluation.ref = report_ref(model)
    except NothingToShow as exc:
        if required:
            raise
        evaluation.missing = str(exc)
        return evaluation
    try:
        evaluation.report = read_report(store, evaluation.ref)
        for figure in evaluation.report.figures:
            evaluation.figures[figure.name] = read_figure(store, evaluation.ref, figure)
    except EvaluationError as exc:
        raise NothingToShow(f"TrainedModel {evaluation.name}: {exc}") from exc
    except StorageError as exc:
        if isinstance(exc, ObjectNotFoundError | BucketNotFoundError):
            raise NothingToShow(
                f"TrainedModel {evaluation.name}: its evaluation report is gone: {exc}"
            ) from exc
        raise Unreachable(f"cannot read the evaluation report of {evaluation.name}: {exc}") from exc
    return evaluation


# --- comparing ----------------------------------------------------------------------------------------


def metric_rows(a: ModelEvaluation, b: ModelEvaluation) -> list[tuple[str, str, str, str]]:
    """(name, A, B, delta with which is better) for the status metrics, then the reports' own numbers."""
    rows = []
    for name in dict.fromkeys([*a.metrics, *b.metrics]):
        va, vb = a.metrics.get(name), b.metrics.get(name)
        rows.append((name, _fmt(name, va), _fmt(name, vb), _delta(name, va, vb)))
    for name, va, vb in _report_numbers(a.report, b.report):
        rows.append((name, _fmt(name, va), _fmt(name, vb), _delta(name, va, vb)))
    return rows


def _report_numbers(
    a: EvaluationReport | None, b: EvaluationReport | None
) -> list[tuple[str, float | None, float | None]]:
    def numbers(report: EvaluationReport | None) -> dict[str, float]:
        out: dict[str, float] = {}
        if report is None:
            return out
        out["train rows"] = report.rows.train
        out["test rows"] = report.rows.test
        if report.classification is not None:
            for roc in report.classification.roc:
                if roc.auc is not None:
                    out[f"auc {roc.positive}"] = roc.auc
            for pr in report.classification.precision_recall:
                if pr.average_precision is not None:
                    out[f"average precision {pr.positive}"] = pr.average_precision
        if report.regression is not None:
            out["residual std"] = report.regression.residual_std
            for q in report.regression.error_quantiles:
                out[f"abs error p{round(q.quantile * 100)}"] = q.absolute_error
        return out

    na, nb = numbers(a), numbers(b)
    return [(name, na.get(name), nb.get(name)) for name in dict.fromkeys([*na, *nb])]


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{int(value)}" if name.endswith(" rows") else f"{value:.4f}"


def _delta(name: str, a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return ""
    d = b - a
    if d == 0 or name.endswith(" rows"):
        return f"{d:+.4g}" if d else "0"
    lower = name in LOWER_IS_BETTER or name.startswith(("abs error", "residual std"))
    better = (d < 0) if lower else (d > 0)
    return f"{d:+.4f} ({'B better' if better else 'A better'})"
