"""`kstudio operator` in-process, with a heap report on SIGUSR1 (where the operator's memory goes).

Usage: .venv/bin/python bench/operator_heap.py --report PATH [--trace FRAMES] [--trim] [--profile SECONDS]
       -- <kstudio operator args>

Runs the same operator as `kstudio operator` (kstudio_operator.cli.main), optionally under tracemalloc
(`--trace N`: N frames per allocation; it slows the operator and roughly doubles its memory, so RSS
figures come from runs without it). Each SIGUSR1 writes a JSON report to PATH (then PATH.done):

  rss_mb, and the same after glibc's malloc_trim(0) when --trim is given (fragmentation the allocator
  can hand back); open file descriptors (API connections in flight); mallinfo2 (glibc arenas: in use,
  free, mmapped); Python's small-object allocator (sys._debugmallocstats: arenas, bytes in used and in
  free blocks); object counts by type (gc);
  asyncio tasks by coroutine; and with --trace, traced bytes by owner: each allocation is charged to
  the innermost frame in kopf, kstudio_operator, aiohttp or the standard library module that asked
  (tracing starts once the operator's modules are imported).

bench/scale_kit.Operator(heap=...) starts the operator this way; bench/operator_scale.py --heap prints
the reports. Dev tooling: never part of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

# Owners an allocation is charged to: the first of these path fragments found walking its traceback
# from the innermost frame outwards ("kopf/_core/engines/daemons.py" → kopf.daemons, ...).
OWNERS = (
    ("kstudio_operator/", "kstudio_operator"),
    ("kopf/", "kopf"),
    ("aiohttp/", "aiohttp"),
    ("prometheus_client/", "prometheus_client"),
    ("pydantic", "pydantic"),
)


def owner(frames: tracemalloc.Traceback) -> str:
    """'kopf/_core/engines/daemons.py' style name of the innermost frame in a library we care about,
    else the innermost frame's file."""
    for frame in frames:  # innermost first (tracemalloc's default order)
        for fragment, _ in OWNERS:
            if fragment in frame.filename:
                tail = frame.filename.split(fragment, 1)[1]
                return f"{fragment}{tail}:{frame.lineno}"
    first = frames[0]
    return f"{Path(first.filename).name}:{first.lineno}"


def owner_module(frames: tracemalloc.Traceback) -> str:
    return owner(frames).rsplit(":", 1)[0]


def mallinfo() -> dict[str, int]:
    """glibc mallinfo2(): arena (sbrk heap), hblkhd (mmapped), uordblks (in use), fordblks (free)."""

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost",
            )
        ]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    info = libc.mallinfo2()
    return {name: int(getattr(info, name)) for name, _ in Mallinfo2._fields_}


def pymalloc_stats() -> dict[str, int]:
    """sys._debugmallocstats's totals (it writes to the C stderr, hence the fd dance)."""
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    wanted = {
        "# arenas allocated current": "arenas_current",
        "# bytes in allocated blocks": "used_blocks",
        "# bytes in available blocks": "free_blocks",
        "# bytes lost to pool headers": "pool_headers",
        "# bytes lost to quantization": "quantization",
        "Total": "total",
    }
    out = {}
    for line in text.splitlines():
        for label, key in wanted.items():
            if line.startswith(label):
                out[key] = int(re.sub(r"[^0-9]", "", line.split("=", 1)[-1]) or 0)
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tasks_by_coroutine() -> dict[str, int]:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    tasks = asyncio.all_tasks(loop) if loop else set()
    if not tasks:  # the signal arrives outside a running loop's frame: find the tasks through gc
        tasks = {o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()}
    names = Counter(getattr(t.get_coro(), "__qualname__", type(t.get_coro()).__name__) for t in tasks)
    return dict(names.most_common(15))


def report(trim: bool) -> dict[str, Any]:
    gc.collect()
    out: dict[str, Any] = {"rss_mb": round(rss_mb(), 1), "mallinfo": mallinfo(), "pymalloc": pymalloc_stats()}
    out["open_fds"] = len(os.listdir("/proc/self/fd"))  # sockets: API connections in flight
    types = Counter(type(o).__qualname__ for o in gc.get_objects())
    out["gc_objects"] = sum(types.values())
    out["types"] = dict(types.most_common(25))
    out["tasks"] = tasks_by_coroutine()
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        out["traced_mb"] = round(current / 2**20, 1)
        out["traced_peak_mb"] = round(peak / 2**20, 1)
        stats = tracemalloc.take_snapshot().statistics("traceback")
        by_module: Counter[str] = Counter()
        by_line: Counter[str] = Counter()
        for stat in stats:
            by_module[owner_module(stat.traceback)] += stat.size
            by_line[owner(stat.traceback)] += stat.size
        out["traced_by_module_kb"] = {k: v // 1024 for k, v in by_module.most_common(25)}
        out["traced_by_line_kb"] = {k: v // 1024 for k, v in by_line.most_common(30)}
    if trim:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        out["rss_after_trim_mb"] = round(rss_mb(), 1)
    return out


def profile_for(seconds: float, out: Path) -> None:
    """cProfile the whole process (the event loop runs in this thread) for `seconds`, then write the top
    functions by own time and by cumulative time."""
    import cProfile
    import io
    import pstats
    import threading

    profiler = cProfile.Profile()
    profiler.enable()

    def stop(*_: Any) -> None:
        profiler.disable()
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        out.write_text(text.getvalue())

    # The timer thread only sets a flag the main thread acts on: cProfile profiles the thread that
    # enabled it, and must be disabled there.
    signal.signal(signal.SIGUSR2, stop)
    threading.Timer(seconds, lambda: os.kill(os.getpid(), signal.SIGUSR2)).start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, required=True, help="where SIGUSR1 writes the JSON report")
    parser.add_argument("--trace", type=int, default=0, help="tracemalloc frames (0: no tracing)")
    parser.add_argument("--trim", action="store_true", help="malloc_trim(0) after each report")
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="SECONDS",
        help="cProfile the first SECONDS; then write the top functions to REPORT.profile.txt",
    )
    parser.add_argument("operator_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    # Imported before tracing starts: tracemalloc makes imports ten times slower, and what they allocate is
    # the same for any number of objects (the "no objects" RSS).
    import kopf  # noqa: F401

    import kstudio_operator.main  # noqa: F401

    if args.trace:
        tracemalloc.start(args.trace)
    if args.profile:
        profile_for(args.profile, Path(f"{args.report}.profile.txt"))

    def dump(*_: Any) -> None:
        data = report(args.trim)
        args.report.write_text(json.dumps(data, indent=1))
        Path(f"{args.report}.done").touch()

    signal.signal(signal.SIGUSR1, dump)
    from kstudio_operator.cli import main as operator_main

    with contextlib.suppress(KeyboardInterrupt):
        return operator_main([a for a in args.operator_args if a != "--"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
