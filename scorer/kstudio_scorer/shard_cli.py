"""`kstudio score-shard`: one pod of a BatchJob's Indexed Job scores its shard (bes/shard_scoring.py).

The operator sets kstudio_core.environment.ShardEnv on the pod (read here as ShardSettings: the plan's
URI, the model and its sha256, storage) and the Job controller sets JOB_COMPLETION_INDEX. The model is
downloaded and its sha256 checked before anything in it is read, as `kstudio serve` does (model/).

Exit codes (kstudio_core.exitcodes), which the Job's podFailurePolicy reads: 0 the part and the result are
written; 2 the input, the model or the plan is wrong (a missing column, too many bad rows, a digest
mismatch): this shard fails without retry, and so does the job; 75 object storage failed: retried. The
reason goes to the termination log as {"ok": false, "exitCode", "reason", "message"}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kstudio_core.batch import JOB_COMPLETION_INDEX, BatchPlan
from kstudio_core.environment import ENV_PREFIX
from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_INPUT_ERROR, EXIT_OK, TERMINATION_LOG
from kstudio_core.ilearner import SHA256_HEX
from kstudio_core.storage import (
    BucketNotFoundError,
    ObjectNotFoundError,
    ObjectStore,
    StorageError,
    StorageSettings,
)

log = logging.getLogger("kstudio.shard")
MAX_PLAN_BYTES = 64 * 1024 * 1024


class ShardSettings(BaseSettings):
    """The shard pod's KSTUDIO_* variables (ShardEnv's fields, and tuning knobs with defaults)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    batch_plan_uri: str = Field(description="s3:// URI of the plan the operator wrote")
    model_uri: str
    model_sha256: str
    model_dir: Path = Field(default_factory=lambda: Path(tempfile.gettempdir()) / "kstudio-model")
    max_model_bytes: int | None = Field(None, gt=0)
    pod_name: str = Field(default_factory=socket.gethostname)
    # Small chunks keep the pod small at no cost in rows/s (bes/shard_memory.py; ShardLimits' defaults).
    shard_csv_block_bytes: int = Field(1024 * 1024, ge=64 * 1024)
    shard_chunk_rows: int = Field(16_384, gt=0)
    shard_parquet_buffer_bytes: int = Field(1024 * 1024, ge=64 * 1024)

    @field_validator("model_sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.match(SHA256_HEX, value):
            raise ValueError("must be a sha256 digest: 64 hexadecimal characters")
        return value


class ShardFailure(Exception):
    def __init__(self, exit_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.reason = reason
        self.message = message


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kstudio score-shard", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--index", type=int, help=f"the shard to score (default: ${JOB_COMPLETION_INDEX})")
    p.add_argument("--termination-log", type=Path, help=f"where to write why it stopped ({TERMINATION_LOG})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    # The pod's termination log exists in a container only; elsewhere stderr says it all.
    default_log = Path(TERMINATION_LOG)
    termination_log = args.termination_log or (default_log if default_log.exists() else None)
    try:
        summary = run(args.index)
    except ShardFailure as exc:
        log.error("%s: %s", exc.reason, exc.message)
        _write_summary(
            termination_log,
            {"ok": False, "exitCode": exc.exit_code, "reason": exc.reason, "message": exc.message},
        )
        return exc.exit_code
    except Exception as exc:  # a bug: say so, with the traceback in the log; the Job retries it
        log.exception("internal error")
        _write_summary(
            termination_log, {"ok": False, "exitCode": 1, "reason": "InternalError", "message": repr(exc)}
        )
        return 1
    _write_summary(termination_log, summary)
    return EXIT_OK


def run(index: int | None) -> dict[str, object]:
    """Score one shard; returns the termination summary. Raises ShardFailure with the exit code."""
    from kstudio_scorer.bes.shard_input import ShardInputError
    from kstudio_scorer.bes.shard_memory import pandas_hidden, release_freed_memory
    from kstudio_scorer.bes.shard_scoring import ShardLimits, ShardScorer
    from kstudio_scorer.model.artifact import import_model_libraries
    from kstudio_scorer.model.served_model import ModelLoadError, ScoringModel
    from kstudio_scorer.settings import ScorerSettings

    release_freed_memory()
    with pandas_hidden():  # scikit-learn would import it (shard_memory.py says why it need not)
        import_model_libraries()

    try:
        settings = ShardSettings()
    except ValidationError as exc:
        raise ShardFailure(EXIT_INPUT_ERROR, "InvalidConfiguration", _describe(exc)) from exc
    if index is None:
        try:
            index = int(os.environ[JOB_COMPLETION_INDEX])
        except (KeyError, ValueError):
            raise ShardFailure(
                EXIT_INPUT_ERROR, "InvalidConfiguration", f"{JOB_COMPLETION_INDEX} is not set to a number"
            ) from None
    try:
        store = ObjectStore(StorageSettings.from_env())
        plan = _read_plan(store, settings.batch_plan_uri)
    except StorageError as exc:
        raise _storage_failure(exc) from exc
    if plan.model.sha256 != settings.model_sha256:
        raise ShardFailure(
            EXIT_INPUT_ERROR,
            "InvalidPlan",
            f"the plan names model sha256 {plan.model.sha256}, the pod {settings.model_sha256}",
        )
    scorer_settings = ScorerSettings(
        model_uri=settings.model_uri,
        model_sha256=settings.model_sha256,
        model_name=plan.model.name,
        model_dir=settings.model_dir,
        max_model_bytes=settings.max_model_bytes,
        auth_enabled=False,
    )
    model = ScoringModel(scorer_settings, store_factory=lambda: store)
    try:
        model.load()  # download, sha256 check, then load: nothing is read before the digest matches
    except ModelLoadError as exc:
        raise ShardFailure(exc.exit_code, "ModelUnusable", str(exc)) from exc
    log.info(
        "shard %d of %d: %s, model %s (%s)", index, plan.shards, plan.batch_job, plan.model.name, model.digest
    )
    limits = ShardLimits(
        csv_block_bytes=settings.shard_csv_block_bytes,
        chunk_rows=settings.shard_chunk_rows,
        parquet_buffer_bytes=settings.shard_parquet_buffer_bytes,
    )
    try:
        # pyarrow would import pandas at its first pa.array(); a model that needs it has imported it.
        with pandas_hidden():
            result = ShardScorer(plan, index, model, store, limits, pod=settings.pod_name).run()
    except ShardInputError as exc:
        raise ShardFailure(EXIT_INPUT_ERROR, exc.reason, exc.message) from exc
    except StorageError as exc:
        raise _storage_failure(exc) from exc
    log.info(
        "shard %d: %d rows scored, %d rejected in %.1f s (%.0f rows/s), peak RSS %.0f MiB",
        index,
        result.rows_scored,
        result.rows_rejected,
        result.seconds or 0,
        (result.rows_scored + result.rows_rejected) / max(result.seconds or 0, 1e-9),
        (result.peak_rss_bytes or 0) / 2**20,
    )
    return {
        "ok": True,
        "index": index,
        "rowsScored": result.rows_scored,
        "rowsRejected": result.rows_rejected,
    }


def _read_plan(store: ObjectStore, uri: str) -> BatchPlan:
    try:
        raw = store.get_bytes(uri, max_bytes=MAX_PLAN_BYTES)
    except (ObjectNotFoundError, BucketNotFoundError) as exc:
        raise ShardFailure(EXIT_INPUT_ERROR, "PlanMissing", f"no batch plan at {uri}: {exc}") from exc
    try:
        return BatchPlan.model_validate_json(raw)
    except ValidationError as exc:
        raise ShardFailure(EXIT_INPUT_ERROR, "InvalidPlan", f"{uri}: {_describe(exc)}") from exc


def _storage_failure(exc: StorageError) -> ShardFailure:
    """An input that vanished is the input's fault (2); anything else the store's (75, retried)."""
    if isinstance(exc, ObjectNotFoundError | BucketNotFoundError):
        return ShardFailure(EXIT_INPUT_ERROR, "InputNotFound", str(exc))
    return ShardFailure(EXIT_INFRASTRUCTURE_ERROR, "StorageUnavailable", str(exc))


def _describe(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def _write_summary(path: Path | None, summary: dict[str, object]) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):  # not writable: stderr has it
        path.write_text(json.dumps(summary)[:4000])
