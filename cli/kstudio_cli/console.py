"""`kstudio console`: the console with what it may not import itself, handed in here (the composition
root): the trainer's comparison renderer and the operator's promotion gate, both loaded on first use
(scikit-learn and matplotlib only once a comparison is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kstudio_core.evaluation import EvaluationReport


def render_comparison(named: Sequence[tuple[str, EvaluationReport]]) -> list[Any]:
    from kstudio_trainer.report_figures import render_comparison as render

    return list(render(named))


def gate_verdicts(a: dict[str, Any], b: dict[str, Any], services: list[dict[str, Any]]) -> list[str]:
    from kstudio_cli.report import gate_verdicts as verdicts

    return verdicts(a, b, services)


def console_main(argv: Sequence[str] | None = None) -> int:
    from kstudio_console.cli import main

    return main(argv, render=render_comparison, verdicts=gate_verdicts)
