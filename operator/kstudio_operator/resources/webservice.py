"""WebService: the predictive experiment, deployed. Owns its default Endpoint `<webservice>-default`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from kstudio_operator.constants import WEB_SERVICES
from kstudio_operator.resources.common import (
    DIGEST_PREFIX_LENGTH,
    CelRule,
    ColumnName,
    Condition,
    KModel,
    ObjectName,
    PrinterColumn,
    ResourceKind,
    StatusModel,
    conditions_field,
)
from kstudio_operator.resources.endpoint import ScorerResources
from kstudio_operator.resources.experiment import MetricName
from kstudio_operator.resources.scheduling import Scheduling


class CanarySpec(KModel):
    """A trial on real traffic before a promotion: the candidate serves `weight` % of the default
    Endpoint's requests for `durationSeconds`, and is promoted only if its error rate stays at most
    `maxErrorRate`."""

    weight: int = Field(
        default=10,
        ge=1,
        le=99,
        description="Share of the default Endpoint's requests the candidate answers meanwhile (1-99, "
        "default 10); the served model answers the rest.",
    )
    duration_seconds: int = Field(
        default=300,
        ge=10,
        le=86400,
        description="How long the candidate serves before it is promoted (10-86400, default 300), counted "
        "from the moment the default Endpoint's ready pods serve the split.",
    )
    max_error_rate: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Highest share of the candidate's answers that may be errors (not 2xx; input refused "
        "before any model saw it does not count), 0-1, default 0.01; read from the scorer pods every few "
        "seconds: once it is over, the candidate is removed and the promotion refused.",
    )
    min_requests: int = Field(
        default=1,
        ge=0,
        description="Answers the candidate must have given by the end for a promotion (default 1): fewer "
        "means its error rate is not known, and the promotion is refused.",
    )


class Promote(KModel):
    metric: MetricName = Field(description="Metric compared between the served and the candidate model.")
    direction: Literal["higher", "lower"] | None = Field(
        default=None,
        description="Which way the metric is better; default: lower for errors (rmse, mae, mse, mape, "
        "log_loss), higher for the rest.",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0.0,
        description="Required improvement before promotion, in the metric's units (>= 0, default 0: equal "
        "or better is promoted).",
    )
    canary: CanarySpec | None = Field(
        default=None,
        description="A canary step after the gate: the candidate first serves a share of the default "
        "Endpoint's traffic for a while and is promoted only if its error rate stays under a bound; absent "
        "= promoted at once. Every step is recorded in status.promotions.",
    )


class ModelFrom(KModel):
    experiment: ObjectName = Field(
        description="The Experiment whose latest Ready TrainedModel the service takes (a retrain rolls it "
        "out)."
    )
    promote: Promote | None = Field(
        default=None,
        description="Gate a new model must pass to replace the served one; absent = always take the latest.",
    )


OutputColumn = Literal["Scored Labels", "Scored Probabilities", "Scored Values"]


def _default_columns() -> list[OutputColumn]:
    return ["Scored Labels", "Scored Probabilities"]


class Output(KModel):
    """What a scoring answer holds: the scored columns, and optionally the inputs."""

    columns: list[OutputColumn] = Field(
        default_factory=_default_columns,
        max_length=3,
        description="Scored columns in each answer; absent = every column the model's task produces "
        "(classification: Scored Labels and Scored Probabilities; regression: Scored Values). A column "
        "the task does not produce makes the scorer refuse to load the model.",
    )
    include_inputs: bool = Field(
        default=False, description="Also return each request's input columns in its answer (default false)."
    )


class Scorer(KModel):
    """The default Endpoint's capacity and placement: the operator copies these into its spec."""

    replicas: int = Field(
        default=1,
        ge=0,
        le=20,
        description="Scorer pods of the default Endpoint (0-20, default 1; 0 serves nothing).",
    )
    resources: ScorerResources = Field(
        default_factory=ScorerResources, description="CPU and memory of each of the default Endpoint's pods."
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Where the default Endpoint's scorer pods may run."
    )


class WebServiceSpec(KModel):
    """The model to serve (named, or the latest of an experiment), the shape of its answers, and the
    capacity of its default Endpoint `<webservice>-default`."""

    model: ObjectName | None = Field(default=None, description="TrainedModel to serve (or use modelFrom).")
    model_from: ModelFrom | None = Field(default=None, description="Follow an experiment's latest model.")
    output: Output = Field(
        default_factory=Output,
        description="The columns of a scoring answer, for every Endpoint of the service.",
    )
    input_columns: list[ColumnName] | None = Field(
        default=None,
        max_length=512,
        description="Not used yet: accepted and stored, but requests are checked against the model's "
        "input schema (the TrainedModel's status.inputSchema) only.",
    )
    scorer: Scorer = Field(
        default_factory=Scorer,
        description="Replicas, resources and scheduling of the default Endpoint (copied into its spec).",
    )


CanaryStep = Literal["CanaryStarted", "CanaryServing", "CanaryPromoted", "CanaryRefused"]


class Promotion(StatusModel):
    """One step of a decision on a new model of spec.modelFrom's experiment: the gate's, or a canary's."""

    from_model: str | None = Field(
        default=None, alias="from", max_length=253, description="The TrainedModel served before."
    )
    to_model: str = Field(alias="to", max_length=253, description="The candidate TrainedModel.")
    metric: str | None = Field(
        default=None, max_length=64, description="The metric the gate compared (absent without a gate)."
    )
    delta: float | None = Field(default=None, description="Candidate minus served value of the metric.")
    promoted: bool = Field(
        default=True, description="True: the service moved to the candidate (with a canary: at its end)."
    )
    reason: str | None = Field(
        default=None, max_length=512, description="The gate's comparison, or the canary's finding, in words."
    )
    at: datetime = Field(description="When it was decided.")
    step: Literal["Gate", CanaryStep] = Field(
        default="Gate",
        description="Gate (the metric gate's decision), or a canary's CanaryStarted (the gate passed; the "
        "split rolls out), CanaryServing (the pods serve it: the clock starts), CanaryPromoted, "
        "CanaryRefused.",
    )
    requests: int | None = Field(default=None, ge=0, description="Canary: the candidate's answers counted.")
    errors: int | None = Field(default=None, ge=0, description="Canary: how many of them were errors.")


class Canary(StatusModel):
    """A canary under way: the candidate, its share, its bounds, and what was counted so far."""

    model: str = Field(max_length=253, description="The candidate TrainedModel.")
    from_model: str = Field(alias="from", max_length=253, description="The model serving the rest.")
    weight: int = Field(ge=1, le=99, description="The candidate's share of the requests, in percent.")
    duration_seconds: int = Field(ge=1, description="How long it serves once its pods are ready.")
    max_error_rate: float = Field(ge=0, le=1, description="The highest error rate that is promoted.")
    min_requests: int = Field(default=1, ge=0, description="Answers needed for a promotion.")
    started_at: datetime = Field(description="When the gate passed and the split was asked for.")
    serving_since: datetime | None = Field(
        default=None, description="When the default Endpoint's ready pods served the split (the clock)."
    )
    requests: int | None = Field(default=None, ge=0, description="The candidate's answers so far.")
    errors: int | None = Field(default=None, ge=0, description="How many of them were errors.")


class TrafficShare(StatusModel):
    """One model the default Endpoint is to serve, and its share of the requests."""

    model: str = Field(max_length=253, description="A TrainedModel.")
    weight: int = Field(ge=0, le=100, description="Its share of the default Endpoint's requests, in percent.")


# A status object stays small however many Endpoints a service has (etcd, kubectl get -o yaml).
LISTED_ENDPOINTS = 256


class WebServiceStatus(StatusModel):
    """Which model the service serves, through which Endpoints, and its promotion history."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )
    phase: Literal["Pending", "Ready", "Degraded", "Failed"] | None = Field(
        default=None,
        description="Pending (no model, or the default Endpoint not serving yet), Ready (it serves the "
        "model), Degraded (it still serves the previous model while rolling to this one), Failed (the spec "
        "is refused).",
    )
    conditions: list[Condition] = conditions_field("Ready (the default Endpoint serves the model).")
    model: str | None = Field(
        default=None, max_length=253, description="The TrainedModel the service serves."
    )
    traffic: list[TrafficShare] = Field(
        default_factory=list,
        max_length=2,
        description="What its default Endpoint is to serve: the model at 100, or during a canary the "
        "model and the candidate with their weights (the default Endpoint follows this).",
    )
    split: str | None = Field(
        default=None, max_length=520, description="traffic as model:weight,... (kubectl get)."
    )
    canary: Canary | None = Field(default=None, description="The canary under way, if one is.")
    model_digest: str | None = Field(
        default=None, max_length=64, description="sha256 the default Endpoint's ready pods serve."
    )
    model_digest_prefix: str | None = Field(
        default=None, max_length=DIGEST_PREFIX_LENGTH, description="Start of modelDigest (kubectl get)."
    )
    default_endpoint: str | None = Field(
        default=None, max_length=253, description="Name of its default Endpoint: <webservice>-default."
    )
    url: str | None = Field(
        default=None, max_length=1024, description="In-cluster URL of the default Endpoint's scorer."
    )
    endpoints: list[str] = Field(
        default_factory=list,
        max_length=LISTED_ENDPOINTS,
        description=f"Its Endpoints, sorted: the first {LISTED_ENDPOINTS} (endpointCount counts all).",
    )
    endpoint_count: int | None = Field(default=None, ge=0, description="How many Endpoints it has.")
    promotions: list[Promotion] = Field(
        default_factory=list,
        max_length=50,
        description="The last 50 steps of decisions on new models of spec.modelFrom's experiment (the "
        "gate's, and a canary's), oldest first.",
    )


WEB_SERVICE = ResourceKind(
    kind="WebService",
    plural=WEB_SERVICES,
    singular="webservice",
    short_names=("kws",),
    spec=WebServiceSpec,
    status=WebServiceStatus,
    description="A predictive web service: serves a TrainedModel through its default Endpoint.",
    printer_columns=(
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("Model", ".status.model", description="TrainedModel being served"),
        PrinterColumn("Digest", ".status.modelDigestPrefix", description="sha256 being served"),
        PrinterColumn("Endpoint", ".status.defaultEndpoint"),
        PrinterColumn("URL", ".status.url"),
        PrinterColumn("Split", ".status.split", description="Models and weights the service asks for"),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    rules=(
        CelRule(
            path="spec",
            rule="!(has(self.model) && has(self.modelFrom))",
            message="spec.model and spec.modelFrom are mutually exclusive",
            field_path=".modelFrom",
        ),
    ),
)
