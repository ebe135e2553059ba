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


class Promotion(StatusModel):
    """One decision on a new model of spec.modelFrom's experiment: taken or refused by the gate."""

    from_model: str | None = Field(
        default=None, alias="from", max_length=253, description="The TrainedModel served before."
    )
    to_model: str = Field(alias="to", max_length=253, description="The candidate TrainedModel.")
    metric: str | None = Field(
        default=None, max_length=64, description="The metric the gate compared (absent without a gate)."
    )
    delta: float | None = Field(default=None, description="Candidate minus served value of the metric.")
    promoted: bool = Field(default=True, description="True: the service moved to the candidate.")
    reason: str | None = Field(default=None, max_length=512, description="The gate's comparison, in words.")
    at: datetime = Field(description="When it was decided.")


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
        description="The last 50 decisions on new models of spec.modelFrom's experiment, oldest first.",
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
