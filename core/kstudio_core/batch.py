"""The BatchJob contracts, shared by the operator and the shard runner (`kstudio score-shard`).

- `BatchPlan`: what the operator decided before any pod started (the input objects with their sizes, the
  model and its sha256, the output, the shard count, the error threshold). It writes the plan under the
  output prefix; every shard reads it.
- `ShardResult`: what one shard did (rows, its part, its errors, how long, peak memory). A shard writes it
  last, after its part: an index whose result document exists has its part in place.
- `BatchManifest`: what the operator published when every shard succeeded.
- `OutputLayout`: where each of them lives under the output prefix.
- `shard_byte_slices`: the one rule that cuts the input into shards. The inputs, taken in order, form one
  run of bytes; shard i of n owns bytes [total*i/n, total*(i+1)/n) of it. A CSV line belongs to the shard
  whose bytes hold its first byte; a Parquet row group to the shard whose bytes hold its first page.
  Every shard computes its own slices from the plan: no coordination, and no byte is read twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kstudio_core.ilearner import SHA256_HEX

PLAN_VERSION: Final = 1
# Set by the Job controller on every pod of an Indexed Job (the pod's index, 0..completions-1).
JOB_COMPLETION_INDEX: Final = "JOB_COMPLETION_INDEX"
# The container of a shard pod (podFailurePolicy rules name it).
SHARD_CONTAINER: Final = "shard"

Format = Literal["csv", "parquet"]
FORMAT_SUFFIXES: Final[dict[str, tuple[str, ...]]] = {"csv": (".csv",), "parquet": (".parquet", ".pq")}


def format_from_name(key: str) -> Format | None:
    """csv or parquet from an object name's suffix; None when the name does not say."""
    lower = key.lower()
    if lower.endswith(FORMAT_SUFFIXES["csv"]):
        return "csv"
    if lower.endswith(FORMAT_SUFFIXES["parquet"]):
        return "parquet"
    return None


class _Document(BaseModel):
    """camelCase on the wire; readers ignore keys a newer writer added."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode()


class InputObject(_Document):
    uri: str
    size_bytes: int = Field(ge=0)


class ErrorThreshold(_Document):
    """How many rows that cannot be scored a job tolerates: `rows` (at most that many) or `percent` (at
    most that share of the rows read). Neither: none (the first bad row fails the job, as `/jobs` does)."""

    rows: int | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, ge=0, le=100)

    def exceeded(self, rejected: int, read: int) -> bool:
        """Whether `rejected` bad rows out of `read` rows are beyond the threshold."""
        if self.rows is not None:
            return rejected > self.rows
        if self.percent is not None:
            return read > 0 and rejected * 100 > self.percent * read
        return rejected > 0

    def rows_limit(self) -> int | None:
        """The bad rows one shard may see before the whole job is certainly beyond the threshold (None:
        only the job's total can tell, with a percentage)."""
        if self.rows is not None:
            return self.rows
        return None if self.percent is not None else 0

    def describe(self) -> str:
        if self.rows is not None:
            return f"errorThreshold.rows {self.rows}"
        if self.percent is not None:
            return f"errorThreshold.percent {self.percent:g}"
        return "no errorThreshold (no bad row is tolerated)"


class PlannedModel(_Document):
    name: str
    uri: str
    sha256: str = Field(pattern=SHA256_HEX)


class BatchPlan(_Document):
    """The job as the operator planned it; shards read it from `OutputLayout.plan`."""

    version: int = PLAN_VERSION
    batch_job: str  # namespace/name
    uid: str
    inputs: list[InputObject] = Field(min_length=1)
    input_format: Format
    output_prefix: str
    output_format: Format
    one_file: bool = False
    shards: int = Field(ge=1)
    columns: list[str] | None = None
    include_inputs: bool = False
    error_threshold: ErrorThreshold = Field(default_factory=ErrorThreshold)
    model: PlannedModel

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.output_prefix)

    @property
    def total_bytes(self) -> int:
        return sum(o.size_bytes for o in self.inputs)


class SliceResult(_Document):
    """The rows one shard read of one input object: `rows` counts every data row of its slice (scored and
    rejected), so the operator numbers the rows of later slices from it."""

    input: str
    rows: int = Field(ge=0)


class PartFile(_Document):
    """An object a shard wrote. `header_bytes`: the length of a CSV part's header line (a one-file output
    keeps the first part's header only)."""

    uri: str
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256_HEX)
    header_bytes: int = Field(default=0, ge=0)
    rows: int = Field(default=0, ge=0)


class ShardResult(_Document):
    """One shard's outcome (`ok` false: it stopped with `reason` and `message`, e.g. too many bad rows)."""

    uid: str
    index: int = Field(ge=0)
    pod: str = ""
    ok: bool = True
    reason: str | None = None
    message: str | None = None
    rows_scored: int = Field(default=0, ge=0)
    rows_rejected: int = Field(default=0, ge=0)
    slices: list[SliceResult] = Field(default_factory=list)
    part: PartFile | None = None
    errors: PartFile | None = None
    model_sha256: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = None
    peak_rss_bytes: int | None = None


class ManifestPart(_Document):
    index: int
    uri: str
    rows: int
    size_bytes: int
    sha256: str


class BatchManifest(_Document):
    """What a succeeded BatchJob published: written last, so its presence means the output is complete."""

    version: int = PLAN_VERSION
    batch_job: str
    uid: str
    model: PlannedModel
    format: Format
    rows_scored: int
    rows_rejected: int
    shards: int
    parts: list[ManifestPart] = Field(default_factory=list)
    one_file: str | None = None
    errors: str | None = None
    published_at: datetime


# The row number column of an errors file, and the header every errors file (per shard, and the published
# one) starts with. A shard numbers rows within its slice; the operator renumbers them within the input.
ERRORS_HEADER: Final = ("input", "row", "column", "reason")


@dataclass(frozen=True)
class OutputLayout:
    """Every object of a BatchJob under its output prefix (`s3://bucket/path/`)."""

    prefix: str

    @property
    def plan(self) -> str:
        return f"{self.prefix}_batch/plan.json"

    def result(self, index: int) -> str:
        return f"{self.prefix}_batch/results/shard-{index:05d}.json"

    def errors_part(self, index: int) -> str:
        return f"{self.prefix}_batch/errors/shard-{index:05d}.csv"

    def bundle(self, number: int) -> str:
        return f"{self.prefix}_batch/bundles/bundle-{number:05d}"

    def part(self, index: int, fmt: Format) -> str:
        return f"{self.prefix}parts/part-{index:05d}.{fmt}"

    def one_file(self, fmt: Format) -> str:
        return f"{self.prefix}scores.{fmt}"

    @property
    def errors(self) -> str:
        return f"{self.prefix}errors.csv"

    @property
    def manifest(self) -> str:
        return f"{self.prefix}manifest.json"


@dataclass(frozen=True)
class ByteSlice:
    """Bytes [start, end) of input object number `input` (its position in the plan's inputs)."""

    input: int
    start: int
    end: int


def shard_bounds(total: int, index: int, count: int) -> tuple[int, int]:
    """Shard `index` of `count` owns bytes [lo, hi) of `total`: consecutive, disjoint, covering, and of
    sizes differing by at most one byte."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0..{count - 1}")
    return total * index // count, total * (index + 1) // count


def shard_byte_slices(sizes: list[int], index: int, count: int) -> list[ByteSlice]:
    """The parts of each input object that shard `index` of `count` owns (empty objects own nothing)."""
    lo, hi = shard_bounds(sum(sizes), index, count)
    slices = []
    offset = 0
    for number, size in enumerate(sizes):
        start, end = max(lo, offset), min(hi, offset + size)
        if start < end:
            slices.append(ByteSlice(number, start - offset, end - offset))
        offset += size
    return slices


def numbered_slices(results: list[ShardResult]) -> dict[tuple[int, str], int]:
    """(shard, input) → the input's row number (1-based) of the first row of that shard's slice of it.

    Slices of one input follow each other in shard order, so each starts after the rows of the earlier
    ones: what the shards cannot know themselves (for CSV that would mean reading every earlier byte)."""
    first: dict[tuple[int, str], int] = {}
    seen: dict[str, int] = {}
    for result in sorted(results, key=lambda r: r.index):
        for piece in result.slices:
            first[(result.index, piece.input)] = seen.get(piece.input, 0) + 1
            seen[piece.input] = seen.get(piece.input, 0) + piece.rows
    return first
