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
    Quantity,
    ResourceKind,
    StatusModel,
    conditions_field,
)
from kstudio_operator.resources.experiment import MetricName
from kstudio_operator.resources.scheduling import Scheduling


class Promote(KModel):
    metric: MetricName = Field(description="Metric compared between the served and the candidate model.")
    direction: Literal["higher", "lower"] | None = Field(
        default=None,
        description="Which way the metric is better; default: lower for errors (rmse, mae, mse, mape, "
        "log_loss), higher for the rest.",
    )
    min_delta: float = Field(default=0.0, ge=0.0, description="Required improvement before promotion.")


class ModelFrom(KModel):
    experiment: ObjectName
    promote: Promote | None = Field(default=None, description="Gate; absent = always take the latest model.")


OutputColumn = Literal["Scored Labels", "Scored Probabilities", "Scored Values"]


def _default_columns() -> list[OutputColumn]:
    return ["Scored Labels", "Scored Probabilities"]


class Output(KModel):
    columns: list[OutputColumn] = Field(default_factory=_default_columns, max_length=3)
    include_inputs: bool = False


class ScorerResources(KModel):
    cpu: Quantity = "500m"
    memory: Quantity = "512Mi"


class Scorer(KModel):
    replicas: int = Field(default=1, ge=0, le=20)
    resources: ScorerResources = Field(default_factory=ScorerResources)
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Where the default Endpoint's scorer pods may run."
    )


class WebServiceSpec(KModel):
    model: ObjectName | None = Field(default=None, description="TrainedModel to serve (or use modelFrom).")
    model_from: ModelFrom | None = Field(default=None, description="Follow an experiment's latest model.")
    output: Output = Field(default_factory=Output)
    input_columns: list[ColumnName] | None = Field(default=None, max_length=512)
    scorer: Scorer = Field(default_factory=Scorer)


class Promotion(StatusModel):
    from_model: str | None = Field(default=None, alias="from", max_length=253)
    to_model: str = Field(alias="to", max_length=253)
    metric: str | None = Field(default=None, max_length=64)
    delta: float | None = Field(default=None, description="candidate minus served value of the metric")
    promoted: bool = True
    reason: str | None = Field(default=None, max_length=512, description="the gate's comparison, in words")
    at: datetime


# A status object stays small however many Endpoints a service has (etcd, kubectl get -o yaml).
LISTED_ENDPOINTS = 256


class WebServiceStatus(StatusModel):
    observed_generation: int | None = None
    phase: Literal["Pending", "Ready", "Degraded", "Failed"] | None = None
    conditions: list[Condition] = conditions_field()
    model: str | None = Field(default=None, max_length=253)
    model_digest: str | None = Field(default=None, max_length=64)
    model_digest_prefix: str | None = Field(
        default=None, max_length=DIGEST_PREFIX_LENGTH, description="start of modelDigest (kubectl get)"
    )
    default_endpoint: str | None = Field(default=None, max_length=253)
    url: str | None = Field(default=None, max_length=1024)
    endpoints: list[str] = Field(
        default_factory=list,
        max_length=LISTED_ENDPOINTS,
        description=f"its Endpoints, sorted: the first {LISTED_ENDPOINTS} (endpointCount counts all)",
    )
    endpoint_count: int | None = Field(default=None, ge=0, description="how many Endpoints it has")
    promotions: list[Promotion] = Field(default_factory=list, max_length=50)


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
