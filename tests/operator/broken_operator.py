"""`kstudio operator` with one deliberately broken reconcile, for the test of the failure check
(test_operator_check.py): the TrainedModel named `broken` raises in its decision, every other object is
reconciled by the real code. Run as a script: `python broken_operator.py --namespace NS`."""

from __future__ import annotations

import sys
from typing import Any

from kstudio_operator.cli import main
from kstudio_operator.handlers import trainedmodel

BROKEN = "broken"
_decide = trainedmodel.decide_trained_model


def _decide_or_raise(spec: Any, status: Any, *args: Any, **kwargs: Any) -> Any:
    if (spec.get("artifact") or {}).get("uri", "").endswith(f"/{BROKEN}.ilearner"):
        raise RuntimeError("deliberately broken reconcile")
    return _decide(spec, status, *args, **kwargs)


trainedmodel.decide_trained_model = _decide_or_raise  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
