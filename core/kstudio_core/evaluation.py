"""The evaluation report of a run: `evaluation.json` and its figures, next to the `.ilearner`.

The trainer writes it (kstudio_trainer.evaluation computes it on the test split,
kstudio_trainer.report_figures draws its SVG figures with scikit-learn's display API); the CLI and the
console read it. Layout in storage,
for the artifact `s3://models/penguins/penguins-3.ilearner`:

    s3://models/penguins/penguins-3.ilearner.evaluation/evaluation.json
    s3://models/penguins/penguins-3.ilearner.evaluation/roc.svg   (one object per figure)

The run result and the TrainedModel name the report by URI and sha256 (`EvaluationRef`); the report names
each figure by file name and sha256. A reader checks the sha256 of the bytes before it parses or shows
anything (`read_report`, `read_figure`), so a report or figure changed in storage is refused, never shown.

Bounded whatever the dataset: every list has a maximum length (curves downsampled, classes and columns
capped) and the encoded document stays under MAX_REPORT_BYTES; a reader refuses anything larger.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from kstudio_core.ilearner import SHA256_HEX, ClassLabel, Task

FORMAT_NAME: Final = "kstudio.evaluation"
FORMAT_VERSION: Final = 1
REPORT_FOLDER_SUFFIX: Final = ".evaluation/"
REPORT_FILE: Final = "evaluation.json"

# Bounds: a report of a 10-row or a 10-million-row dataset has the same shape and at most this size.
MAX_REPORT_BYTES: Final = 1_000_000
MAX_FIGURE_BYTES: Final = 2_000_000
MAX_CURVE_POINTS: Final = 200  # per ROC / precision-recall curve
MAX_CURVE_CLASSES: Final = 20  # one-vs-rest curves for the most frequent classes of the test split
MAX_MATRIX_CLASSES: Final = 50  # confusion matrix and per-class scores
MAX_BALANCE_CLASSES: Final = 1024
MAX_THRESHOLDS: Final = 101
MAX_SAMPLE_ROWS: Final = 500  # predicted vs actual
MAX_HISTOGRAM_BINS: Final = 50
MAX_IMPORTANCE_COLUMNS: Final = 200
MAX_SWEEP_TRIALS: Final = 200


def report_folder(artifact_uri: str) -> str:
    """`s3://b/m.ilearner` -> `s3://b/m.ilearner.evaluation/`: everything of the report lives under it."""
    return artifact_uri + REPORT_FOLDER_SUFFIX


def report_uri(artifact_uri: str) -> str:
    return report_folder(artifact_uri) + REPORT_FILE


def figure_uri(report: str, file: str) -> str:
    """A figure's URI: its file name next to the report's `evaluation.json`."""
    return report.rsplit("/", 1)[0] + "/" + file


class _Model(BaseModel):
    """camelCase on the wire (as the CRDs and the run result), snake_case in Python."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, alias_generator=to_camel)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class EvaluationRef(_Model):
    """Where a report is and the sha256 of its bytes: in the run result and in TrainedModel status."""

    uri: str
    sha256: str = Field(pattern=SHA256_HEX)
    size_bytes: int | None = Field(default=None, ge=0)


class RocCurve(_Model):
    positive: ClassLabel = Field(description="the class taken as positive (one-vs-rest for 3+ classes)")
    fpr: list[float] = Field(max_length=MAX_CURVE_POINTS)
    tpr: list[float] = Field(max_length=MAX_CURVE_POINTS)
    auc: float | None = None


class PrecisionRecallCurve(_Model):
    positive: ClassLabel
    precision: list[float] = Field(max_length=MAX_CURVE_POINTS)
    recall: list[float] = Field(max_length=MAX_CURVE_POINTS)
    average_precision: float | None = None
    prevalence: float = Field(ge=0, le=1, description="share of the positive class: the chance level")


class CalibrationCurve(_Model):
    positive: ClassLabel
    prob_pred: list[float] = Field(max_length=MAX_HISTOGRAM_BINS, description="mean predicted probability")
    prob_true: list[float] = Field(max_length=MAX_HISTOGRAM_BINS, description="fraction of positives")
    bins: int = Field(ge=1, le=MAX_HISTOGRAM_BINS)


class ThresholdRow(_Model):
    """Studio's threshold slider: scoring `positive` when its score is at least `threshold`."""

    threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    tn: int
    fn: int


class ClassScore(_Model):
    label: ClassLabel
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(_Model):
    """counts[i][j]: test rows of class labels[i] predicted as labels[j]."""

    labels: list[ClassLabel] = Field(max_length=MAX_MATRIX_CLASSES)
    counts: list[list[int]] = Field(max_length=MAX_MATRIX_CLASSES)


class ClassCount(_Model):
    label: ClassLabel
    count: int


class ClassBalance(_Model):
    train: list[ClassCount] = Field(max_length=MAX_BALANCE_CLASSES)
    test: list[ClassCount] = Field(max_length=MAX_BALANCE_CLASSES)


class Classification(_Model):
    classes_total: int = Field(ge=0, description="classes of the model")
    positive: ClassLabel | None = Field(default=None, description="binary tasks: the positive class")
    scores: Literal["probability", "decision", "none"] = Field(
        description="what the curves are drawn from: predict_proba, decision_function, or neither (no curves)"
    )
    confusion_matrix: ConfusionMatrix
    per_class: list[ClassScore] = Field(max_length=MAX_MATRIX_CLASSES)
    roc: list[RocCurve] = Field(default_factory=list, max_length=MAX_CURVE_CLASSES)
    precision_recall: list[PrecisionRecallCurve] = Field(default_factory=list, max_length=MAX_CURVE_CLASSES)
    calibration: list[CalibrationCurve] = Field(default_factory=list, max_length=MAX_CURVE_CLASSES)
    thresholds: list[ThresholdRow] = Field(default_factory=list, max_length=MAX_THRESHOLDS)


class Histogram(_Model):
    edges: list[float] = Field(max_length=MAX_HISTOGRAM_BINS + 1)
    counts: list[int] = Field(max_length=MAX_HISTOGRAM_BINS)


class ErrorQuantile(_Model):
    quantile: float = Field(ge=0, le=1)
    absolute_error: float


class PredictedVsActual(_Model):
    """A seeded random sample of the test rows (all of them when few)."""

    actual: list[float] = Field(max_length=MAX_SAMPLE_ROWS)
    predicted: list[float] = Field(max_length=MAX_SAMPLE_ROWS)
    rows_total: int = Field(ge=0, description="test rows the sample was drawn from")


class Regression(_Model):
    residuals: Histogram = Field(description="distribution of actual - predicted")
    residual_mean: float
    residual_std: float
    error_quantiles: list[ErrorQuantile] = Field(max_length=16)
    sample: PredictedVsActual | None = None


class ColumnImportance(_Model):
    column: str
    mean: float = Field(description="mean drop of the score when the column is shuffled")
    std: float


class PermutationImportance(_Model):
    scoring: str
    repeats: int = Field(ge=1)
    rows: int = Field(ge=0, description="test rows used (a seeded sample when the test split is larger)")
    columns: list[ColumnImportance] = Field(max_length=MAX_IMPORTANCE_COLUMNS)


class SweepTrial(_Model):
    params: dict[str, Any]
    mean_score: float
    std_score: float
    rank: int


class SweepTable(_Model):
    metric: str
    folds: int
    trials_total: int = Field(ge=0)
    trials: list[SweepTrial] = Field(max_length=MAX_SWEEP_TRIALS, description="best ranks first")


class RowCounts(_Model):
    train: int = Field(ge=0)
    test: int = Field(ge=0)


class Figure(_Model):
    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    title: str = Field(max_length=256)
    file: str = Field(pattern=r"^[a-z0-9_]{1,64}\.svg$")
    sha256: str = Field(pattern=SHA256_HEX)
    size_bytes: int = Field(ge=1, le=MAX_FIGURE_BYTES)


class EvaluationReport(_Model):
    format: Literal["kstudio.evaluation"] = FORMAT_NAME
    format_version: Literal[1] = FORMAT_VERSION
    task: Task
    label: str
    run: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="the run's metrics on the test split")
    rows: RowCounts
    class_balance: ClassBalance | None = None
    classification: Classification | None = None
    regression: Regression | None = None
    importance: PermutationImportance | None = None
    sweep: SweepTable | None = None
    snapshot: dict[str, Any] | None = Field(
        default=None, description="the experiment spec the run trained (what `kstudio train --snapshot` read)"
    )
    figures: list[Figure] = Field(default_factory=list, max_length=32)
    notes: list[str] = Field(default_factory=list, max_length=32, description="what is missing and why")

    def encode(self) -> bytes:
        """The bytes stored as evaluation.json (compact; the sha256 is of exactly these bytes)."""
        return json.dumps(self.to_wire(), separators=(",", ":"), ensure_ascii=False).encode()


class EvaluationError(Exception):
    """A report cannot be shown: missing, unreadable, or not the bytes the model names."""


class ReportDigestMismatch(EvaluationError):
    pass


def check_bytes(data: bytes, expected_sha256: str, what: str) -> None:
    """ReportDigestMismatch unless sha256(data) is `expected_sha256` (constant-time compare)."""
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256.lower()):
        raise ReportDigestMismatch(
            f"{what} has sha256 {actual}, not the recorded {expected_sha256}: refusing to show it"
        )


def parse_report(data: bytes, expected_sha256: str, what: str) -> EvaluationReport:
    """The report in `data`, after its sha256 matched. EvaluationError (mismatch, too large, invalid)."""
    if len(data) > MAX_REPORT_BYTES:
        raise EvaluationError(f"{what} is larger than {MAX_REPORT_BYTES} bytes: not an evaluation report")
    check_bytes(data, expected_sha256, what)
    try:
        return EvaluationReport.model_validate(json.loads(data))
    except (ValueError, ValidationError) as exc:
        raise EvaluationError(f"{what} is not a kstudio evaluation report: {exc}") from exc


def read_report(store: Any, ref: EvaluationRef) -> EvaluationReport:
    """Download (bounded), verify, parse. EvaluationError for anything but infrastructure (StorageError)."""
    data = _read_bounded(store, ref.uri, MAX_REPORT_BYTES)
    return parse_report(data, ref.sha256, f"evaluation report {ref.uri}")


def read_figure(store: Any, ref: EvaluationRef, figure: Figure) -> bytes:
    """A figure's SVG bytes, after their sha256 matched the one the (verified) report names."""
    uri = figure_uri(ref.uri, figure.file)
    data = _read_bounded(store, uri, MAX_FIGURE_BYTES)
    check_bytes(data, figure.sha256, f"figure {uri}")
    return data


def _read_bounded(store: Any, uri: str, limit: int) -> bytes:
    # One byte more than allowed tells "too large" without reading the rest of a huge object.
    with store.open_stream(uri) as stream:
        data = bytes(stream.read(limit + 1))
    if len(data) > limit:
        raise EvaluationError(f"{uri} is larger than {limit} bytes: refusing to read it")
    return data
