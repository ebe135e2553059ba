"""Operator settings, from environment variables prefixed KSTUDIO_ (documented inline)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version

IMAGE_REPOSITORY = "kstudio"


def released_image() -> str:
    """The image this version of kstudio is released as, `kstudio:<version>` (the Helm chart's default
    too). Set KSTUDIO_IMAGE for another registry or tag, e.g. ghcr.io/<org>/kstudio:0.1.0."""
    return f"{IMAGE_REPOSITORY}:{version('kstudio')}"


@dataclass(frozen=True)
class OperatorConfig:
    # Image of the training Jobs and the scorer pods (KSTUDIO_IMAGE; default: released_image()).
    image: str = field(default_factory=released_image)
    image_pull_policy: str = "IfNotPresent"
    # Object-storage endpoint as seen *from pods* (host:port). The operator itself uses KSTUDIO_S3_ENDPOINT
    # (via StorageSettings.from_env); they differ when the operator reaches the store another way than
    # pods do (e.g. through a port-forward).
    pod_s3_endpoint: str = ""
    pod_s3_secure: bool = False
    # Seconds between two unprompted reconciliations of one object: the safety net behind the watch
    # events that wake reconciles (schedules have their own precise wake-up).
    resync_seconds: float = 300.0
    # Bucket where endpoints with logging level Error/All write request samples (<ns>/<endpoint>/...).
    logs_bucket: str = "kstudio-logs"
    # Port of the operator's Prometheus /metrics (0: not served).
    metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        secure = env.get("KSTUDIO_S3_SECURE", "false").lower() in {"1", "true", "yes"}
        pod_secure = env.get("KSTUDIO_S3_POD_SECURE")
        return cls(
            image=env.get("KSTUDIO_IMAGE") or released_image(),
            image_pull_policy=env.get("KSTUDIO_IMAGE_PULL_POLICY", cls.image_pull_policy),
            pod_s3_endpoint=env.get("KSTUDIO_S3_POD_ENDPOINT") or env.get("KSTUDIO_S3_ENDPOINT", ""),
            pod_s3_secure=secure if pod_secure is None else pod_secure.lower() in {"1", "true", "yes"},
            resync_seconds=float(env.get("KSTUDIO_RESYNC_SECONDS", cls.resync_seconds)),
            metrics_port=int(env.get("KSTUDIO_METRICS_PORT") or 0),
            logs_bucket=env.get("KSTUDIO_LOGS_BUCKET", cls.logs_bucket),
        )
