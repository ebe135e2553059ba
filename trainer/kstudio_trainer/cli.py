"""`kstudio train`: one run of an experiment snapshot -> .ilearner + result JSON (+ termination log).

    kstudio train --snapshot spec.json --run 3 --output s3://models/penguins/penguins-3.ilearner \
        [--result-file result.json] [--termination-log PATH] [--no-evaluation]

Exit codes: 0 trained; 2 the spec or the data is wrong (do not retry); 75 infrastructure failed (retry).
Storage settings come from KSTUDIO_S3_* (see kstudio_core.storage.StorageSettings.from_env).
Progress goes to stderr, one line per step; keys are never logged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from kstudio_core.evaluation import EvaluationRef
from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_OK, TERMINATION_LOG
from kstudio_core.ilearner import ArtifactDigest
from kstudio_core.runresult import ResultArtifact, RunResult, result_uri
from kstudio_core.storage import (
    BucketNotFoundError,
    ObjectNotFoundError,
    ObjectStore,
    S3Uri,
    StorageError,
    StorageSettings,
)
from kstudio_trainer.artifact_writer import write_ilearner
from kstudio_trainer.data import read_table, table_format
from kstudio_trainer.errors import (
    InfrastructureError,
    InputError,
    SpecError,
    TrainerError,
)
from kstudio_trainer.report_writer import write_report
from kstudio_trainer.spec import parse_snapshot
from kstudio_trainer.training import TrainingOutcome, train
from kstudio_trainer.transform import train_transform

log = logging.getLogger("kstudio.train")

TERMINATION_LOG_LIMIT = 4096


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kstudio train", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--snapshot", required=True, type=Path, help="experiment spec as JSON (or YAML)")
    p.add_argument("--run", required=True, type=int, help="run number (recorded in the manifest)")
    p.add_argument("--output", required=True, help="s3://bucket/key.ilearner or a local path")
    p.add_argument("--result-file", type=Path, help="also write the result JSON here")
    p.add_argument(
        "--termination-log",
        type=Path,
        help=f"where to write a short JSON summary (default {TERMINATION_LOG} if it exists)",
    )
    p.add_argument(
        "--no-evaluation",
        action="store_true",
        help="skip the evaluation report (evaluation.json and figures next to the artifact)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _configure_logging()
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    termination_log = args.termination_log or _default_termination_log()
    try:
        result = run(args)
    except TrainerError as exc:
        kind = "spec/data error (fix the experiment)" if isinstance(exc, InputError) else "error"
        if exc.exit_code == EXIT_INFRASTRUCTURE_ERROR:
            kind = "infrastructure error (retry)"
        log.error("%s: %s", kind, exc)
        _write_termination_log(
            termination_log,
            {"ok": False, "exitCode": exc.exit_code, "reason": exc.reason, "message": str(exc)},
        )
        return exc.exit_code
    except Exception as exc:  # a bug: say so, with the traceback in the log
        log.exception("internal error")
        _write_termination_log(
            termination_log, {"ok": False, "exitCode": 1, "reason": "InternalError", "message": repr(exc)}
        )
        return 1
    _write_termination_log(
        termination_log,
        {
            "ok": True,
            "uri": result.artifact.uri,
            "sha256": result.artifact.sha256,
            "sizeBytes": result.artifact.size_bytes,
            "metrics": result.metrics,
        },
    )
    return EXIT_OK


def run(args: argparse.Namespace) -> RunResult:
    """The run itself; raises TrainerError subclasses. Returns the result document."""
    snapshot = load_snapshot(args.snapshot)
    spec = parse_snapshot(snapshot)
    output = _output_target(args.output)
    dataset_uri = spec.dataset.uri
    needs_store = dataset_uri.startswith("s3://") or isinstance(output, S3Uri)
    store = _store() if needs_store else None
    log.info(
        "run %d: %s (%s, label %r) on %s -> %s",
        args.run,
        spec.algorithm.name if spec.algorithm else "preprocessing",
        spec.task,
        spec.label,
        dataset_uri,
        output,
    )
    with tempfile.TemporaryDirectory(prefix="kstudio-train-") as tmp:
        work = Path(tmp)
        fmt = table_format(dataset_uri, spec.dataset.format)
        local = _fetch_dataset(store, dataset_uri, work / f"dataset.{fmt}")
        frame = read_table(local, fmt, dataset_uri)
        log.info("read %d rows x %d columns (%s)", len(frame), len(frame.columns), fmt)
        if spec.task == "transform":
            outcome = train_transform(frame, spec, snapshot, args.run)  # nothing to evaluate
        else:
            outcome = train(frame, spec, snapshot, args.run, report=not args.no_evaluation)
        artifact_path = work / "model.ilearner"
        digest = write_ilearner(artifact_path, outcome.pipeline, outcome.manifest)
        log.info("artifact: %d bytes, sha256 %s", digest.size_bytes, digest.sha256)
        result = result_document(outcome, str(output), digest)
        if outcome.evaluation is not None:
            result.evaluation = _write_evaluation(outcome, output, store)
        body = result.to_json()
        _publish(store, output, artifact_path, digest, body)
    if args.result_file:
        args.result_file.parent.mkdir(parents=True, exist_ok=True)
        args.result_file.write_bytes(body)
    log.info("done: %s", ", ".join(f"{k}={v:.4f}" for k, v in outcome.metrics.items()))
    return result


def load_snapshot(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read snapshot {path}: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputError(
            f"snapshot {path} is not valid {'YAML' if path.suffix != '.json' else 'JSON'}: {exc}"
        ) from exc
    if isinstance(doc, dict) and doc.get("kind") == "Experiment" and isinstance(doc.get("spec"), dict):
        doc = doc["spec"]  # a whole Experiment manifest: use its spec
    if not isinstance(doc, dict):
        raise SpecError([f"snapshot must be a JSON object, got {type(doc).__name__}"])
    return doc


def result_document(outcome: TrainingOutcome, uri: str, digest: ArtifactDigest) -> RunResult:
    """The result the operator reads (`result_uri(<output>)`)."""
    return RunResult(
        artifact=ResultArtifact(uri=uri, sha256=digest.sha256, size_bytes=digest.size_bytes),
        task=outcome.manifest.task,
        label=outcome.manifest.label,
        run=outcome.manifest.run,
        metrics=outcome.metrics,
        input_schema=outcome.schema,
        classes=outcome.classes,
        trials=outcome.trials,
        best_params=outcome.best_params,
        sweep_metric=outcome.sweep_metric,
        rows=outcome.rows,
        frameworks=outcome.manifest.frameworks,
        training_seconds=outcome.seconds,
        created_at=outcome.manifest.createdAt,
    )


def _output_target(text: str) -> S3Uri | Path:
    if text.startswith("s3://"):
        try:
            return S3Uri.parse(text)
        except ValueError as exc:
            raise InputError(f"--output: {exc}") from exc
    if "://" in text:
        raise InputError(f"--output must be s3://bucket/key or a local path, got {text!r}")
    return Path(text)


def _store() -> ObjectStore:
    try:
        return ObjectStore(StorageSettings.from_env())
    except StorageError as exc:
        raise InfrastructureError(f"object storage is not configured: {exc}") from exc


def _fetch_dataset(store: ObjectStore | None, uri: str, target: Path) -> Path:
    if not uri.startswith("s3://"):
        return Path(uri)
    assert store is not None
    try:
        parsed = S3Uri.parse(uri)
    except ValueError as exc:
        raise InputError(f"dataset.uri: {exc}") from exc
    try:
        sha = store.download(parsed, target)
    except (ObjectNotFoundError, BucketNotFoundError) as exc:
        raise InputError(f"dataset {uri} does not exist ({exc})") from exc
    except StorageError as exc:
        raise InfrastructureError(f"cannot download dataset: {exc}") from exc
    log.info("downloaded %s (%d bytes, sha256 %s)", uri, target.stat().st_size, sha)
    return target


def _publish(
    store: ObjectStore | None, output: S3Uri | Path, artifact: Path, digest: ArtifactDigest, body: bytes
) -> None:
    # The result is written after the artifact, so a reader that sees the result finds the artifact.
    if isinstance(output, Path):
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact, output)
        Path(result_uri(str(output))).write_bytes(body)
        log.info("wrote %s and %s", output, result_uri(str(output)))
        return
    assert store is not None
    try:
        store.ensure_bucket(output.bucket)
        uploaded = store.upload(artifact, output)
        if uploaded != digest.sha256:
            raise InfrastructureError(f"artifact changed while uploading: {uploaded} != {digest.sha256}")
        store.put_bytes(body, result_uri(str(output)), content_type="application/json")
    except StorageError as exc:
        raise InfrastructureError(f"cannot upload the artifact: {exc}") from exc
    log.info("uploaded %s and %s", output, result_uri(str(output)))


def _write_evaluation(
    outcome: TrainingOutcome, output: S3Uri | Path, store: ObjectStore | None
) -> EvaluationRef:
    # Stored before the artifact and the result: a reader that finds the result finds the report.
    assert outcome.evaluation is not None
    try:
        return write_report(outcome.evaluation, output, store)
    except StorageError as exc:
        raise InfrastructureError(f"cannot upload the evaluation report: {exc}") from exc


def _default_termination_log() -> Path | None:
    path = Path(TERMINATION_LOG)
    # Only inside a pod, where Kubernetes provides the file; never create it on a workstation.
    return path if path.is_file() and os.access(path, os.W_OK) else None


def _write_termination_log(path: Path | None, summary: dict[str, Any]) -> None:
    if path is None:
        return
    try:
        path.write_text(termination_summary(summary))
    except OSError as exc:
        log.warning("cannot write termination log %s: %s", path, exc.strerror or exc)


def termination_summary(summary: dict[str, Any]) -> str:
    """Compact JSON under TERMINATION_LOG_LIMIT bytes: metrics dropped first, then the message shortened."""
    text = json.dumps(summary, separators=(",", ":"))
    if len(text.encode()) <= TERMINATION_LOG_LIMIT:
        return text
    summary = {k: v for k, v in summary.items() if k != "metrics"}
    message = str(summary.get("message", ""))
    keep = len(message)
    while True:
        text = json.dumps(summary, separators=(",", ":"))
        if len(text.encode()) <= TERMINATION_LOG_LIMIT or keep == 0:
            return text
        keep = keep * 3 // 4
        summary["message"] = message[:keep] + "..."


def _configure_logging() -> None:
    root = logging.getLogger("kstudio")
    if not any(getattr(h, "_kstudio", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
        handler._kstudio = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
