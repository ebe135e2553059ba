"""The run-history chart of an Experiment: its headline metric per run, drawn by matplotlib (Agg, SVG).

Drawn on the server from the Experiment's status, never by hand and never by a script in the browser;
failed runs are marked on the axis so that a gap in the line has its reason next to it in the table.
Matplotlib is imported on first use (the console starts without it) and used through `Figure` only (no
pyplot state), so rendering in the server's worker threads is safe.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

SIZE = (7.0, 2.8)  # inches


def run_history_svg(metric: str, points: Sequence[tuple[int, float | None, str]]) -> bytes:
    """`points`: (run, value or None, phase), oldest first."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=SIZE)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.18, top=0.88)
    ax: Any = fig.add_subplot()
    done = [(run, value) for run, value, _ in points if value is not None]
    if done:
        ax.plot([r for r, _ in done], [v for _, v in done], marker="o", color="C0", label=metric)
        for run, value in done:
            ax.annotate(
                f"{value:.3f}",
                (run, value),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
            )
    failed = [run for run, value, phase in points if phase == "Failed" and value is None]
    if failed:
        bottom = min((v for _, v in done), default=0.0)
        ax.scatter(failed, [bottom] * len(failed), marker="x", color="C3", label="failed run", zorder=3)
    ax.set_xlabel("run")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per run")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if done or failed:
        ax.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "kstudio-console"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
