"""What every pod worker shares: config, API client, CNI, cgroups, node facts, events."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from .cgroups import CgroupRoot
from .config import AgentConfig
from .kubeapi import ApiError, KubeClient
from .sandbox import CniNetwork
from .volumes import decode_configmap, decode_secret

JSON = dict[str, Any]
log = logging.getLogger("kstudio.nodeagent")
EVENT_DEDUP_SECONDS = 600.0


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_key(pod: JSON) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


@dataclass
class NodeContext:
    cfg: AgentConfig
    client: KubeClient
    cni: CniNetwork
    cgroups: CgroupRoot
    cpu: Fraction
    memory: Fraction
    # (pod uid, type, reason, message, fieldPath) -> (event name, count, first seen): repeats bump a count
    recent_events: dict[tuple[str, ...], tuple[str, int, float]] = field(default_factory=dict)
    events_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pods_dir(self) -> Path:
        return self.cfg.state_dir / "pods"

    @property
    def exposed_paths(self) -> list[str]:
        """Host paths every container sees read-only: the Python prefix, the checkout and the image venv."""
        paths = [str(Path(sys.base_prefix).resolve()), str(self.cfg.repo)]
        venv = self.cfg.venv.resolve()
        return paths if self.cfg.repo.resolve() in (venv, *venv.parents) else [*paths, str(venv)]

    def get_object(self, kind: str, namespace: str, name: str) -> JSON | None:
        plural = {"secret": "secrets", "configmap": "configmaps"}[kind]
        return self.client.get_or_none(f"/api/v1/namespaces/{namespace}/{plural}/{name}")

    def lookup_text(self, namespace: str, kind: str, name: str) -> Mapping[str, str] | None:
        data = self.lookup_bytes(namespace, kind, name)
        return None if data is None else {k: v.decode(errors="replace") for k, v in data.items()}

    def lookup_bytes(self, namespace: str, kind: str, name: str) -> Mapping[str, bytes] | None:
        obj = self.get_object(kind, namespace, name)
        if obj is None:
            return None
        return decode_secret(obj) if kind == "secret" else decode_configmap(obj)

    def services(self) -> list[JSON]:
        items: list[JSON] = self.client.get("/api/v1/services").get("items", [])
        return items

    def request_token(self, pod: JSON, audience: str, expiration: int) -> tuple[str, float]:
        meta = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName") or "default"
        body: JSON = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": max(expiration, 600),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        if not audience:
            del body["spec"]["audiences"]
        out = self.client.create(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token", body)
        expires = datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
        return out["status"]["token"], expires.replace(tzinfo=UTC).timestamp()

    def event(self, pod: JSON, etype: str, reason: str, message: str, field_path: str = "") -> None:
        """Record a core/v1 Event on the pod (best effort, as kubelet's recorder)."""
        meta = pod["metadata"]
        now = utc_now()
        ref: JSON = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        }
        if field_path:
            ref["fieldPath"] = field_path
        body: JSON = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": etype,
            "source": {"component": "kubelet", "host": self.cfg.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.cfg.node_name,
        }
        key = (meta["uid"], etype, reason, message, field_path)
        now_s = time.monotonic()
        with self.events_lock:
            seen = self.recent_events.get(key)
            if len(self.recent_events) > 2000:
                self.recent_events.clear()
        try:
            if seen is not None and now_s - seen[2] < EVENT_DEDUP_SECONDS:
                # kubelet's correlator: the same event again updates count and lastTimestamp
                name, count, first = seen
                self.client.patch(
                    f"/api/v1/namespaces/{meta['namespace']}/events/{name}",
                    {"count": count + 1, "lastTimestamp": now},
                    kind="merge",
                )
                with self.events_lock:
                    self.recent_events[key] = (name, count + 1, first)
                return
            created = self.client.create(f"/api/v1/namespaces/{meta['namespace']}/events", body)
            with self.events_lock:
                self.recent_events[key] = (created["metadata"]["name"], 1, now_s)
        except (ApiError, OSError, KeyError) as exc:
            log.debug("event %s on %s not recorded: %s", reason, pod_key(pod), exc)
