"""The example datasets (bundled in installed packages: no download at run time), their Experiment specs,
and their upload; used by `make demo`, the tests and bench/, never by the product.

- penguins (palmerpenguins): classification of `species`, with categoricals and missing values;
- diabetes (scikit-learn's bundled set): regression of `target`, ten numeric features.

    kstudio-dev upload-examples [--endpoint HOST:PORT --access-key-file F --secret-key-file F] [--bucket B]

Without flags, storage settings come from KSTUDIO_S3_* (StorageSettings.from_env).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_INPUT_ERROR, EXIT_OK
from kstudio_core.storage import ObjectStore, S3Uri, StorageError, StorageSettings

log = logging.getLogger("kstudio.examples")

DEFAULT_BUCKET = "datasets"


def penguins_frame() -> pd.DataFrame:
    """344 penguins: species (label), island, bill/flipper/body measurements, sex, year; some missing."""
    from palmerpenguins import load_penguins

    frame: pd.DataFrame = load_penguins()
    return frame


def diabetes_frame() -> pd.DataFrame:
    """442 patients: ten standardized numeric features and `target` (disease progression after a year)."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True)
    frame: pd.DataFrame = bunch.frame
    return frame


def penguins_early_frame() -> pd.DataFrame:
    """The penguins of the 2007 and 2008 field seasons only: the demo's first training set, before the
    2009 season arrives as new data."""
    frame = penguins_frame()
    return frame[frame["year"] < 2009].reset_index(drop=True)


EXAMPLES: dict[str, Callable[[], pd.DataFrame]] = {
    "penguins.csv": penguins_frame,
    "penguins-2007-2008.csv": penguins_early_frame,
    "diabetes.csv": diabetes_frame,
}


def example_csv(name: str) -> bytes:
    buffer = io.StringIO()
    EXAMPLES[name]().to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def penguins_snapshot(uri: str = "s3://datasets/penguins.csv", **overrides: Any) -> dict[str, Any]:
    """The penguins Experiment spec (as the operator would snapshot it)."""
    spec: dict[str, Any] = {
        "dataset": {"uri": uri, "format": "csv"},
        "label": "species",
        "features": ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"],
        "task": "classification",
        "preprocessing": {"impute": "median", "scale": "standard", "categorical": "onehot"},
        "algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 100}},
        "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": ["accuracy", "f1_macro", "roc_auc"]},
    }
    spec.update(overrides)
    return spec


def diabetes_snapshot(uri: str = "s3://datasets/diabetes.csv", **overrides: Any) -> dict[str, Any]:
    """The diabetes regression Experiment spec."""
    spec: dict[str, Any] = {
        "dataset": {"uri": uri, "format": "csv"},
        "label": "target",
        "task": "regression",
        "algorithm": {"name": "Ridge", "params": {"alpha": 1.0}},
        "evaluation": {"testFraction": 0.2, "seed": 42, "metrics": ["rmse", "mae", "r2"]},
    }
    spec.update(overrides)
    return spec


def upload_examples(store: ObjectStore, bucket: str = DEFAULT_BUCKET) -> dict[str, str]:
    """Upload every example CSV to `s3://<bucket>/`; returns {uri: sha256}."""
    store.ensure_bucket(bucket)
    uploaded: dict[str, str] = {}
    for name in EXAMPLES:
        uri = S3Uri(bucket, name)
        data = example_csv(name)
        uploaded[str(uri)] = store.put_bytes(data, uri, content_type="text/csv")
        log.info("uploaded %s (%d bytes, sha256 %s)", uri, len(data), uploaded[str(uri)])
    return uploaded


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="kstudio-dev upload-examples", description="upload the example datasets")
    p.add_argument("--endpoint", help="host:port (default: KSTUDIO_S3_ENDPOINT)")
    p.add_argument("--access-key-file", type=Path, help="file holding the access key")
    p.add_argument("--secret-key-file", type=Path, help="file holding the secret key")
    p.add_argument("--secure", action="store_true", help="use https")
    p.add_argument("--bucket", default=DEFAULT_BUCKET)
    try:
        args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        settings = _settings(args)
    except (StorageError, OSError) as exc:
        log.error("storage settings: %s", exc)
        return EXIT_INPUT_ERROR
    try:
        uploaded = upload_examples(ObjectStore(settings), args.bucket)
    except StorageError as exc:
        log.error("%s", exc)
        return EXIT_INFRASTRUCTURE_ERROR
    for uri in uploaded:
        print(uri)
    return EXIT_OK


def _settings(args: argparse.Namespace) -> StorageSettings:
    if not args.endpoint:
        return StorageSettings.from_env()
    if not (args.access_key_file and args.secret_key_file):
        raise StorageError("--endpoint needs --access-key-file and --secret-key-file")
    return StorageSettings(
        endpoint=args.endpoint,
        access_key=args.access_key_file.read_text().strip(),
        secret_key=args.secret_key_file.read_text().strip(),
        secure=args.secure,
    )
