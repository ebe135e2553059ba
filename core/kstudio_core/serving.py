"""What clients and the scorer share about answering with several models: the headers, and the per-model
metric.

- A request may carry `x-kstudio-session`: the scorer answers every request of a session with the same
  model of the endpoint's traffic split.
- Every scoring answer names the model that produced it: `x-kstudio-model` (the TrainedModel) and
  `x-kstudio-model-version` (its sha256).
- Each scorer counts its scoring calls by the model that answered them and the outcome, in the Prometheus
  counter `kstudio_scorer_model_requests_total{model, outcome}`: `ok`; `error`, the model was asked and did
  not answer 2xx (it raised on input its schema accepts, or the call failed after it was asked); `refused`,
  the input was refused before any model saw it (not the model's doing).
"""

from __future__ import annotations

import re
from typing import Final

SESSION_HEADER: Final = "x-kstudio-session"
MODEL_HEADER: Final = "x-kstudio-model"
MODEL_VERSION_HEADER: Final = "x-kstudio-model-version"

MODEL_REQUESTS: Final = "kstudio_scorer_model_requests"
OUTCOME_OK: Final = "ok"
OUTCOME_ERROR: Final = "error"
OUTCOME_REFUSED: Final = "refused"

# One sample of the counter in the Prometheus text format, e.g.
# kstudio_scorer_model_requests_total{model="m-2",outcome="error"} 3.0
_SAMPLE = re.compile(rf"^{MODEL_REQUESTS}_total\{{(?P<labels>[^}}]*)\}}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def model_request_counts(metrics_text: str) -> dict[str, dict[str, float]]:
    """model -> outcome -> count, from a scorer's /metrics text (the counter above); other lines ignored."""
    counts: dict[str, dict[str, float]] = {}
    for line in metrics_text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        labels = dict(_LABEL.findall(found["labels"]))
        model, outcome = labels.get("model"), labels.get("outcome")
        if model is None or outcome is None:
            continue
        try:
            value = float(found["value"])
        except ValueError:
            continue
        per_model = counts.setdefault(model, {})
        per_model[outcome] = per_model.get(outcome, 0.0) + value
    return counts
