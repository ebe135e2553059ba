"""Scorer settings: every knob of `kstudio serve`, read from KSTUDIO_* environment variables.

One process serves the models of one endpoint: one (`model_uri`, `model_sha256`), or a traffic split
(`traffic`, what the operator gives its pods). The operator sets those of
`kstudio_core.environment.ScorerEnv` on the scorer pod (same field names, same prefix: a field here is the
variable ENV_PREFIX + its name in capitals); tests build the settings directly. Storage is read apart, by
`StorageSettings.from_env`.
"""

from __future__ import annotations

import re
import socket
import tempfile
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kstudio_core.environment import (
    ENV_PREFIX,
    Flag,
    LoggingLevel,
    MirrorModel,
    TrafficModel,
    env_name,
    traffic_problems,
)
from kstudio_core.exitcodes import TERMINATION_LOG
from kstudio_core.ilearner import SHA256_HEX


class ScorerSettings(BaseSettings):
    """Configuration of one scorer process (env prefix ``KSTUDIO_``, e.g. ``KSTUDIO_MODEL_URI``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # --- the models ------------------------------------------------------------------------------
    model_uri: str | None = Field(
        None, description="s3://bucket/key.ilearner or a local file path of the artifact (one model)"
    )
    model_sha256: str | None = Field(None, description="expected sha256 (64 hex) of the whole .ilearner file")
    traffic: list[TrafficModel] | None = Field(
        None,
        description="instead of model_uri: every model this process serves, as JSON [{name, uri, sha256, "
        "weight}]; each request goes to one of them by weight (sticky per x-kstudio-session header)",
    )
    model_name: str = Field(
        "model", description="name under /v2/models/{name} (the endpoint's); one model_uri is served under it"
    )
    mirror: MirrorModel | None = Field(
        None,
        description="shadow scoring, as JSON {name, uri, sha256, percent}: a model loaded with the others "
        "that scores a copy of percent % of the answered requests off the request path; its answers are "
        "only compared with the ones given (metrics; disagreements logged with logging on), never returned",
    )
    mirror_queue_size: int = Field(
        1000, gt=0, description="copies waiting for the mirror at most; more are dropped and counted"
    )
    model_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "kstudio-model",
        description="where a downloaded artifact is kept",
    )
    max_model_bytes: int | None = Field(
        None,
        gt=0,
        description="largest inflated model.skops loaded (refused before inflating beyond it); default: "
        "half the container's memory limit (cgroup), else half the machine's memory, at most 2 GiB",
    )

    # --- HTTP ------------------------------------------------------------------------------------
    host: str = "0.0.0.0"  # noqa: S104 - one process per pod, the pod network is the boundary
    port: int = Field(8080, ge=0, le=65535)
    drain_seconds: float = Field(
        5.0,
        ge=0,
        description="after SIGTERM: keep serving this long, not ready and closing every connection, "
        "while the pod's removal from the Service propagates (0 = shut down at once)",
    )
    shutdown_grace_seconds: float = Field(
        25.0, ge=0, description="after the drain: in-flight requests get this long to finish"
    )

    # --- auth ------------------------------------------------------------------------------------
    auth_enabled: Flag = Field(True, description="false disables auth; it is never off by accident")
    keys_dir: Path | None = Field(
        None, description="directory of a mounted Secret with files primaryKey and/or secondaryKey"
    )
    keys_reload_seconds: float = Field(1.0, ge=0, description="how often key files are checked")

    # --- limits ----------------------------------------------------------------------------------
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_rows: int = Field(100_000, gt=0, description="rows per request (RRS rows / V2 batch size)")
    max_concurrent_calls: int = Field(20, gt=0, description="beyond this, 429 with Retry-After")
    retry_after_seconds: int = Field(1, ge=0)

    # --- output projection (Azure "Project Columns") ----------------------------------------------
    output_columns: list[str] | None = Field(
        None, description="scored columns to return; default: every scored column of the task"
    )
    output_include_inputs: Flag = False

    # --- speed -----------------------------------------------------------------------------------
    batch_max_rows: int = Field(
        2048, gt=0, description="micro-batching: concurrent requests merged up to this many rows"
    )
    batch_max_wait_ms: float = Field(
        0.0, ge=0, le=100, description="extra wait for a fuller batch while a predict is already running"
    )

    # --- batch jobs (BES) ------------------------------------------------------------------------
    jobs_chunk_rows: int = Field(65_536, gt=0, description="Parquet: rows read, scored and written per chunk")
    jobs_csv_block_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, description="CSV: bytes parsed, scored and written per chunk"
    )
    jobs_work_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "kstudio-jobs",
        description="spool files of jobs",
    )
    jobs_max_kept: int = Field(
        1000, gt=0, description="without a jobs store: finished jobs remembered for GET /jobs/{id}"
    )
    jobs_store_uri: str | None = Field(
        None,
        description="s3://bucket/prefix where job records live, shared by every replica (KSTUDIO_S3_* "
        "credentials); unset: in this process's memory (one replica only)",
    )
    jobs_heartbeat_seconds: float = Field(5.0, gt=0, description="how often a replica renews its jobs")
    jobs_lease_seconds: float = Field(
        30.0, gt=0, description="a queued/running job not renewed this long is reported Failed"
    )
    pod_name: str = Field(
        default_factory=socket.gethostname, min_length=1, description="this replica, named in job records"
    )

    # --- request/response logging to object storage ---------------------------------------------
    logging_level: LoggingLevel = "None"
    logging_uri: str | None = Field(None, description="s3://bucket/prefix for samples (level Error/All)")
    logging_flush_seconds: float = Field(5.0, gt=0)
    logging_max_body_bytes: int = Field(64 * 1024, gt=0, description="samples larger are truncated")
    sample_data: Flag = Field(
        False,
        description="Azure's 'sample data' switch: the OpenAPI document shows values seen in training "
        "(the categories of string columns) as examples; off, only placeholders (training data may be "
        "confidential)",
    )

    # --- process ---------------------------------------------------------------------------------
    termination_log: Path | None = Field(
        Path(TERMINATION_LOG), description="why the process stopped (if the path is writable)"
    )

    @field_validator("model_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not re.match(SHA256_HEX, value):
            raise ValueError("must be a sha256 digest: 64 hexadecimal characters")
        return value

    def served_models(self) -> list[TrafficModel]:
        """The models to load: `traffic`, or the one model_uri under the endpoint's name."""
        if self.traffic is not None:
            return list(self.traffic)
        assert self.model_uri is not None and self.model_sha256 is not None  # _consistent checked it
        return [TrafficModel(name=self.model_name, uri=self.model_uri, sha256=self.model_sha256)]

    @model_validator(mode="after")
    def _consistent(self) -> ScorerSettings:
        single = self.model_uri is not None or self.model_sha256 is not None
        if self.traffic is not None and single:
            raise ValueError(
                f"set either {env_name('traffic')} or {env_name('model_uri')} and {env_name('model_sha256')}"
            )
        if self.traffic is None and (self.model_uri is None or self.model_sha256 is None):
            raise ValueError(f"{env_name('model_uri')} and {env_name('model_sha256')} are required")
        if self.traffic is not None and (problems := traffic_problems(self.traffic)):
            raise ValueError(f"{env_name('traffic')}: {'; '.join(problems)}")
        if self.mirror is not None and self.mirror.sha256 in {m.sha256 for m in self.served_models()}:
            raise ValueError(f"{env_name('mirror')}: the mirror {self.mirror.name} also answers requests")
        if self.auth_enabled and self.keys_dir is None:
            raise ValueError(
                f"auth is enabled but {env_name('keys_dir')} is not set; "
                f"set {env_name('auth_enabled')}=false to disable auth explicitly"
            )
        if self.jobs_lease_seconds < 2 * self.jobs_heartbeat_seconds:
            raise ValueError(
                f"{env_name('jobs_lease_seconds')} must be at least twice "
                f"{env_name('jobs_heartbeat_seconds')}"
            )
        if self.logging_level != "None" and not self.logging_uri:
            raise ValueError(
                f"logging level {self.logging_level} needs {env_name('logging_uri')} (s3://bucket/prefix)"
            )
        return self
