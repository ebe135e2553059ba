"""Endpoint: one scoring endpoint of a WebService, with its own keys, logging, capacity and model pin."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

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

# A split's label, `model:weight,...`: MAX_SPLIT names of up to 253 characters and their weights.
SPLIT_LABEL_LENGTH = 2100


class Auth(KModel):
    enabled: bool = Field(
        default=True,
        description="Require `Authorization: Bearer <key>` on scoring calls (default true); the keys are "
        "in Secret <endpoint>-keys (primaryKey/secondaryKey). false: anyone who reaches the Service scores.",
    )


class Logging(KModel):
    level: Literal["None", "Error", "All"] = Field(
        default="None",
        description="Which calls are recorded to object storage (bucket kstudio-logs unless the operator "
        "is configured otherwise, under <namespace>/<endpoint>/): None (default), Error (failed calls: "
        "route, status, error) or All (every call with its request and response bodies). Headers, and so "
        "keys, are never recorded.",
    )
    sample_data: bool = Field(
        default=False,
        description="Show values seen in training (the categories of text columns) as examples in the "
        "endpoint's OpenAPI document (default false: placeholders only, training data may be confidential).",
    )


class ScorerResources(KModel):
    """CPU and memory of one scorer pod (an Endpoint's, and a WebService's default Endpoint's)."""

    cpu: Quantity = Field(
        default="500m", description="CPU each scorer pod requests, a Kubernetes quantity (default 500m)."
    )
    memory: Quantity = Field(
        default="512Mi",
        description="Memory each scorer pod requests and may not exceed, a Kubernetes quantity (default "
        "512Mi); a model that inflates to more than half of it is refused before loading.",
    )


# Models one Endpoint may split its requests between: every scorer pod loads all of them.
MAX_SPLIT = 8


class TrafficWeight(KModel):
    """One model of a traffic split and its share of the requests."""

    model: ObjectName = Field(description="A TrainedModel in this namespace.")
    weight: int = Field(
        ge=0,
        le=100,
        description="Its share of the requests in percent (0-100); the weights of spec.traffic sum to 100.",
    )


class Mirror(KModel):
    """Shadow scoring: a model that scores copies of the requests without ever answering them."""

    model: ObjectName = Field(description="A TrainedModel in this namespace, not one that answers.")
    percent: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Share of the answered requests copied to it, in percent (1-100, default 100).",
    )


class EndpointSpec(KModel):
    """One scoring endpoint of a WebService: its model (pinned or following the service) or a traffic
    split between models, keys, request logging, capacity and placement."""

    web_service: ObjectName = Field(description="The WebService this endpoint belongs to (immutable).")
    model: ObjectName | None = Field(
        default=None,
        description="Pinned TrainedModel; absent (and no traffic) = follow the service. Same as traffic "
        "[{model: <it>, weight: 100}].",
    )
    traffic: list[TrafficWeight] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SPLIT,
        description=f"Instead of model: split the requests between up to {MAX_SPLIT} TrainedModels by "
        "weight (the weights sum to 100, a model once). Every scorer pod loads all of them and answers each "
        "request with one, the same one for every request with the same x-kstudio-session header; the "
        "answer names it (header x-kstudio-model). A change is a rolling update like a model patch.",
    )
    mirror: Mirror | None = Field(
        default=None,
        description="Shadow scoring: every scorer pod also loads this model and has it score a copy of "
        "percent % of the answered requests, off the request path (a bounded queue: when full, copies are "
        "dropped and counted), never returning its answers; its agreement with the answering model is in "
        "the scorer's metrics (kstudio_scorer_mirror_*), and with logging on the copies on which they "
        "disagree go to object storage under <logs>/mirror/.",
    )
    allow_schema_change: bool = Field(
        default=False,
        description="Allow a model whose input schema differs from the one being served (default false: "
        "such a model is refused and condition ModelAccepted says why).",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=20,
        description="Scorer pods (0-20, default 1); 0 stops every pod and the endpoint answers nothing.",
    )
    auth: Auth = Field(
        default_factory=Auth, description="Whether scoring calls need one of the endpoint's keys."
    )
    logging: Logging = Field(
        default_factory=Logging,
        description="Request/response samples to object storage, and training values in the OpenAPI "
        "document.",
    )
    max_concurrent_calls: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Scoring calls one scorer pod handles at once (1-1000, default 20); beyond that it "
        "answers 429 with Retry-After.",
    )
    resources: ScorerResources = Field(
        default_factory=ScorerResources, description="CPU and memory of each scorer pod."
    )
    scheduling: Scheduling = Field(
        default_factory=Scheduling, description="Where the scorer pods may run (nodeSelector, tolerations)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> EndpointSpec:
        if problems := endpoint_spec_problems(self):
            raise ValueError("; ".join(problems))
        return self


def endpoint_spec_problems(spec: EndpointSpec) -> list[str]:
    """Cross-field problems (the CRD's CEL rules refuse them first; the operator checks again)."""
    problems = []
    if spec.model is not None and spec.traffic is not None:
        problems.append("spec.model and spec.traffic are mutually exclusive")
    if spec.traffic is not None:
        if (total := sum(t.weight for t in spec.traffic)) != 100:
            problems.append(f"the weights of spec.traffic sum to {total}, not 100")
        names = [t.model for t in spec.traffic]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"spec.traffic lists {', '.join(twice)} more than once")
    if spec.mirror is not None and spec.mirror.model in {spec.model, *(t.model for t in spec.traffic or [])}:
        problems.append(f"spec.mirror.model {spec.mirror.model} also answers requests")
    return problems


class Rollout(StatusModel):
    """One change of the served models: from, to, when, and how long until every pod served the new ones."""

    from_model: str | None = Field(
        default=None,
        alias="from",
        max_length=SPLIT_LABEL_LENGTH,
        description="The TrainedModel served before (a split: model:weight,...).",
    )
    to_model: str | None = Field(
        default=None,
        alias="to",
        max_length=SPLIT_LABEL_LENGTH,
        description="The TrainedModel being rolled out (a split: model:weight,...).",
    )
    started_at: datetime | None = Field(default=None, description="When the first pod of it was wanted.")
    finished_at: datetime | None = Field(
        default=None, description="When every ready pod served it (absent while rolling out)."
    )
    seconds: float | None = Field(default=None, ge=0, description="finishedAt minus startedAt, in seconds.")


class RollbackOverride(StatusModel):
    """The last `kstudio.io/rollback` request: `model` is served instead of `spec_model` while `active`,
    i.e. until spec.model changes (the token stays, so the same request is not handled twice)."""

    token: str = Field(max_length=253, description="The kstudio.io/rollback annotation value it handled.")
    model: str = Field(
        max_length=SPLIT_LABEL_LENGTH,
        description="The TrainedModel (or split, model:weight,...) restored: the one served before; empty "
        "when there was none, so nothing was restored.",
    )
    spec_model: str | None = Field(
        default=None,
        max_length=SPLIT_LABEL_LENGTH,
        description="The model (or split) the spec asked for when the rollback was made.",
    )
    active: bool = Field(
        default=True,
        description="True while the restored model is served; false once the wanted model changed.",
    )


class ServedWeight(StatusModel):
    """One model the ready pods serve: its share of the requests and the sha256 they loaded."""

    model: str = Field(max_length=253, description="The TrainedModel.")
    weight: int = Field(ge=0, le=100, description="Its share of the requests in percent.")
    digest: str | None = Field(default=None, max_length=64, description="sha256 the ready pods loaded.")


class ServedMirror(StatusModel):
    """The mirror the ready pods load, the share of requests it scores and its sha256."""

    model: str = Field(max_length=253, description="The TrainedModel.")
    percent: int = Field(ge=1, le=100, description="Share of the answered requests copied to it.")
    digest: str | None = Field(default=None, max_length=64, description="sha256 the ready pods loaded.")


class EndpointStatus(StatusModel):
    """What the ready pods really serve, the rollout in progress and the past ones, and the keys."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation this status describes."
    )
    phase: Literal["Pending", "Ready", "RollingOut", "Stalled", "Failed"] | None = Field(
        default=None,
        description="Pending (no pod ready yet, or no model), Ready (every pod serves the wanted model), "
        "RollingOut (old pods serve while new ones start), Stalled (the new model does not come up; the "
        "old pods keep serving, conditions say why), Failed (the spec is refused).",
    )
    conditions: list[Condition] = conditions_field(
        "Ready (a pod answers), Progressing (a rollout is under way) and ModelAccepted (the wanted "
        "models may be served: each exists and is Ready, all have the same input schema unless "
        "allowSchemaChange and the same task, and together they fit the pods' memory; when not, it names "
        "the models that wait while the pods keep serving what they serve)."
    )
    model: str | None = Field(
        default=None,
        max_length=253,
        description="The TrainedModel the ready pods serve (a split: the one with the largest weight).",
    )
    model_digest: str | None = Field(
        default=None, max_length=64, description="sha256 of that model, as the ready pods loaded it."
    )
    traffic: list[ServedWeight] = Field(
        default_factory=list,
        max_length=MAX_SPLIT,
        description="Every model the ready pods serve, with its weight and the sha256 they loaded.",
    )
    split: str | None = Field(
        default=None,
        max_length=SPLIT_LABEL_LENGTH,
        description="The models the ready pods serve and their weights, e.g. penguins-2:90,penguins-3:10 "
        "(kubectl get).",
    )
    mirror: ServedMirror | None = Field(
        default=None, description="The mirror the ready pods load (spec.mirror), when there is one."
    )
    model_digest_prefix: str | None = Field(
        default=None, max_length=DIGEST_PREFIX_LENGTH, description="Start of modelDigest (kubectl get)."
    )
    url: str | None = Field(
        default=None,
        max_length=1024,
        description="In-cluster URL of the scorer: http://<endpoint>.<namespace>.svc:80.",
    )
    replicas: int | None = Field(default=None, ge=0, description="Scorer pods wanted (spec.replicas).")
    ready_replicas: int | None = Field(default=None, ge=0, description="Scorer pods ready to answer.")
    rollout: Rollout | None = Field(default=None, description="The latest change of the served model.")
    history: list[Rollout] = Field(
        default_factory=list, max_length=50, description="The last 20 finished rollouts, oldest first."
    )
    rolled_back: RollbackOverride | None = Field(
        default=None,
        description="The last kstudio.io/rollback request: while active, the model served before the last "
        "rollout is served instead of the one wanted (spec.model, or the service's model) until that "
        "changes.",
    )
    keys_secret: str | None = Field(
        default=None, max_length=253, description="Secret with the API keys: <endpoint>-keys."
    )
    keys_rotation: str | None = Field(
        default=None, max_length=253, description="The last kstudio.io/rotate-key request handled."
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
        PrinterColumn("Split", ".status.split", description="Models the ready pods serve, with weights"),
        PrinterColumn("Mirror", ".status.mirror.model", description="Model scoring copies", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    rules=(
        CelRule(
            path="spec",
            rule="self.webService == oldSelf.webService",
            message="spec.webService is immutable: create a new Endpoint for another WebService",
            field_path=".webService",
        ),
        CelRule(
            path="spec",
            rule="!(has(self.model) && has(self.traffic))",
            message="spec.model and spec.traffic are mutually exclusive: name one model, or split the "
            "requests between several in spec.traffic",
            field_path=".traffic",
        ),
        CelRule(
            path="spec",
            rule="!has(self.traffic) || self.traffic.map(t, t.weight).sum() == 100",
            message="the weights of spec.traffic must sum to 100",
            field_path=".traffic",
        ),
        CelRule(
            path="spec",
            rule="!has(self.traffic) || self.traffic.all(t, self.traffic.filter(u, u.model == t.model)"
            ".size() == 1)",
            message="spec.traffic lists a model more than once: give each model one entry and weight",
            field_path=".traffic",
        ),
        CelRule(
            path="spec",
            rule="!has(self.mirror) || ((!has(self.model) || self.model != self.mirror.model) && "
            "(!has(self.traffic) || !self.traffic.exists(t, t.model == self.mirror.model)))",
            message="spec.mirror.model also answers requests (spec.model or spec.traffic): a mirror only "
            "scores copies, name another model",
            field_path=".mirror.model",
        ),
    ),
)
