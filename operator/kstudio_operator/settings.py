"""Operator settings, from environment variables prefixed KSTUDIO_ (documented inline)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import version

from kstudio_core.environment import StoreAddress, env_name, parse_endpoint, parse_flag

IMAGE_REPOSITORY = "kstudio"


def released_image() -> str:
    """The image this version of kstudio is released as, `kstudio:<version>` (the Helm chart's default
    too). Set KSTUDIO_IMAGE for another registry or tag, e.g. ghcr.io/<org>/kstudio:0.1.0."""
    return f"{IMAGE_REPOSITORY}:{version('kstudio')}"


# The store as the operator reaches it (the same variables its pods get), and as pods reach it when that
# differs (the pods' own variables are kstudio_core.environment's).
OWN_ENDPOINT = env_name("s3_endpoint")
OWN_SECURE = env_name("s3_secure")
POD_ENDPOINT = "KSTUDIO_S3_POD_ENDPOINT"
POD_SECURE = "KSTUDIO_S3_POD_SECURE"


@dataclass(frozen=True)
class OperatorConfig:
    # Image of the training Jobs and the scorer pods (KSTUDIO_IMAGE; default: released_image()).
    image: str = field(default_factory=released_image)
    image_pull_policy: str = "IfNotPresent"
    # Object-storage endpoint as seen *from pods* (host:port) and whether pods speak TLS to it. The operator
    # itself uses KSTUDIO_S3_ENDPOINT (via StorageSettings.from_env); they differ when the operator reaches
    # the store another way than pods do (e.g. through a port-forward). Both are read with the core's one
    # endpoint parser: a written `https://` means TLS.
    pod_s3_endpoint: str = ""
    pod_s3_secure: bool = False
    # Seconds between two unprompted reconciliations of one object: the safety net behind the watch
    # events that wake reconciles (schedules have their own precise wake-up).
    resync_seconds: float = 300.0
    # Reconcile workers per kind: how many objects of one kind are reconciled at once (runtime.py).
    workers: int = 8
    # Seconds a new WebService's or Endpoint's first status may stay in memory while it only says
    # "Pending, on its way" (Runtime.write_status): written at once when it is Ready, failed or needs the
    # user, else when this is over. 0: every status is written at once. See DESIGN.md §5.
    settle_seconds: float = 5.0
    # Bucket where endpoints with logging level Error/All write request samples (<ns>/<endpoint>/...).
    logs_bucket: str = "kstudio-logs"
    # Port of the operator's Prometheus /metrics (0: not served).
    metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        pod = _pod_store_address(env)
        return cls(
            image=env.get("KSTUDIO_IMAGE") or released_image(),
            image_pull_policy=env.get("KSTUDIO_IMAGE_PULL_POLICY", cls.image_pull_policy),
            pod_s3_endpoint=pod.host_port,
            pod_s3_secure=pod.secure,
            resync_seconds=float(env.get("KSTUDIO_RESYNC_SECONDS", cls.resync_seconds)),
            workers=max(1, int(env.get("KSTUDIO_WORKERS") or cls.workers)),
            settle_seconds=max(0.0, float(env.get("KSTUDIO_SETTLE_SECONDS") or cls.settle_seconds)),
            metrics_port=int(env.get("KSTUDIO_METRICS_PORT") or 0),
            logs_bucket=env.get("KSTUDIO_LOGS_BUCKET", cls.logs_bucket),
        )


def _pod_store_address(env: Mapping[str, str]) -> StoreAddress:
    """The store as pods reach it: KSTUDIO_S3_POD_ENDPOINT and _POD_SECURE, each defaulting to how the
    operator itself reaches it (KSTUDIO_S3_ENDPOINT, _SECURE). ValueError naming a variable it cannot read."""
    own_text = env.get(OWN_ENDPOINT, "").strip()
    pod_text = env.get(POD_ENDPOINT, "").strip()
    secure = _flag(env, OWN_SECURE, default=False)
    if own_text:
        secure = _address(OWN_ENDPOINT, own_text, secure).secure
    secure = _flag(env, POD_SECURE, default=secure)
    if pod_text:
        return _address(POD_ENDPOINT, pod_text, secure)
    return _address(OWN_ENDPOINT, own_text, secure) if own_text else StoreAddress("", secure)


def _address(name: str, text: str, secure: bool) -> StoreAddress:
    try:
        return parse_endpoint(text, secure)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    try:
        return parse_flag(env[name]) if name in env else default
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
