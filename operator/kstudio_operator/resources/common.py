"""Building blocks shared by the resource models: camelCase models, conditions, names, the kind descriptor."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kstudio_core.ilearner import SHA256_HEX

# RFC 1123 DNS label / subdomain, as Kubernetes validates object names.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]+$"
S3_PREFIX = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\s]*$"
# Kubernetes resource quantity (a simplified but faithful form of resource.Quantity's grammar).
# How many hex digits of a sha256 status shows for `kubectl get` (like a short image id).
DIGEST_PREFIX_LENGTH = 12


def digest_prefix(sha256: str | None) -> str | None:
    return sha256[:DIGEST_PREFIX_LENGTH] if sha256 else None


QUANTITY = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
# Names that become part of child names (Jobs, TrainedModels `<experiment>-<run>`) must stay short.
ShortName = Annotated[str, Field(min_length=1, max_length=52, pattern=DNS_LABEL)]
Sha256 = Annotated[str, Field(pattern=SHA256_HEX, min_length=64, max_length=64)]
S3Uri = Annotated[str, Field(pattern=S3_URI, max_length=1024)]
S3Prefix = Annotated[str, Field(pattern=S3_PREFIX, max_length=512)]
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=32)]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class KModel(BaseModel):
    """A spec model: camelCase on the wire, unknown fields rejected when the operator parses."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON form Kubernetes stores: camelCase keys, no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusModel(KModel):
    """A status model: tolerant when reading (older operators may have written other fields)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KModel):
    """A Kubernetes API-conventions condition (metav1.Condition)."""

    type: str = Field(
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        description="What the condition is about, in CamelCase (e.g. Ready).",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="Why, as one CamelCase word a program can match on.",
    )
    message: str = Field(default="", max_length=32768, description="Why, in words for a person.")
    last_transition_time: datetime = Field(description="When status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}


def conditions_field(types: str) -> Any:
    """status.conditions, described by `types`: which condition types the kind reports."""
    return Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
        description=f"Kubernetes conditions, one per type: {types}",
    )


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime | None = None,
) -> list[Condition]:
    """Return `conditions` with `type_` set; lastTransitionTime changes only when the status changes."""
    now = now or datetime.now(UTC)
    out: list[Condition] = []
    found = False
    for c in conditions:
        if c.type == type_:
            found = True
            changed = c.status != status
            out.append(
                Condition(
                    type=type_,
                    status=status,
                    reason=reason,
                    message=message,
                    last_transition_time=now if changed else c.last_transition_time,
                    observed_generation=generation,
                )
            )
        else:
            out.append(c)
    if not found:
        out.append(
            Condition(
                type=type_,
                status=status,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=generation,
            )
        )
    return out


def get_condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class CelRule:
    """An x-kubernetes-validations rule attached to the schema node at `path` (dotted property names)."""

    path: str
    rule: str
    message: str
    reason: str | None = None  # FieldValueInvalid (default), FieldValueForbidden, ...
    field_path: str | None = None


@dataclass(frozen=True)
class ResourceKind:
    """Everything the CRD generator needs to know about one kind besides its spec/status schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[KModel]
    status: type[StatusModel]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    rules: tuple[CelRule, ...] = ()
    spec_required: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
