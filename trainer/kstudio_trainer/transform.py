"""A transform run, without I/O: table + snapshot -> fitted preprocessing, its output columns, manifest.

Studio's non-predictive experiment (input -> manipulate -> output): the features (column selection) are
imputed, scaled and encoded exactly as a model's inputs would be, fitted on every row (nothing is held
out: there is nothing to evaluate), and the fitted preprocessing is the whole pipeline. Its output columns
are named after their inputs (`bill_length_mm`, `island_Biscoe`); when two would share a name, they keep
their transformer's prefix instead (`numeric__...`, `categorical__...`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
from sklearn.pipeline import Pipeline

from kstudio_core.ilearner import IlearnerManifest
from kstudio_trainer.artifact_writer import framework_versions
from kstudio_trainer.data import prepare_features
from kstudio_trainer.errors import DataError
from kstudio_trainer.pipeline import PREPROCESS_STEP, build_preprocessing
from kstudio_trainer.spec import ExperimentSnapshot
from kstudio_trainer.training import TrainingOutcome

log = logging.getLogger("kstudio.train")


def train_transform(
    frame: pd.DataFrame, spec: ExperimentSnapshot, snapshot: dict[str, Any], run: int | None
) -> TrainingOutcome:
    """Fit the preprocessing on every row. Raises DataError for bad data."""
    started = time.monotonic()
    x, plan, schema = prepare_features(frame, spec)
    log.info(
        "transform: %d numeric %s, %d categorical %s; %d rows",
        len(plan.numeric),
        plan.numeric,
        len(plan.categorical),
        plan.categorical,
        len(x),
    )
    pipeline, names = None, []
    for short_names in (True, False):
        pipeline = Pipeline([(PREPROCESS_STEP, build_preprocessing(spec, plan, short_names=short_names))])
        try:
            pipeline.fit(x)
            names = [str(n) for n in pipeline.get_feature_names_out()]
        except ValueError as exc:
            if short_names and "not unique" in str(exc):
                continue  # two outputs would share a short name: keep the prefixed ones
            raise DataError(f"the preprocessing failed on this data: {exc}") from exc
        break
    assert pipeline is not None
    log.info("output: %d columns %s", len(names), names[:20])
    manifest = IlearnerManifest(
        task="transform",
        inputSchema=schema,
        outputColumns=names,
        frameworks={**framework_versions(), "pandas": pd.__version__},
        experiment=snapshot,
        run=run,
    )
    return TrainingOutcome(
        pipeline=pipeline,
        manifest=manifest,
        metrics={},
        schema=schema,
        classes=[],
        rows={"train": len(x), "test": 0, "droppedNoLabel": 0},
        seconds=round(time.monotonic() - started, 3),
    )
