"""What an Endpoint's scorer pods serve, as one value: its traffic split, each model with its artifact,
sha256 and weight, and the mirror that scores copies of the requests (its weight is the percent copied).

The builder writes a split on the pod template (env for the scorer; the annotation kstudio.io/traffic,
`Split.annotation()`), the pods carry it, the endpoint_pods index reads it back and the decision parses it
(`Split.parse`) to compare what ready pods load with what it wants. People see `Split.label()`:
`penguins-2:90,penguins-3:10`. Model names are DNS subdomains, so `@`, `:`, `,` and `;` never occur in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServedModel:
    """One model an Endpoint's pods are told to serve, with its share of the requests in percent."""

    name: str
    uri: str
    sha256: str
    weight: int = 100


@dataclass(frozen=True)
class Split:
    """Models in the order of the Endpoint's traffic list; their weights sum to 100."""

    models: tuple[ServedModel, ...]
    mirror: ServedModel | None = None

    @classmethod
    def of(cls, models: Iterable[ServedModel], mirror: ServedModel | None = None) -> Split:
        return cls(tuple(models), mirror)

    @property
    def primary(self) -> ServedModel:
        """The model answering most requests (the first of the heaviest)."""
        return max(self.models, key=lambda m: m.weight)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def annotation(self) -> str:
        """`name@sha256:weight,...[;mirror=name@sha256:percent]`: what a pod template says its pods load
        (names, digests, weights, the mirror)."""
        split = ",".join(_entry(m) for m in self.models)
        return split + (f";mirror={_entry(self.mirror)}" if self.mirror else "")

    def label(self) -> str:
        """`penguins-2:90,penguins-3:10` (one model: `penguins-2:100`), for status and kubectl get."""
        return ",".join(f"{m.name}:{m.weight}" for m in self.models)

    def rollout_name(self) -> str:
        """What a rollout record names: the model itself when it serves alone, else the label."""
        return self.models[0].name if len(self.models) == 1 else self.label()

    @classmethod
    def parse(cls, annotation: str) -> Split | None:
        """The split of a pod's annotation (its models without URIs), None when it is not one."""
        split, _, mirrored = annotation.partition(";mirror=")
        models = [_parse_entry(part) for part in split.split(",")]
        mirror = _parse_entry(mirrored) if mirrored else None
        if not models or None in models or (mirrored and mirror is None):
            return None
        return cls(tuple(m for m in models if m is not None), mirror)


def _entry(m: ServedModel) -> str:
    return f"{m.name}@{m.sha256}:{m.weight}"


def _parse_entry(text: str) -> ServedModel | None:
    name, at, rest = text.partition("@")
    sha256, colon, weight = rest.partition(":")
    if not (name and at and sha256 and colon and weight.isdigit()):
        return None
    return ServedModel(name, "", sha256, int(weight))


def parse_label(label: str) -> list[tuple[str, int]]:
    """(model, weight) of a `rollout_name()`: `m-a` alone is `[("m-a", 100)]`. [] when it is not one."""
    if ":" not in label:
        return [(label, 100)] if label else []
    out = []
    for part in label.split(","):
        name, _, weight = part.partition(":")
        if not name or not weight.isdigit():
            return []
        out.append((name, int(weight)))
    return out
