"""Endpoint: one scoring endpoint of a WebService, with its own keys, logging, capacity and model pin."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from kstudio_operator.constants import ENDPOINTS
from kstudio_operator.resources.common import (
    DIGEST_PREFIX_LENGTH,
    CelRule,
    Condition,
    KModel,
    ObjectName,
    PrinterColumn,
    Quantity,
    ResourceKind,
    StatusModel,
    conditions_field,
)
from kstudio_operator.resources.scheduling import Scheduling


class Auth(KModel):
    enabled: bool = Field(
        default=True, description="Keys in Secret <endpoint>-keys (primaryKey/secondaryKey)."
    )


class Logging(KModel):
    level: Literal["None", "Error", "All"] = "None"
    sample_data: bool = False


class EndpointResources(KModel):
    cpu: Quantity = "500m"
    memory: Quantity = "512Mi"


class EndpointSpec(KModel):
    web_service: ObjectName = Field(description="The WebService this endpoint belongs to (immutable).")
    model: ObjectName | None = Field(
        default=None, description="Pinned TrainedModel; absent = follow the service."
    )
    allow_schema_change: bool = Field(
        default=False, description="Allow a model whose input schema differs from the one being served."
    )
    replicas: int = Field(default=1, ge=0, le=20)
    auth: Auth = Field(default_factory=Auth)
    logging: Logging = Field(default_factory=Logging)
    max_concurrent_calls: int = Field(default=20, ge=1, le=1000)
    resources: EndpointResources = Field(default_factory=EndpointResources)
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Where the scorer pods may run (nodeSelector, tolerations)."
    )


class Rollout(StatusModel):
    from_model: str | None = Field(default=None, alias="from", max_length=253)
    to_model: str | None = Field(default=None, alias="to", max_length=253)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float | None = Field(default=None, ge=0)


class RollbackOverride(StatusModel):
    """The last `kstudio.io/rollback` request: `model` is served instead of `spec_model` while `active`,
    i.e. until spec.model changes (the token stays, so the same request is not handled twice)."""

    token: str = Field(max_length=253)
    model: str = Field(max_length=253)
    spec_model: str | None = Field(default=None, max_length=253)
    active: bool = True


class EndpointStatus(StatusModel):
    observed_generation: int | None = None
    phase: Literal["Pending", "Ready", "RollingOut", "Stalled", "Failed"] | None = None
    conditions: list[Condition] = conditions_field()
    model: str | None = Field(default=None, max_length=253)
    model_digest: str | None = Field(default=None, max_length=64)
    model_digest_prefix: str | None = Field(
        default=None, max_length=DIGEST_PREFIX_LENGTH, description="start of modelDigest (kubectl get)"
    )
    url: str | None = Field(default=None, max_length=1024)
    replicas: int | None = Field(default=None, ge=0)
    ready_replicas: int | None = Field(default=None, ge=0)
    rollout: Rollout | None = None
    history: list[Rollout] = Field(default_factory=list, max_length=50)
    rolled_back: RollbackOverride | None = None
    keys_secret: str | None = Field(default=None, max_length=253, description="Secret with the API keys")
    keys_rotation: str | None = Field(
        default=None, max_length=253, description="the last kstudio.io/rotate-key request handled"
    )


ENDPOINT = ResourceKind(
    kind="Endpoint",
    plural=ENDPOINTS,
    singular="endpoint",
    short_names=("kep",),
    spec=EndpointSpec,
    status=EndpointStatus,
    description="A scoring endpoint of a WebService: own keys, logging level, capacity and model.",
    printer_columns=(
        PrinterColumn("WebService", ".spec.webService"),
        PrinterColumn("Model", ".status.model", description="TrainedModel the pods serve"),
        PrinterColumn("Digest", ".status.modelDigestPrefix", description="sha256 the ready pods serve"),
        PrinterColumn("Ready", ".status.readyReplicas", "integer"),
        PrinterColumn("Phase", ".status.phase"),
        PrinterColumn("URL", ".status.url"),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    rules=(
        CelRule(
            path="spec",
            rule="self.webService == oldSelf.webService",
            message="spec.webService is immutable: create a new Endpoint for another WebService",
            field_path=".webService",
        ),
    ),
)
