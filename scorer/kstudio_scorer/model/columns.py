"""The model's input: its schema (one `Column` per input) and validated values, one array per column.

The protocols (protocols/request_columns.py) and file scoring (bes/file_scoring.py) build `Columns` from
what a caller sent; the served model (served_model.py) scores them; the micro-batcher (microbatch.py)
merges those of concurrent requests into one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from kstudio_core.ilearner import ColumnType


class ColumnSpecLike(Protocol):
    """What a schema needs of kstudio_core.ilearner.ColumnSpec."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> ColumnType: ...


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType


@dataclass
class Columns:
    """Validated input: one 1-D array per schema column, all of length `n_rows`."""

    arrays: dict[str, npt.NDArray[Any]]
    n_rows: int


def schema_of(specs: Sequence[ColumnSpecLike]) -> tuple[Column, ...]:
    return tuple(Column(s.name, s.type) for s in specs)


def concat(parts: Sequence[Columns]) -> Columns:
    """Merge the inputs of several requests (micro-batching), preserving order."""
    if len(parts) == 1:
        return parts[0]
    names = parts[0].arrays.keys()
    return Columns(
        {n: np.concatenate([p.arrays[n] for p in parts]) for n in names}, sum(p.n_rows for p in parts)
    )
