"""The experiment snapshot the trainer reads (the contract itself is kstudio_core.snapshot).

`parse_snapshot(doc)` returns the typed spec or raises SpecError listing every problem found without the
data; problems that need the data are found by the data module.
"""

from __future__ import annotations

from typing import Any

from kstudio_core.snapshot import ExperimentSnapshot, Task, validate_snapshot
from kstudio_trainer.errors import SpecError

__all__ = ["ExperimentSnapshot", "Task", "parse_snapshot", "validate_snapshot"]


def parse_snapshot(doc: Any) -> ExperimentSnapshot:
    """The typed snapshot, or SpecError listing every problem."""
    problems = validate_snapshot(doc)
    if problems:
        raise SpecError(problems)
    return ExperimentSnapshot.model_validate(doc)
