"""What clients, the scorer and the operator share about answering with several models: the headers, and
the per-model metric the operator reads from the scorer pods (a canary's error rate).

- A request may carry `x-kstudio-session`: the scorer answers every request of a session with the same
  model of the endpoint's traffic split.
- Every scoring answer names the model that produced it: `x-kstudio-model` (the TrainedModel) and
  `x-kstudio-model-version` (its sha256).
- Each scorer counts its scoring calls by the model that answered them and the outcome, in the Prometheus
  counter `kstudio_scorer_model_requests_total{model, outcome}`: `ok`; `error`, the model was asked and did
  not answer 2xx (it raised on input its schema accepts, or the call failed after it was asked); `refused`,
  the input was refused before any model saw it (not the model's doing). `model_request_counts` reads it
  back from the text of a scorer's /metrics.
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

_SAMPLE = re.compile(rf"^{MODEL_REQUESTS}_total{{(?P<labels>[^}}]*)}}\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def model_request_counts(metrics_text: str) -> dict[str, dict[str, float]]:
    """model -> outcome -> calls, from one scorer's Prometheus text ({} when it has none yet)."""
    counts: dict[str, dict[str, float]] = {}
    for line in metrics_text.splitlines():
        found = _SAMPLE.match(line)
        if found is None:
            continue
        labels = dict(_LABEL.findall(found["labels"]))
        try:
            value = float(found["value"])
        except ValueError:
            continue
        model, outcome = labels.get("model"), labels.get("outcome")
        if model and outcome:
            per_model = counts.setdefault(model, {})
            per_model[outcome] = per_model.get(outcome, 0.0) + value
    return counts
