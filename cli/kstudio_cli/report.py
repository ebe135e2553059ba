"""`kstudio report MODEL` and `kstudio compare MODEL_A MODEL_B`: a TrainedModel's evaluation, for people.

    kstudio report penguins-3 [-n NAMESPACE] [-o penguins-3.html]
    kstudio compare penguins-2 penguins-3 [-n NAMESPACE] [-o compare.html]

Both read the TrainedModels from the cluster (KUBECONFIG, or ~/.kube/config) and their reports from
object storage (KSTUDIO_S3_* as for `kstudio train`). A report is shown only after the sha256 of its bytes
matched the one the TrainedModel's status names, and each figure's the one the report names.

`report` writes one self-contained HTML file (figures inline). `compare` prints both models' metrics side
by side with the deltas (B - A) and, when both come from the Experiment a WebService follows, that
service's promotion gate's verdict (the operator's own `gate`), and writes an HTML file with the curves
of both overlaid (drawn from the two reports by scikit-learn's display API, kstudio_trainer.report_figures).

Exit codes (kstudio_core.exitcodes): 0 written; 2 nothing to show (unknown model, no report, sha256
mismatch, unreadable report); 75 the cluster or the storage could not be reached (retry).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kstudio_console import report_html
from kstudio_console.evaluations import (
    ModelEvaluation,
    NothingToShow,
    Renderer,
    Unreachable,
    load_evaluation,
    metric_rows,
)
from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_INPUT_ERROR, EXIT_OK
from kstudio_core.storage import ObjectStore, StorageError, StorageSettings
from kstudio_operator.constants import GROUP_VERSION, TRAINED_MODELS, WEB_SERVICES
from kstudio_operator.decisions.webservice import gate

# --- comparing ----------------------------------------------------------------------------------------


def gate_verdicts(a: dict[str, Any], b: dict[str, Any], services: list[dict[str, Any]]) -> list[str]:
    """What each WebService following the models' Experiment would decide with B as the candidate and A
    served: the operator's `gate` on the same status metrics it reads."""
    experiment = ((a.get("spec") or {}).get("source") or {}).get("experiment")
    if not experiment or ((b.get("spec") or {}).get("source") or {}).get("experiment") != experiment:
        return []
    a_name, b_name = a["metadata"]["name"], b["metadata"]["name"]
    verdicts = []
    for service in services:
        follow = (service.get("spec") or {}).get("modelFrom") or {}
        if follow.get("experiment") != experiment:
            continue
        name = service["metadata"]["name"]
        rule = follow.get("promote")
        if not rule:
            verdicts.append(f"WebService {name} follows {experiment}'s latest model without a gate")
            continue
        metric = str(rule["metric"])
        served = (a.get("status") or {}).get("metrics", {}).get(metric)
        candidate = (b.get("status") or {}).get("metrics", {}).get(metric)
        promote, why = gate(
            metric,
            float(rule.get("minDelta", 0.0)),
            None if served is None else float(served),
            None if candidate is None else float(candidate),
            rule.get("direction"),
        )
        word = "would promote" if promote else "would refuse"
        verdicts.append(f"WebService {name} gate: {word} {b_name} over {a_name}: {why}")
    return verdicts


def comparison_text(a: ModelEvaluation, b: ModelEvaluation, verdicts: list[str]) -> str:
    rows = [("metric", f"A {a.name}", f"B {b.name}", "B - A"), *metric_rows(a, b)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for evaluation in (a, b):
        if evaluation.missing:
            lines.append(f"note: {evaluation.missing}")
    lines += verdicts or ["no WebService follows an Experiment both models come from: no gate to apply"]
    return "\n".join(lines)


# --- commands -----------------------------------------------------------------------------------------


def write_report(evaluation: ModelEvaluation, output: Path) -> None:
    output.write_text(report_html.report_page(evaluation), encoding="utf-8")


def write_comparison(
    a: ModelEvaluation, b: ModelEvaluation, text: str, output: Path, render: Renderer | None = None
) -> None:
    named = [(e.name, e.report) for e in (a, b) if e.report is not None]
    if render is None:
        from kstudio_trainer.report_figures import render_comparison  # matplotlib only here

        render = render_comparison
    figures = render(named) if named else []
    output.write_text(report_html.comparison_page(a, b, text, figures), encoding="utf-8")


def report_main(argv: Sequence[str] | None = None) -> int:
    p = _parser("kstudio report", "write a TrainedModel's evaluation report as one HTML file")
    p.add_argument("model", help="TrainedModel name")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    def act(models: list[dict[str, Any]], _services: list[dict[str, Any]], store: Any) -> None:
        evaluation = load_evaluation(models[0], store)
        output = args.output or Path(f"{evaluation.name}.report.html")
        write_report(evaluation, output)
        print(f"wrote {output} ({len(evaluation.figures)} figures)")

    return _run(args, [args.model], act, with_services=False)


def compare_main(argv: Sequence[str] | None = None) -> int:
    p = _parser("kstudio compare", "compare two TrainedModels: metrics side by side, curves overlaid")
    p.add_argument("model_a", help="TrainedModel A (the one served, for the gate)")
    p.add_argument("model_b", help="TrainedModel B (the candidate)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    def act(models: list[dict[str, Any]], services: list[dict[str, Any]], store: Any) -> None:
        a, b = (load_evaluation(m, store, required=False) for m in models)
        text = comparison_text(a, b, gate_verdicts(a.model, b.model, services))
        output = args.output or Path(f"compare-{a.name}-{b.name}.html")
        write_comparison(a, b, text, output)
        print(text)
        print(f"wrote {output}")

    return _run(args, [args.model_a, args.model_b], act, with_services=True)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)")
    p.add_argument("-o", "--output", type=Path, help="HTML file to write")
    return p


Action = Callable[[list[dict[str, Any]], list[dict[str, Any]], Any], None]


def _run(args: argparse.Namespace, names: list[str], act: Action, *, with_services: bool) -> int:
    try:
        models, services = asyncio.run(_read_cluster(args.namespace, names, with_services))
        act(models, services, _store())
    except NothingToShow as exc:
        print(f"kstudio: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except Unreachable as exc:
        print(f"kstudio: {exc}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE_ERROR
    return EXIT_OK


def _store() -> ObjectStore:
    try:
        return ObjectStore(StorageSettings.from_env())
    except StorageError as exc:
        raise Unreachable(f"object storage is not configured (KSTUDIO_S3_*): {exc}") from exc


async def _read_cluster(
    namespace: str | None, names: list[str], with_services: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The named TrainedModels (NothingToShow for an unknown one) and the namespace's WebServices."""
    import kopf  # the CLI reads the cluster as the operator does: the same login, the operator's client

    from kstudio_core.kubelogin import cluster_credentials
    from kstudio_operator.kube import ApiError, Kube, resource_path

    try:
        info = cluster_credentials()
    except (OSError, ValueError, kopf.LoginError) as exc:
        raise Unreachable(f"cannot read the kubeconfig: {exc}") from exc
    if info is None:
        raise Unreachable("no cluster: set KUBECONFIG (or write ~/.kube/config)")
    ns = namespace or info.default_namespace or "default"
    kube = Kube(info, timeout=30)
    try:
        models = []
        for name in names:
            found = await kube.get(GROUP_VERSION, TRAINED_MODELS, ns, name)
            if found is None:
                raise NothingToShow(f"TrainedModel {name} not found in namespace {ns}")
            models.append(found)
        services: list[dict[str, Any]] = []
        if with_services:
            listed = await kube.request("GET", resource_path(GROUP_VERSION, WEB_SERVICES, ns))
            services = list(listed.get("items") or [])
    except ApiError as exc:
        raise Unreachable(f"cannot read from the cluster: {exc}") from exc
    finally:
        await kube.close()
    return models, services
