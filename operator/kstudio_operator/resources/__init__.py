"""The five custom resources as pydantic models: the single source of truth for the CRD schemas.

`kstudio crds` turns these models into crds/*.yaml (see kstudio_operator.crdgen); the handlers parse
objects with the same models, so what the API server accepts and what the operator understands cannot
drift apart.
"""

from __future__ import annotations

from kstudio_operator.resources.batchjob import BATCH_JOB, BatchJobSpec, BatchJobStatus
from kstudio_operator.resources.common import Condition, ResourceKind
from kstudio_operator.resources.endpoint import ENDPOINT, EndpointSpec, EndpointStatus
from kstudio_operator.resources.experiment import EXPERIMENT, ExperimentSpec, ExperimentStatus, RunRecord
from kstudio_operator.resources.trainedmodel import TRAINED_MODEL, TrainedModelSpec, TrainedModelStatus
from kstudio_operator.resources.webservice import WEB_SERVICE, WebServiceSpec, WebServiceStatus

ALL_KINDS: tuple[ResourceKind, ...] = (EXPERIMENT, TRAINED_MODEL, WEB_SERVICE, ENDPOINT, BATCH_JOB)

__all__ = [
    "ALL_KINDS",
    "BATCH_JOB",
    "ENDPOINT",
    "EXPERIMENT",
    "TRAINED_MODEL",
    "WEB_SERVICE",
    "BatchJobSpec",
    "BatchJobStatus",
    "Condition",
    "EndpointSpec",
    "EndpointStatus",
    "ExperimentSpec",
    "ExperimentStatus",
    "ResourceKind",
    "RunRecord",
    "TrainedModelSpec",
    "TrainedModelStatus",
    "WebServiceSpec",
    "WebServiceStatus",
]
