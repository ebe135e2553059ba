"""The HTML of evaluation reports: the pages `kstudio report` and `kstudio compare` write (one
self-contained file each: no script, no external reference; figures inline as `data:` images, so an SVG
can never run anything in the page), and the report's tables, which the console's run page shows too
(`report_sections`).

Every value from a report or a TrainedModel is escaped; the figures are the verified SVG bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from kstudio_core.evaluation import EvaluationReport

if TYPE_CHECKING:
    from kstudio_console.evaluations import ModelEvaluation

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.2rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.figures{display:flex;flex-wrap:wrap;gap:1rem}figure{margin:0;max-width:520px}
figure img{width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{color:#555}dd{margin:0}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}pre{background:#f7f7f7;padding:.8rem;overflow:auto}
.notes li{color:#8a5a00}
"""


def report_page(evaluation: ModelEvaluation) -> str:
    report = evaluation.report
    assert report is not None and evaluation.ref is not None
    spec = evaluation.model.get("spec") or {}
    source = spec.get("source") or {}
    facts = {
        "namespace": evaluation.model["metadata"].get("namespace", ""),
        "task": report.task,
        "label": report.label,
        "source": f"Experiment {source['experiment']}, run {source['run']}" if source else "imported",
        "artifact": (spec.get("artifact") or {}).get("uri", ""),
        "artifact sha256": (spec.get("artifact") or {}).get("sha256", ""),
        "report": evaluation.ref.uri,
        "report sha256": f"{evaluation.ref.sha256} (verified)",
        "rows": f"{report.rows.train} train, {report.rows.test} test",
    }
    metrics = evaluation.metrics or report.metrics
    body = [
        f"<h1>Evaluation of TrainedModel {escape(evaluation.name)}</h1>",
        "<dl>"
        + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts.items())
        + "</dl>",
        "<h2>Metrics (test split)</h2>",
        _table(["metric", "value"], [[k, _num(v)] for k, v in metrics.items()]),
        "<h2>Figures</h2>",
        _figures(
            (f.title, evaluation.figures[f.name]) for f in report.figures if f.name in evaluation.figures
        ),
        *report_sections(report),
    ]
    return _page(f"{evaluation.name}: evaluation", body)


def comparison_page(a: ModelEvaluation, b: ModelEvaluation, text: str, figures: Sequence[Any]) -> str:
    """`figures`: RenderedFigure-like objects (title, svg) drawn from both reports."""
    body = [
        f"<h1>{escape(a.name)} (A) vs {escape(b.name)} (B)</h1>",
        f"<pre>{escape(text)}</pre>",
        "<h2>Curves overlaid</h2>",
        _figures((f.title, f.svg) for f in figures) if figures else "<p>Neither model has a report.</p>",
    ]
    for evaluation in (a, b):
        if evaluation.report is not None:
            body.append(f"<h2>{escape(evaluation.name)}</h2>")
            body += report_sections(evaluation.report)
    return _page(f"{a.name} vs {b.name}", body)


def report_sections(report: EvaluationReport) -> list[str]:
    """The tables of a report: per class, thresholds, residuals, importance, sweep, class balance, notes."""
    out: list[str] = []
    cls = report.classification
    if cls is not None:
        out += [
            "<h2>Per class</h2>",
            _table(
                ["class", "precision", "recall", "F1", "support"],
                [[c.label, _num(c.precision), _num(c.recall), _num(c.f1), c.support] for c in cls.per_class],
            ),
        ]
        if cls.thresholds:
            out += [
                f"<h2>Thresholds (positive class {escape(str(cls.positive))})</h2>",
                "<details><summary>precision, recall, F1 and counts per threshold</summary>",
                _table(
                    ["threshold", "precision", "recall", "F1", "TP", "FP", "TN", "FN"],
                    [
                        [
                            _num(t.threshold),
                            _num(t.precision),
                            _num(t.recall),
                            _num(t.f1),
                            t.tp,
                            t.fp,
                            t.tn,
                            t.fn,
                        ]
                        for t in cls.thresholds
                    ],
                ),
                "</details>",
            ]
    reg = report.regression
    if reg is not None:
        out += [
            "<h2>Errors</h2>",
            f"<p>Residual (actual - predicted): mean {_num(reg.residual_mean)}, "
            f"standard deviation {_num(reg.residual_std)}.</p>",
            _table(
                ["quantile", "absolute error"],
                [[f"p{round(q.quantile * 100)}", _num(q.absolute_error)] for q in reg.error_quantiles],
            ),
            "<details><summary>Residual distribution</summary>",
            _table(
                ["residual from", "to", "rows"],
                [
                    [_num(reg.residuals.edges[i]), _num(reg.residuals.edges[i + 1]), n]
                    for i, n in enumerate(reg.residuals.counts)
                ],
            ),
            "</details>",
        ]
    if report.importance is not None:
        imp = report.importance
        out += [
            "<h2>Permutation importance</h2>",
            f"<p>Drop of {escape(imp.scoring)} when a column is shuffled ({imp.repeats} repeats, "
            f"{imp.rows} test rows).</p>",
            _table(["column", "mean", "std"], [[c.column, _num(c.mean), _num(c.std)] for c in imp.columns]),
        ]
    if report.sweep is not None:
        sweep = report.sweep
        out += [
            f"<h2>Sweep ({escape(sweep.metric)}, {sweep.folds}-fold cross-validation)</h2>",
            _table(
                ["rank", "parameters", "mean", "std"],
                [[t.rank, _params(t.params), _num(t.mean_score), _num(t.std_score)] for t in sweep.trials],
            ),
        ]
        if sweep.trials_total > len(sweep.trials):
            out.append(f"<p>The best {len(sweep.trials)} of {sweep.trials_total} combinations.</p>")
    if report.class_balance is not None:
        test = {str(c.label): c.count for c in report.class_balance.test}
        out += [
            "<h2>Class balance</h2>",
            _table(
                ["class", "train rows", "test rows"],
                [[c.label, c.count, test.get(str(c.label), 0)] for c in report.class_balance.train],
            ),
        ]
    if report.snapshot is not None:
        out += [
            "<h2>Experiment snapshot</h2>",
            f"<pre>{escape(json.dumps(report.snapshot, indent=2, sort_keys=True))}</pre>",
        ]
    if report.notes:
        out += [
            "<h2>Notes</h2>",
            '<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>",
        ]
    return out


def _page(title: str, body: list[str]) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _figures(figures: Iterable[tuple[str, bytes]]) -> str:
    items = [
        f'<figure><img alt="{escape(title)}" src="data:image/svg+xml;base64,{_base64(svg)}">'
        f"<figcaption>{escape(title)}</figcaption></figure>"
        for title, svg in figures
    ]
    return '<div class="figures">' + "".join(items) + "</div>" if items else "<p>No figures.</p>"


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _table(header: list[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    lines = ["<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _num(value: float) -> str:
    return f"{value:.4f}"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())
