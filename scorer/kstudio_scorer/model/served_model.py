"""The served model: fetch the .ilearner, verify its digest, load it, warm it up, predict.

`ScoringModel.load()` is blocking (run it in a thread); `ready` turns true only after a warm-up prediction
succeeded. `predict()` is thread-safe for scikit-learn estimators (read-only) and is called from one
worker thread by the micro-batcher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kstudio_core.environment import TrafficModel
from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_INPUT_ERROR
from kstudio_core.ilearner import DigestMismatchError, IlearnerManifest, sha256_file
from kstudio_core.storage import ObjectStore, S3Uri, StorageSettings
from kstudio_scorer.errors import PredictionError
from kstudio_scorer.model.artifact import load_ilearner
from kstudio_scorer.model.columns import Column, Columns, schema_of
from kstudio_scorer.model.forest import ForestPredictor
from kstudio_scorer.model.inflation import ModelSizeLimit, model_size_limit
from kstudio_scorer.settings import ScorerSettings

log = logging.getLogger(__name__)

State = Literal["loading", "ready", "failed"]

# Final estimators whose predict() is exactly classes_[argmax(predict_proba())]: for these we compute
# probabilities once and derive labels, instead of running the model twice (a forest's predict() calls
# predict_proba() internally).
_ARGMAX_CONSISTENT = frozenset(
    {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "LogisticRegression",
        "GaussianNB",
        "KNeighborsClassifier",
    }
)


@dataclass
class Prediction:
    """Model output for n rows. Classification: labels (+ probabilities); regression: values; transform:
    the transformed columns, one per column of `transformed` (named by the model's output_columns)."""

    labels: npt.NDArray[Any] | None = None
    probabilities: npt.NDArray[np.float64] | None = None
    values: npt.NDArray[Any] | None = None
    transformed: npt.NDArray[np.float64] | None = None

    def slice(self, start: int, stop: int) -> Prediction:
        return Prediction(
            None if self.labels is None else self.labels[start:stop],
            None if self.probabilities is None else self.probabilities[start:stop],
            None if self.values is None else self.values[start:stop],
            None if self.transformed is None else self.transformed[start:stop],
        )


class ModelLoadError(Exception):
    """The model cannot be served. `exit_code`: 2 = the artifact or configuration is wrong (do not retry),
    75 = infrastructure (object storage unreachable; a restart may help)."""

    def __init__(self, message: str, exit_code: int, model: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.model = model  # which of the pod's models, when it serves several


def _final_estimator(pipeline: Any) -> Any:
    steps = getattr(pipeline, "steps", None)
    return steps[-1][1] if steps else pipeline


class ScoringModel:
    """One model, loaded once per process: `source` (default: the first the settings name), by its
    TrainedModel name, artifact, sha256 and weight in the endpoint's traffic split."""

    def __init__(
        self,
        settings: ScorerSettings,
        store_factory: Callable[[], ObjectStore] | None = None,
        source: TrafficModel | None = None,
    ) -> None:
        source = source or settings.served_models()[0]
        self.settings = settings
        self.name = source.name
        self.digest = source.sha256
        self.uri = source.uri
        self.weight = source.weight
        # What it may inflate to: the pod's limit, less what the models loaded before it took.
        self.size_limit: ModelSizeLimit | None = None
        self.inflated_bytes = 0
        self._store_factory = store_factory or (lambda: ObjectStore(StorageSettings.from_env()))
        self.state: State = "loading"
        self.error: str | None = None
        self.manifest: IlearnerManifest | None = None
        self.schema: tuple[Column, ...] = ()
        self.classes: list[Any] = []
        self.output_columns: list[str] = []  # a transform's answer: its transformed columns
        self._pipeline: Any = None
        self._as_frame = True
        self._argmax_labels = False
        self._classes_array: npt.NDArray[Any] | None = None
        self._forest: ForestPredictor | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def task(self) -> str:
        assert self.manifest is not None
        return self.manifest.task

    # --- loading ---------------------------------------------------------------------------------
    def fetch(self) -> Path:
        """Local path of the artifact, downloaded from object storage if the URI is s3://.

        The downloaded bytes' digest is compared before the file is kept; load_ilearner checks it again
        on the bytes it actually parses.
        """
        uri = self.uri
        if not uri.startswith("s3://"):
            return Path(uri)
        from kstudio_core.storage import StorageError

        target = self.settings.model_dir / f"{self.digest}.ilearner"
        if target.exists() and sha256_file(target) == self.digest:
            return target
        try:
            store = self._store_factory()
            got = store.download(S3Uri.parse(uri), target)
        except StorageError as exc:
            retry = type(exc).__name__ == "StorageUnavailableError"
            raise ModelLoadError(
                f"cannot download the model {uri}: {exc}",
                EXIT_INFRASTRUCTURE_ERROR if retry else EXIT_INPUT_ERROR,
            ) from exc
        except ValueError as exc:
            raise ModelLoadError(f"bad model URI {uri!r}: {exc}", EXIT_INPUT_ERROR) from exc
        if got != self.digest:
            target.unlink(missing_ok=True)
            raise ModelLoadError(
                f"downloaded {uri} has sha256 {got}, expected {self.digest}; refusing to load it",
                EXIT_INPUT_ERROR,
            )
        return target

    def load(self) -> None:
        """Fetch, verify, load and warm up. Sets state to ready, or to failed with `error` (and raises)."""
        started = time.monotonic()
        try:
            path = self.fetch()
            fetched = time.monotonic()
            self._install(path)
            installed = time.monotonic()
            self._warm_up()
        except ModelLoadError as exc:
            self._fail(str(exc))
            raise
        except DigestMismatchError as exc:
            self._fail(str(exc))
            raise ModelLoadError(str(exc), EXIT_INPUT_ERROR) from exc
        except Exception as exc:  # any other artifact or model failure: the artifact is unusable
            self._fail(f"{type(exc).__name__}: {exc}")
            raise ModelLoadError(f"cannot load the model: {exc}", EXIT_INPUT_ERROR) from exc
        self.state = "ready"
        done = time.monotonic()
        log.info(
            "model %s ready (sha256 %s, task %s) in %.2f s: fetch %.2f s, verify+load %.2f s, warm-up %.2f s",
            self.name,
            self.digest,
            self.task,
            done - started,
            fetched - started,
            installed - fetched,
            done - installed,
        )

    def _fail(self, message: str) -> None:
        self.state = "failed"
        self.error = message
        log.error("model %s failed to load: %s", self.name, message)

    def _install(self, path: Path) -> None:
        try:
            limit = self.size_limit or model_size_limit(self.settings.max_model_bytes)
            loaded = load_ilearner(path, self.digest, limit)
        except FileNotFoundError as exc:
            raise ModelLoadError(f"model file {path} does not exist", EXIT_INPUT_ERROR) from exc
        self.manifest = loaded.manifest
        self.inflated_bytes = loaded.inflated_bytes
        self._pipeline = loaded.pipeline
        self._forest = ForestPredictor(loaded.pipeline) if loaded.manifest.task != "transform" else None
        self.output_columns = list(loaded.manifest.outputColumns)
        self.schema = schema_of(loaded.manifest.inputSchema)
        numeric = all(c.type in ("number", "integer") for c in self.schema)
        # A pipeline fitted on a DataFrame selects columns by name; one fitted on a bare matrix wants the
        # schema's column order. Matrices skip building a DataFrame per request.
        self._as_frame = hasattr(loaded.pipeline, "feature_names_in_") or not numeric
        if self.manifest.task == "classification":
            raw = getattr(loaded.pipeline, "classes_", None)
            self.classes = list(raw.tolist() if raw is not None else self.manifest.classes)
            final = _final_estimator(loaded.pipeline)
            self._argmax_labels = (
                type(final).__name__ in _ARGMAX_CONSISTENT
                and callable(getattr(loaded.pipeline, "predict_proba", None))
                and raw is not None
            )
            self._classes_array = np.asarray(raw) if raw is not None else None

    def warm_up_columns(self) -> Columns:
        """One synthetic row: 0 for numbers, False for booleans, the first known category for strings."""
        assert self.manifest is not None
        arrays: dict[str, npt.NDArray[Any]] = {}
        for spec in self.manifest.inputSchema:
            if spec.type in ("number", "integer"):
                arrays[spec.name] = np.zeros(1, dtype=np.float64)
            elif spec.type == "boolean":
                arrays[spec.name] = np.zeros(1, dtype=bool)
            else:
                arr = np.empty(1, dtype=object)
                arr[0] = spec.categories[0] if spec.categories else ""
                arrays[spec.name] = arr
        return Columns(arrays, 1)

    def _warm_up(self) -> None:
        pred = self.predict(self.warm_up_columns())
        if pred.transformed is not None and pred.transformed.shape[1] != len(self.output_columns):
            raise ModelLoadError(
                f"the transform gives {pred.transformed.shape[1]} columns, its manifest names "
                f"{len(self.output_columns)}",
                EXIT_INPUT_ERROR,
            )

    # --- predicting ------------------------------------------------------------------------------
    def model_input(self, columns: Columns) -> Any:
        if self._as_frame:
            # Imported here: a process whose models all take matrices (a BatchJob shard, mostly) never
            # loads pandas (bes/shard_memory.py).
            import pandas as pd

            return pd.DataFrame(columns.arrays, columns=[c.name for c in self.schema], copy=False)
        arrays = [columns.arrays[c.name] for c in self.schema]
        return np.column_stack(arrays) if len(arrays) > 1 else arrays[0].reshape(-1, 1)

    def predict(self, columns: Columns) -> Prediction:
        """Score validated columns. Raises PredictionError if the model itself raises."""
        x = self.model_input(columns)
        if self.task == "transform":
            try:
                return Prediction(transformed=np.asarray(self._pipeline.transform(x), dtype=np.float64))
            except (ValueError, TypeError) as exc:
                raise PredictionError(f"the transform could not prepare this input: {exc}") from exc
        p = self._forest
        assert p is not None, "predict() before load()"
        try:
            if self.task != "classification":
                return Prediction(values=np.asarray(p.predict(x)))
            has_proba = callable(getattr(self._pipeline, "predict_proba", None))
            proba = p.predict_proba(x) if has_proba else None
            if self._argmax_labels and proba is not None and self._classes_array is not None:
                labels = self._classes_array[np.argmax(proba, axis=1)]
            else:
                labels = np.asarray(p.predict(x))
            return Prediction(labels=labels, probabilities=None if proba is None else np.asarray(proba))
        except (ValueError, TypeError) as exc:
            raise PredictionError(f"the model could not score this input: {exc}") from exc
