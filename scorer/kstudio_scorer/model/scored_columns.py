"""The scored columns a model answers with, named as Azure ML names them, and which of them an endpoint
returns (its output projection, Azure's "Project Columns").

Every protocol (protocols/) and file scoring (bes/file_scoring.py) render these names: classification
`Scored Labels` and `Scored Probabilities`, regression `Scored Values`; a transform answers with its
transformed columns, named by its manifest (`bill_length_mm`, `island_Biscoe`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SCORED_LABELS = "Scored Labels"
SCORED_PROBABILITIES = "Scored Probabilities"
SCORED_VALUES = "Scored Values"
SCORED_COLUMNS = {
    "classification": (SCORED_LABELS, SCORED_PROBABILITIES),
    "regression": (SCORED_VALUES,),
}


def probability_column(cls: Any) -> str:
    """The column of one class's probability, as classic's Score Model named it."""
    return f'Scored Probabilities for Class "{cls}"'


@dataclass(frozen=True)
class OutputProjection:
    columns: tuple[str, ...]
    include_inputs: bool = False

    @classmethod
    def for_task(
        cls,
        task: str,
        columns: Sequence[str] | None,
        include_inputs: bool,
        transformed: Sequence[str] = (),
    ) -> OutputProjection:
        """Validate configured columns against what the task produces (ValueError names the bad one). A
        transform's answer is all of its `transformed` columns."""
        if task == "transform":
            if columns:
                raise ValueError(
                    f"output columns {list(columns)} are scored columns; a transform answers with its "
                    "transformed columns (leave output.columns out)"
                )
            return cls(tuple(transformed), include_inputs)
        available = SCORED_COLUMNS[task]
        chosen = tuple(columns) if columns else available
        for c in chosen:
            if c not in available:
                raise ValueError(
                    f"output column {c!r} is not produced by a {task} model (choose from {list(available)})"
                )
        return cls(chosen, include_inputs)
