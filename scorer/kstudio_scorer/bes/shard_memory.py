"""What keeps a BatchJob shard's process small: peak RSS per pod flat in the input's size and under 300 MB
(issue 20; the figures before and after are in bench/README.md, "BatchJob at scale").

Where a shard's memory went, measured on one LR shard over CSV (VmHWM): ~100 MB of imports without
scikit-learn (numpy, pyarrow, pydantic, minio), ~90 MB more for scikit-learn and the scipy it imports,
~45 MB for pandas, and ~80-130 MB while scoring, of which arrow itself held at most 20 MB at a time. So:

- pandas is hidden (`pandas_hidden`) while scikit-learn is imported and while the shard scores. Both
  scikit-learn (sklearn.utils.fixes) and pyarrow (its first `pa.array()`, to recognise pandas objects)
  import it when it is installed, and neither uses it on the numpy arrays and arrow batches a shard hands
  them; scikit-learn recognises DataFrames through sys.modules, so pandas imported later still works. A
  model fitted on a DataFrame imports pandas itself, at its warm-up (ScoringModel.model_input), between
  the two windows: then pandas is loaded and hiding it is a no-op. So does any model whose prediction
  imports pandas: the warm-up prediction runs the same path before the scoring window opens.
- arrow allocates from the system allocator (`release_freed_memory`), not mimalloc, which keeps freed
  pages of every chunk's buffers mapped;
- glibc's mmap threshold is fixed: by default it rises (up to 32 MiB) each time a large block is freed,
  after which each chunk's buffers (a few MiB) come from the heap, which does not shrink, instead of being
  mapped and returned on free;
- the chunks themselves are small (ShardSettings' defaults: 1 MiB of CSV, 16,384 Parquet rows, 1 MiB of
  column chunk read at a time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

# glibc's mallopt parameter number for the mmap threshold (malloc.h: M_MMAP_THRESHOLD), and the value:
# glibc's own starting threshold, kept instead of rising.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


class _PandasHider(importlib.abc.MetaPathFinder):
    """Answers every import of pandas with ModuleNotFoundError, as if it were not installed. (A None in
    sys.modules does not do: pyarrow's Cython import takes the None for the module.)"""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden in a shard)", name=fullname)
        return None


@contextmanager
def pandas_hidden() -> Iterator[None]:
    """`import pandas` fails inside, unless pandas is imported already.

    Only for a single-threaded moment or threads that never import pandas: the shard's upload thread
    (minio, urllib3) does not."""
    if "pandas" in sys.modules:
        yield
        return
    hider = _PandasHider()
    sys.meta_path.insert(0, hider)
    try:
        yield
    finally:
        sys.meta_path.remove(hider)


def release_freed_memory() -> None:
    """Arrow on the system allocator and glibc's mmap threshold fixed (see the module's docstring)."""
    pa.set_memory_pool(pa.system_memory_pool())
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):  # glibc; musl and others have no such knob and need none
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
