"""Store a run's evaluation report next to its artifact: the figures first, then `evaluation.json` naming
each figure's sha256, so a reader that finds the report finds its figures (layout: kstudio_core.evaluation).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from kstudio_core import evaluation as ev
from kstudio_core.storage import ObjectStore, S3Uri

log = logging.getLogger("kstudio.train")


def with_figures(report: ev.EvaluationReport) -> tuple[ev.EvaluationReport, dict[str, bytes]]:
    """The report naming its figures, and the figures' bytes by file name. Drawing is best effort: a
    figure that cannot be drawn leaves a note, never a failed run (the numbers are all in the report)."""
    started = time.monotonic()
    try:
        from kstudio_trainer.report_figures import render_report  # matplotlib only when a report is written

        rendered = render_report(report)
    except Exception as exc:
        log.exception("evaluation figures not drawn")
        notes = [*report.notes, f"figures could not be drawn: {type(exc).__name__}: {exc}"]
        return report.model_copy(update={"notes": notes, "figures": []}), {}
    log.info("evaluation figures drawn in %.2fs", time.monotonic() - started)
    files = {f"{fig.name}.svg": fig.svg for fig in rendered}
    figures = [
        ev.Figure(
            name=fig.name,
            title=fig.title,
            file=f"{fig.name}.svg",
            sha256=hashlib.sha256(fig.svg).hexdigest(),
            size_bytes=len(fig.svg),
        )
        for fig in rendered
    ]
    return report.model_copy(update={"figures": figures}), files


def write_report(
    report: ev.EvaluationReport, artifact: S3Uri | Path, store: ObjectStore | None
) -> ev.EvaluationRef:
    """Draw the figures, store them and the report next to `artifact`; the reference for the run result.
    StorageError propagates (the caller maps it to an infrastructure failure)."""
    report, files = with_figures(report)
    body = report.encode()
    uri = ev.report_uri(str(artifact))
    if isinstance(artifact, Path):
        folder = Path(ev.report_folder(str(artifact)))
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / ev.REPORT_FILE).write_bytes(body)
        sha256 = hashlib.sha256(body).hexdigest()
    else:
        assert store is not None
        store.ensure_bucket(artifact.bucket)
        for name, data in files.items():
            store.put_bytes(data, ev.figure_uri(uri, name), content_type="image/svg+xml")
        sha256 = store.put_bytes(body, uri, content_type="application/json")
    log.info("evaluation report: %s (%d bytes, %d figures)", uri, len(body), len(files))
    return ev.EvaluationRef(uri=uri, sha256=sha256, size_bytes=len(body))
