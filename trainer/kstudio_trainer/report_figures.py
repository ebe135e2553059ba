"""SVG figures of evaluation reports, drawn by scikit-learn's display API on matplotlib's Agg backend.

Everything is drawn from the report's data (kstudio_core.evaluation), never from the model or the
dataset, so the trainer (one report, at training time) and the CLI (two reports overlaid, `kstudio
compare`) draw the same pictures from the same numbers. The display classes take precomputed values
(`RocCurveDisplay(fpr=..., tpr=...)`), which is what makes that possible; nothing here draws by hand.

Matplotlib is used through `matplotlib.figure.Figure` (no pyplot state), so rendering is safe in any
thread of a server; SVGs are deterministic for the same report (fixed hash salt, no date), which keeps
a figure's sha256 stable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # non-interactive: no display, no GUI toolkit, before anything imports pyplot

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    PredictionErrorDisplay,
    RocCurveDisplay,
)

from kstudio_core.evaluation import EvaluationReport

SIZE = (6.0, 4.5)  # inches; at 100 dpi the SVG's nominal size is 600x450
# Text as text (small, searchable); a fixed salt for the ids, so the same report gives the same bytes.
_SVG_STYLE: dict[Any, Any] = {"svg.fonttype": "none", "svg.hashsalt": "kstudio"}
# The tab10 palette, so overlaid curves of two models stay apart.
_COLORS = [f"C{i}" for i in range(10)]


@dataclass(frozen=True)
class RenderedFigure:
    name: str  # also the file name: <name>.svg
    title: str
    svg: bytes


def render_report(report: EvaluationReport) -> list[RenderedFigure]:
    """The figures of one report: confusion matrix, ROC, precision/recall, calibration (classification);
    predicted vs actual and residuals (regression). Parts absent from the report give no figure."""
    return render_comparison([("", report)])


def render_comparison(named: Sequence[tuple[str, EvaluationReport]]) -> list[RenderedFigure]:
    """The same figures with every report's curves overlaid (`name` labels its curves; "" for a single
    report). The confusion matrix is per report."""
    figures: list[RenderedFigure] = []
    for name, report in named:
        if report.classification is not None:
            figures.append(_confusion_matrix(name, report))
    figures += [f for f in (_roc(named), _precision_recall(named), _calibration(named)) if f is not None]
    figures += [f for f in (_prediction_error(named, "actual_vs_predicted"),) if f is not None]
    figures += [f for f in (_prediction_error(named, "residual_vs_predicted"),) if f is not None]
    return figures


def _svg(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    with matplotlib.rc_context(_SVG_STYLE):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _new_axes() -> tuple[Figure, Any]:
    # Fixed margins rather than a layout engine: constrained layout doubled the cost of saving a figure.
    fig = Figure(figsize=SIZE)
    fig.subplots_adjust(left=0.13, right=0.96, bottom=0.12, top=0.92)
    return fig, fig.add_subplot()


def _name(owner: str, positive: Any, binary: bool) -> str:
    """Legend text of a curve: the model (when comparing) and, one-vs-rest, its class."""
    parts = [owner] if owner else []
    if not binary or not owner:
        parts.append(str(positive))
    return " · ".join(parts)


def _suffix(owner: str) -> str:
    return "_" + "".join(ch if ch.isalnum() else "_" for ch in owner.lower()) if owner else ""


def _confusion_matrix(owner: str, report: EvaluationReport) -> RenderedFigure:
    assert report.classification is not None
    matrix = report.classification.confusion_matrix
    fig, ax = _new_axes()
    ConfusionMatrixDisplay(
        confusion_matrix=np.asarray(matrix.counts), display_labels=[str(x) for x in matrix.labels]
    ).plot(ax=ax, colorbar=True, xticks_rotation="vertical" if len(matrix.labels) > 6 else "horizontal")
    title = "Confusion matrix (test split)" + (f": {owner}" if owner else "")
    ax.set_title(title)
    return RenderedFigure("confusion_matrix" + _suffix(owner), title, _svg(fig))


def _curves(named: Sequence[tuple[str, EvaluationReport]], field: str) -> list[tuple[str, Any, bool]]:
    out = []
    for owner, report in named:
        if report.classification is None:
            continue
        binary = report.classification.classes_total == 2
        for curve in getattr(report.classification, field):
            out.append((owner, curve, binary))
    return out


def _styles(n: int) -> list[dict[str, Any]]:
    # Solid lines: the displays draw several curves dashed and faded by default (as for CV folds).
    return [
        {"color": _COLORS[i % len(_COLORS)], "linewidth": 1.5, "linestyle": "-", "alpha": 1.0}
        for i in range(n)
    ]


def _roc(named: Sequence[tuple[str, EvaluationReport]]) -> RenderedFigure | None:
    curves = _curves(named, "roc")
    if not curves:
        return None
    fig, ax = _new_axes()
    RocCurveDisplay(
        fpr=[np.asarray(c.fpr) for _, c, _ in curves],
        tpr=[np.asarray(c.tpr) for _, c, _ in curves],
        roc_auc=[c.auc for _, c, _ in curves] if all(c.auc is not None for _, c, _ in curves) else None,
        name=[_name(owner, c.positive, binary) for owner, c, binary in curves],
    ).plot(ax=ax, curve_kwargs=_styles(len(curves)), plot_chance_level=True)
    title = "ROC curve" + (" (one-vs-rest)" if not all(b for _, _, b in curves) else "")
    ax.set_title(title)
    return RenderedFigure("roc", title, _svg(fig))


def _precision_recall(named: Sequence[tuple[str, EvaluationReport]]) -> RenderedFigure | None:
    curves = _curves(named, "precision_recall")
    if not curves:
        return None
    fig, ax = _new_axes()
    scores = [c.average_precision for _, c, _ in curves]
    PrecisionRecallDisplay(
        precision=[np.asarray(c.precision) for _, c, _ in curves],
        recall=[np.asarray(c.recall) for _, c, _ in curves],
        average_precision=scores if all(s is not None for s in scores) else None,
        name=[_name(owner, c.positive, binary) for owner, c, binary in curves],
    ).plot(ax=ax, curve_kwargs=_styles(len(curves)))
    title = "Precision / recall" + (" (one-vs-rest)" if not all(b for _, _, b in curves) else "")
    ax.set_title(title)
    return RenderedFigure("precision_recall", title, _svg(fig))


def _calibration(named: Sequence[tuple[str, EvaluationReport]]) -> RenderedFigure | None:
    curves = _curves(named, "calibration")
    if not curves:
        return None
    fig, ax = _new_axes()
    for i, ((owner, curve, binary), style) in enumerate(zip(curves, _styles(len(curves)), strict=True)):
        # y_prob is only kept on the display for the caller; the plot is drawn from the binned curve.
        CalibrationDisplay(np.asarray(curve.prob_true), np.asarray(curve.prob_pred), np.asarray([])).plot(
            ax=ax, name=_name(owner, curve.positive, binary), ref_line=i == 0, **style
        )
    ax.set_title("Calibration (test split)")
    return RenderedFigure("calibration", "Calibration (test split)", _svg(fig))


def _prediction_error(named: Sequence[tuple[str, EvaluationReport]], kind: str) -> RenderedFigure | None:
    samples = [(owner, r.regression.sample) for owner, r in named if r.regression and r.regression.sample]
    if not samples:
        return None
    fig, ax = _new_axes()
    colors = _styles(len(samples))
    for i, (owner, sample) in enumerate(samples):
        assert sample is not None
        PredictionErrorDisplay(y_true=np.asarray(sample.actual), y_pred=np.asarray(sample.predicted)).plot(
            ax=ax,
            kind=kind,
            scatter_kwargs={"color": colors[i]["color"], "alpha": 0.6, "label": owner or None},
            line_kwargs={} if i == 0 else {"alpha": 0.0},
        )
    if any(owner for owner, _ in samples):
        ax.legend()
    if kind == "actual_vs_predicted":
        title, name = "Predicted vs actual (test sample)", "actual_vs_predicted"
    else:
        title, name = "Residuals vs predicted (test sample)", "residuals"
    ax.set_title(title)
    return RenderedFigure(name, title, _svg(fig))
