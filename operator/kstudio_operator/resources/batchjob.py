"""BatchJob: score objects in storage with a model, as a sharded Kubernetes Indexed Job."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from kstudio_operator.constants import BATCH_JOBS
from kstudio_operator.resources.common import (
    DIGEST_PREFIX_LENGTH,
    CelRule,
    Condition,
    KModel,
    ObjectName,
    PrinterColumn,
    Quantity,
    ResourceKind,
    S3Uri,
    StatusModel,
    conditions_field,
)
from kstudio_operator.resources.scheduling import Scheduling
from kstudio_operator.resources.webservice import OutputColumn

# An object (s3://bucket/key) or a prefix ending in "/" (s3://bucket/ or s3://bucket/path/).
S3_OBJECT_OR_PREFIX = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]*$"
S3_DIRECTORY = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^\s]*/)?$"
MAX_SHARDS = 1000
MAX_LISTED_INPUTS = 1000
FileFormat = Literal["csv", "parquet"]


class BatchInput(KModel):
    """What to score: one object, a list of objects, or every object under a prefix."""

    uri: Annotated[str, Field(pattern=S3_OBJECT_OR_PREFIX, max_length=1024)] | None = Field(
        default=None,
        description="s3://bucket/key of one object, or s3://bucket/path/ (ending in /): every object under "
        "it whose name ends in the format's suffix (.csv; .parquet or .pq), in name order.",
    )
    uris: list[S3Uri] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LISTED_INPUTS,
        description=f"A list of objects, scored in this order (at most {MAX_LISTED_INPUTS}; use a prefix for "
        "more).",
    )
    format: FileFormat | None = Field(
        default=None,
        description="csv (a header line, then one row per line) or parquet; default: from the object names' "
        "suffix. Every input has the same format.",
    )


class BatchOutput(KModel):
    """Where the scores go and what they hold."""

    uri: Annotated[str, Field(pattern=S3_DIRECTORY, max_length=512)] = Field(
        description="s3://bucket/path/ (ending in /): each shard writes parts/part-<index>.<format> here and "
        "the operator then manifest.json (and scores.<format> with oneFile; errors.csv when rows were "
        "rejected). One BatchJob per prefix: another job's prefix is refused."
    )
    format: FileFormat = Field(default="csv", description="csv (default) or parquet.")
    one_file: bool = Field(
        default=False,
        description="csv only: also compose the parts into one file, scores.csv, copied by the object store "
        "itself (S3 multipart copy), never downloaded; the parts are then removed (default false: the "
        "parts and manifest.json).",
    )
    columns: list[OutputColumn] | None = Field(
        default=None,
        max_length=3,
        description="Scored columns written, as a WebService's output.columns; default: every column the "
        "model's task produces (classification: Scored Labels and Scored Probabilities; regression: Scored "
        "Values).",
    )
    include_inputs: bool = Field(
        default=False,
        description="Also write each row's input columns before the scored ones (from CSV: the columns the "
        "model does not read pass through as the text they are).",
    )


class ErrorThresholdSpec(KModel):
    """Rows that cannot be scored (a value of the wrong type, a line with the wrong number of fields) are
    written to errors.csv with their row number and reason; beyond this threshold the job fails."""

    rows: int | None = Field(default=None, ge=0, description="At most this many rows may be rejected.")
    percent: float | None = Field(
        default=None, ge=0, le=100, description="At most this share of the rows read may be rejected (0-100)."
    )


class BatchResources(KModel):
    cpu: Quantity = Field(
        default="1",
        description="CPU each shard pod requests, a Kubernetes quantity (default 1: a shard "
        "scores on one core).",
    )
    memory: Quantity = Field(
        default="1Gi",
        description="Memory each shard pod requests and may not exceed (default 1Gi); memory stays flat in "
        "the input's size, a model that inflates beyond half of it is refused.",
    )


class BatchJobSpec(KModel):
    """Immutable: another run is another BatchJob."""

    model: ObjectName | None = Field(
        default=None, description="The TrainedModel to score with (or endpoint)."
    )
    endpoint: ObjectName | None = Field(
        default=None,
        description="Score with the model this Endpoint serves when the job starts (status.model and "
        "status.modelDigest record which); the job waits while the Endpoint is not Ready.",
    )
    input: BatchInput = Field(description="The objects to score: CSV or Parquet.")
    output: BatchOutput = Field(description="Where the scores go, in which format, with which columns.")
    shards: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SHARDS,
        description=f"How many pieces the input is cut into, each scored by one pod (1-{MAX_SHARDS}; "
        "default 1, or from rowsPerShard). CSV is cut at line ends, Parquet by row groups: a Parquet input "
        "has at most as many busy shards as row groups.",
    )
    rows_per_shard: int | None = Field(
        default=None,
        ge=1,
        description="Instead of shards: about this many rows per shard (Parquet: counted from the files' "
        "footers; CSV: estimated from the size and the first MiB's rows).",
    )
    parallelism: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SHARDS,
        description="Shard pods running at once (default: every shard).",
    )
    resources: BatchResources = Field(
        default_factory=BatchResources, description="CPU and memory of each pod."
    )
    error_threshold: ErrorThresholdSpec | None = Field(
        default=None,
        description="How many rows may be rejected (rows or percent); absent: none, the first bad row fails "
        "the job.",
    )
    retries_per_shard: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of one shard after an infrastructure failure or a lost pod (0-10, default 3; "
        "the Job's backoffLimitPerIndex); bad input (exit 2) is never retried.",
    )
    active_deadline_seconds: int = Field(
        default=86400,
        ge=60,
        le=7 * 86400,
        description="Seconds the whole job may take, retries included (default 86400); then it fails.",
    )
    credentials_secret: ObjectName = Field(
        default="kstudio-s3",
        description="Secret in this namespace with keys accessKey and secretKey, mounted into the shard "
        "pods.",
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Where the shard pods may run (nodeSelector, tolerations)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> BatchJobSpec:
        problems = batch_spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def batch_spec_problems(spec: BatchJobSpec) -> list[str]:
    """The cross-field rules, as the CRD's CEL rules state them (for objects the API server did not
    check, and for the operator's own parsing)."""
    problems = []
    if (spec.model is None) == (spec.endpoint is None):
        problems.append("give exactly one of model (a TrainedModel) and endpoint")
    if spec.shards is not None and spec.rows_per_shard is not None:
        problems.append("shards and rowsPerShard are mutually exclusive")
    if (spec.input.uri is None) == (spec.input.uris is None):
        problems.append("give exactly one of input.uri (an object or a prefix) and input.uris (a list)")
    if spec.output.one_file and spec.output.format != "csv":
        problems.append("output.oneFile needs format csv (Parquet files cannot be concatenated)")
    threshold = spec.error_threshold
    if threshold is not None and threshold.rows is not None and threshold.percent is not None:
        problems.append("errorThreshold takes rows or percent, not both")
    return problems


class ShardCounts(StatusModel):
    total: int = Field(default=0, ge=0, description="Shards of the job.")
    active: int = Field(default=0, ge=0, description="Shard pods running now.")
    succeeded: int = Field(default=0, ge=0, description="Shards whose part is written.")
    failed: int = Field(default=0, ge=0, description="Shards that failed for good.")


class RowCounts(StatusModel):
    scored: int = Field(default=0, ge=0, description="Rows scored and written.")
    rejected: int = Field(default=0, ge=0, description="Rows that could not be scored (errors.csv).")


class InputSummary(StatusModel):
    objects: int = Field(default=0, ge=0, description="Input objects found when the job started.")
    size_bytes: int = Field(default=0, ge=0, description="Their total size in bytes.")
    format: FileFormat | None = Field(default=None, description="csv or parquet.")


class FailedShard(StatusModel):
    index: int = Field(ge=0, description="The shard (its pod's completion index).")
    exit_code: int | None = Field(default=None, description="Its container's exit code.")
    reason: str | None = Field(default=None, max_length=128, description="Why, one CamelCase word.")
    message: str | None = Field(default=None, max_length=2048, description="Why, in words.")


BatchPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
LISTED_FAILED_SHARDS = 10
LISTED_OUTPUTS = 8


class BatchJobStatus(StatusModel):
    """What the job did, from its Job, its pods and the shards' result documents."""

    observed_generation: int | None = Field(default=None, description="metadata.generation this describes.")
    phase: BatchPhase | None = Field(
        default=None,
        description="Pending (waiting for the model or the storage), Running (shards scoring, then the "
        "output being published), Succeeded, Failed (reason and message say why).",
    )
    reason: str | None = Field(default=None, max_length=128, description="Why the phase, one CamelCase word.")
    message: str | None = Field(default=None, max_length=4096, description="Why the phase, in words.")
    conditions: list[Condition] = conditions_field(
        "ModelReady (the model is known and Ready), Running (shards are scoring) and Complete (the output is "
        "published)."
    )
    model: str | None = Field(default=None, max_length=253, description="The TrainedModel scored with.")
    model_source: str | None = Field(
        default=None,
        max_length=300,
        description="Where it came from: TrainedModel/<name> or Endpoint/<name>.",
    )
    model_uri: str | None = Field(default=None, max_length=1024, description="The .ilearner it loads.")
    model_digest: str | None = Field(default=None, max_length=64, description="The model's sha256.")
    model_digest_prefix: str | None = Field(
        default=None, max_length=DIGEST_PREFIX_LENGTH, description="Start of modelDigest (kubectl get)."
    )
    job: str | None = Field(default=None, max_length=63, description="Its Indexed Job.")
    inputs: InputSummary | None = Field(default=None, description="What the input listing found.")
    shards: ShardCounts = Field(
        default_factory=ShardCounts, description="Shards: total, active, done, failed."
    )
    rows: RowCounts = Field(default_factory=RowCounts, description="Rows scored and rejected (when done).")
    rows_per_second: float | None = Field(
        default=None, ge=0, description="Rows read per second from the Job's start to its completion."
    )
    started_at: datetime | None = Field(default=None, description="When the Job started.")
    finished_at: datetime | None = Field(
        default=None, description="When it succeeded (output published) or failed."
    )
    outputs: list[str] = Field(
        default_factory=list,
        max_length=LISTED_OUTPUTS,
        description="s3:// URIs of what it published: manifest.json (which lists every part), the one file, "
        "errors.csv.",
    )
    failed_shards: list[FailedShard] = Field(
        default_factory=list,
        max_length=LISTED_FAILED_SHARDS,
        description=f"Why shards failed: the first {LISTED_FAILED_SHARDS}.",
    )


BATCH_JOB = ResourceKind(
    kind="BatchJob",
    plural=BATCH_JOBS,
    singular="batchjob",
    short_names=("kbj",),
    spec=BatchJobSpec,
    status=BatchJobStatus,
    description="Batch scoring of objects in storage with a model, as a sharded Kubernetes Indexed Job.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Model", ".status.model", description="TrainedModel scored with"),
        PrinterColumn("Shards", ".status.shards.total", "integer"),
        PrinterColumn("Done", ".status.shards.succeeded", "integer", "Shards finished"),
        PrinterColumn("Rows", ".status.rows.scored", "integer", "Rows scored"),
        PrinterColumn("Rejected", ".status.rows.rejected", "integer", "Rows in errors.csv"),
        PrinterColumn("Rows/s", ".status.rowsPerSecond", "number", priority=1),
        PrinterColumn("Digest", ".status.modelDigestPrefix", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    rules=(
        CelRule(
            path="",
            rule="self.metadata.name.size() <= 52",
            message="BatchJob names are at most 52 characters (its Job and pods are named after it)",
            field_path=".metadata.name",
        ),
        CelRule(
            path="spec",
            rule="self == oldSelf",
            message="BatchJob spec is immutable: create another BatchJob for another run",
        ),
        CelRule(
            path="spec",
            rule="has(self.model) != has(self.endpoint)",
            message="give exactly one of spec.model (a TrainedModel) and spec.endpoint",
            field_path=".model",
        ),
        CelRule(
            path="spec",
            rule="!(has(self.shards) && has(self.rowsPerShard))",
            message="spec.shards and spec.rowsPerShard are mutually exclusive",
            field_path=".rowsPerShard",
        ),
        CelRule(
            path="spec.input",
            rule="has(self.uri) != has(self.uris)",
            message="give exactly one of input.uri (an object or a prefix) and input.uris (a list)",
        ),
        CelRule(
            path="spec.output",
            rule="!self.oneFile || self.format == 'csv'",
            message="output.oneFile needs format csv (Parquet files cannot be concatenated)",
            field_path=".oneFile",
        ),
        CelRule(
            path="spec.errorThreshold",
            rule="!(has(self.rows) && has(self.percent))",
            message="errorThreshold takes rows or percent, not both",
        ),
    ),
)
