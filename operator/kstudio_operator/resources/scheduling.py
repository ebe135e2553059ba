"""Where scorer pods may run: a node selector and tolerations, with the fields and rules of core/v1.

Shared by Endpoint.spec.scheduling and WebService.spec.scorer.scheduling (which the default Endpoint
follows). The CRD schema checks what the API server would check on the pod (label key and value syntax,
operator/effect enums, the Toleration field combinations), so a bad value is refused when the Endpoint is
applied, naming the field, rather than later when the Deployment is written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, JsonValue, model_validator

from kstudio_operator.resources.common import KModel

# Label keys and values as Kubernetes validates them (qualified name with an optional DNS-subdomain
# prefix; `[.]` rather than `\.` so the pattern also reads as a CEL string for the map-key rule).
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelKey = Annotated[str, Field(min_length=1, max_length=316, pattern=LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]

# The Toleration rules of core/v1 validation, as CEL on the CRD and as a model check in the operator.
_TOLERATION_RULES: list[JsonValue] = [
    {
        "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
        "message": "value must be empty when operator is Exists",
    },
    {
        "rule": "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
        "message": "a toleration without key needs operator Exists (it tolerates every taint)",
    },
    {
        "rule": "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        "message": "tolerationSeconds applies to effect NoExecute only",
    },
]


class Toleration(KModel):
    """core/v1 Toleration: tolerate taints matching key/value/effect (operator Equal) or key (Exists)."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": _TOLERATION_RULES})

    key: str | None = Field(
        default=None, max_length=316, pattern=LABEL_KEY, description="Taint key; absent = every key."
    )
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None,
        description="Equal (default: key and value must match) or Exists (key only; no key = every taint).",
    )
    value: LabelValue | None = Field(default=None, description="Taint value (operator Equal).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect; absent = every effect."
    )
    toleration_seconds: int | None = Field(
        default=None, description="NoExecute only: how long the pod stays after the taint appears."
    )

    @model_validator(mode="after")
    def _core_v1_rules(self) -> Self:
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if not self.key and self.operator != "Exists":
            raise ValueError("a toleration without key needs operator Exists (it tolerates every taint)")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds applies to effect NoExecute only")
        return self


class Scheduling(KModel):
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        json_schema_extra={"maxProperties": 32},
        description="Node labels the scorer pods require (pod spec.nodeSelector).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=32, description="Taints the scorer pods tolerate."
    )

    def pod_spec_fields(self) -> dict[str, Any]:
        """The pod spec's nodeSelector/tolerations; nothing when unset, so the pod template (and its
        hash) of an Endpoint without scheduling stays what it was."""
        out: dict[str, Any] = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            out["tolerations"] = [t.to_wire() for t in self.tolerations]
        return out
