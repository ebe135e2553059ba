"""The children of an Endpoint, as pure functions: scorer Deployment, Service, keys Secret.

A change of the served models (their URIs, sha256s and weights are in the pod template's env and
annotations: builders/traffic.py) is a change of the pod template, so the Deployment rolls with
maxUnavailable 0: a new pod takes traffic only once its readiness probe passes, which the scorer allows
after download, digest check, load and warm-up of every model; an old pod, on SIGTERM, stays
ready-for-its-connections during the drain (Connection: close) while the EndpointSlice change propagates,
then finishes its in-flight requests.
"""

from __future__ import annotations

import secrets
from typing import Any

from kstudio_core.environment import FieldRef, MirrorModel, ScorerEnv, TrafficModel
from kstudio_operator import constants as c
from kstudio_operator.builders.traffic import ServedModel, Split
from kstudio_operator.builders.training import (
    SCRATCH,
    container_basics,
    pod_storage,
    process_env,
    restricted_pod_security_context,
    s3_credentials_volume,
)
from kstudio_operator.resources.endpoint import EndpointSpec
from kstudio_operator.settings import OperatorConfig

SCORER_CONTAINER = "scorer"
SCORER_PORT = 8080
SERVICE_PORT = 80
KEYS_MOUNT = "/var/run/secrets/kstudio/keys"
# SIGTERM → not ready at once, keep answering (Connection: close) for DRAIN_SECONDS while kube-proxy
# drops the pod from the Service, then finish in-flight requests within SHUTDOWN_GRACE_SECONDS.
DRAIN_SECONDS = 3
SHUTDOWN_GRACE_SECONDS = 20
KEY_NAMES = ("primaryKey", "secondaryKey")


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(quantity: str) -> int:
    """A memory quantity ("512Mi", "1G", "2147483648") in bytes (the CRD schema has checked its form)."""
    for suffix, factor in _UNITS.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))


def keys_secret_name(endpoint: str) -> str:
    return f"{endpoint}-keys"


def endpoint_labels(endpoint: str, web_service: str) -> dict[str, str]:
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_COMPONENT: "scorer",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_PART_OF: web_service,
        c.LABEL_ENDPOINT: endpoint,
        c.LABEL_WEB_SERVICE: web_service,
    }


def new_key() -> str:
    return secrets.token_urlsafe(32)


def keys_secret(namespace: str, endpoint: str, web_service: str, keys: dict[str, str]) -> dict[str, Any]:
    """The Secret `<endpoint>-keys` with primaryKey and secondaryKey (values never leave Secrets)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": keys_secret_name(endpoint),
            "namespace": namespace,
            "labels": endpoint_labels(endpoint, web_service),
        },
        "stringData": {k: keys[k] for k in KEY_NAMES},
    }


def service(namespace: str, endpoint: str, web_service: str) -> dict[str, Any]:
    labels = endpoint_labels(endpoint, web_service)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": endpoint, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {c.LABEL_ENDPOINT: endpoint, c.LABEL_COMPONENT: "scorer"},
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": SCORER_PORT, "protocol": "TCP"}],
        },
    }


def service_url(namespace: str, endpoint: str) -> str:
    return f"http://{endpoint}.{namespace}.svc:{SERVICE_PORT}"


def deployment(
    namespace: str,
    endpoint: str,
    web_service: str,
    spec: EndpointSpec,
    served: Split | ServedModel,
    output: dict[str, Any],
    config: OperatorConfig,
    credentials_secret: str = "kstudio-s3",  # noqa: S107  (a Secret's name, not a password)
) -> dict[str, Any]:
    """The scorer Deployment of an Endpoint serving `served` (its split, or one model alone). `output`: the
    WebService's output spec."""
    split = served if isinstance(served, Split) else Split((served,))
    labels = endpoint_labels(endpoint, web_service)
    pod_env = ScorerEnv(
        traffic=[
            TrafficModel(name=m.name, uri=m.uri, sha256=m.sha256, weight=m.weight) for m in split.models
        ],
        mirror=MirrorModel(name=mirror.name, uri=mirror.uri, sha256=mirror.sha256, percent=mirror.weight)
        if (mirror := split.mirror)
        else None,
        # OIP V2 clients address /v2/models/<endpoint>: stable across model patches; the answer's
        # model_name and model_version name the model that answered (its TrainedModel and sha256).
        model_name=endpoint,
        port=SCORER_PORT,
        storage=pod_storage(config),
        auth_enabled=spec.auth.enabled,
        keys_dir=KEYS_MOUNT,
        max_concurrent_calls=spec.max_concurrent_calls,
        logging_level=spec.logging.level,
        sample_data=spec.logging.sample_data,
        # The scorer refuses models that inflate beyond this, before allocating (half the memory limit,
        # for all the models of its split together).
        max_model_bytes=quantity_bytes(spec.resources.memory) // 2,
        logging_uri=f"s3://{config.logs_bucket}/{namespace}/{endpoint}",
        output_columns=list(output.get("columns") or []),
        output_include_inputs=bool(output.get("includeInputs")),
        # Batch jobs of every replica in one store, so any replica answers for any job.
        jobs_store_uri=f"s3://{config.logs_bucket}/{namespace}/{endpoint}/jobs",
        pod_name=FieldRef(field_path="metadata.name"),
        drain_seconds=DRAIN_SECONDS,
        shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS,
        model_dir=f"{SCRATCH}/model",
        jobs_work_dir=f"{SCRATCH}/jobs",
    )
    env = pod_env.container_env() + process_env()
    probe = {"httpGet": {"path": "/readyz", "port": SCORER_PORT}, "periodSeconds": 1, "failureThreshold": 2}
    container = {
        "name": SCORER_CONTAINER,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["kstudio"],
        "args": ["serve"],
        "env": env,
        "ports": [{"name": "http", "containerPort": SCORER_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": SCORER_PORT},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "initialDelaySeconds": 30,
        },
        **container_basics(spec.resources.cpu, spec.resources.memory),
        "volumeMounts": [
            {"name": "keys", "mountPath": KEYS_MOUNT, "readOnly": True},
            {"name": "s3-credentials", "mountPath": c.S3_CREDENTIALS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": SCRATCH},
        ],
    }
    primary = split.primary
    template_annotations = {
        c.ANNOTATION_MODEL: primary.name,
        c.ANNOTATION_MODEL_SHA256: primary.sha256,
        c.ANNOTATION_TRAFFIC: split.annotation(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": endpoint, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {c.LABEL_ENDPOINT: endpoint, c.LABEL_COMPONENT: "scorer"}},
            # All new pods start at once (a patch completes in one pod start, not one per replica); no old
            # pod goes before a new one is ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "100%"}},
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": DRAIN_SECONDS + SHUTDOWN_GRACE_SECONDS + 5,
                    "securityContext": restricted_pod_security_context(),
                    **spec.scheduling.pod_spec_fields(),
                    "containers": [container],
                    "volumes": [
                        {"name": "keys", "secret": {"secretName": keys_secret_name(endpoint)}},
                        s3_credentials_volume(credentials_secret),
                        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                    ],
                },
            },
        },
    }
