"""Generate `kstudio_core/algorithms.json` from scikit-learn: each allowlisted estimator's parameters and
the values scikit-learn accepts for them (its own `_parameter_constraints`), as plain data.

    kstudio-dev vocabulary          # rewrite the file (after changing the allowlist or scikit-learn)
    kstudio-dev vocabulary --check  # exit 1 when the file differs (a unit test does this)

The operator validates specs against that file without importing scikit-learn. A development tool: it
reads scikit-learn's private `_parameter_constraints`, which the product never imports.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import sys
from pathlib import Path
from typing import Any

import sklearn
from sklearn.utils._param_validation import Hidden, Interval, Options, RealNotInt, StrOptions

from kstudio_core import vocabulary
from kstudio_trainer.algorithms import ALGORITHMS

TARGET = Path(vocabulary.__file__).with_name("algorithms.json")


def _bound(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        return None
    return value  # type: ignore[no-any-return]


def _constraint(item: Any) -> dict[str, Any]:
    if isinstance(item, Hidden):
        return _constraint(item.constraint)
    if item is None:
        return {"kind": "none"}
    if isinstance(item, StrOptions | Options):
        return {"kind": "options", "values": sorted(item.options - set(item.deprecated or ()), key=str)}
    if isinstance(item, Interval):
        kind = {numbers.Integral: "integer", RealNotInt: "real_not_int"}.get(item.type, "real")
        return {"kind": kind, "left": _bound(item.left), "right": _bound(item.right), "closed": item.closed}
    if isinstance(item, str):
        # "boolean", "random_state", "verbose", "array-like", "sparse matrix", "cv_object", ...
        return {"kind": item}
    if isinstance(item, type):
        names: dict[Any, str] = {
            numbers.Integral: "integer",
            numbers.Real: "real",
            str: "string",
            dict: "object",
            list: "array",
        }
        return {"kind": names.get(item, "unsupported")}
    return {"kind": "unsupported"}  # HasMethods, callables: nothing a spec can express


def generate() -> dict[str, Any]:
    algorithms: dict[str, Any] = {}
    for task, classes in ALGORITHMS.items():
        algorithms[task] = {}
        for name, cls in classes.items():
            defaults = cls().get_params(deep=False)
            params = {}
            for param in sorted(defaults):
                constraints = cls._parameter_constraints.get(param, [])
                params[param] = [_constraint(c) for c in constraints]
            algorithms[task][name] = params
    return {"sklearn": sklearn.__version__, "algorithms": algorithms}


def render() -> str:
    return json.dumps(generate(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kstudio-dev vocabulary", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET} is out of date: kstudio-dev vocabulary", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
