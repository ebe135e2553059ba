"""Container environment as kubelet builds it (pure: lookups are passed in).

Order (kubelet's makeEnvironmentVariables): service links first, then envFrom, then env with $(VAR)
expansion against everything defined before it. Image ENV comes first of all and may be overridden.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .quantity import ceil_div, parse_quantity

JSON = dict[str, Any]
# (kind, namespace, name) -> the object's data as str values, or None when absent
Lookup = Callable[[str, str], Mapping[str, str] | None]


class EnvError(Exception):
    """The env cannot be built (missing non-optional Secret/ConfigMap/key): CreateContainerConfigError."""


@dataclass(frozen=True)
class PodFacts:
    pod_ip: str
    host_ip: str
    node_allocatable_cpu: Fraction = Fraction(2)
    node_allocatable_memory: Fraction = Fraction(24 * 2**30)


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)|\$\$")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined refs are replaced, $$ escapes, unknown refs stay literal."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, value)


def service_env(services: list[JSON], pod_namespace: str, enable_service_links: bool) -> dict[str, str]:
    """Docker-links style variables for Services (kubelet getServiceEnvVarMap).

    Always the `kubernetes` Service of the default namespace; other Services of the pod's namespace only
    when enableServiceLinks (default true).
    """
    chosen: dict[str, JSON] = {}
    for svc in services:
        meta, spec = svc.get("metadata", {}), svc.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        ns, name = meta.get("namespace"), meta.get("name", "")
        is_master = ns == "default" and name == "kubernetes"
        if is_master or (ns == pod_namespace and enable_service_links and name not in chosen):
            chosen[name] = svc
    env: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name]["spec"]
        prefix = name.upper().replace("-", "_")
        ip = spec["clusterIP"]
        ports = spec.get("ports") or []
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        first = ports[0]
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            base = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            env[base] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(p["port"])
            env[f"{base}_ADDR"] = ip
    return env


def field_ref(pod: JSON, path: str, facts: PodFacts) -> str:
    meta = pod.get("metadata", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.get("spec", {}).get("nodeName", ""),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", ""),
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
    }
    if path in {"metadata.labels", "metadata.annotations"}:
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise EnvError(f"unsupported fieldRef fieldPath {path!r}")
    return str(simple[path])


def resource_ref(pod: JSON, ref: JSON, default_container: str, facts: PodFacts) -> str:
    cname = ref.get("containerName") or default_container
    containers = pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
    container = next((c for c in containers if c["name"] == cname), None)
    if container is None:
        raise EnvError(f"resourceFieldRef names unknown container {cname!r}")
    kind, _, res = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(res)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(res)
    if raw is not None:
        value = parse_quantity(raw)
    elif res == "cpu":
        value = facts.node_allocatable_cpu if kind == "limits" else Fraction(0)
    elif res == "memory":
        value = facts.node_allocatable_memory if kind == "limits" else Fraction(0)
    else:
        value = Fraction(0)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise EnvError(f"resourceFieldRef {ref['resource']} has a zero divisor")
    return str(ceil_div(value, divisor))


def _source(lookup: Lookup, kind: str, name: str, optional: bool) -> Mapping[str, str] | None:
    data = lookup(kind, name)
    if data is None and not optional:
        raise EnvError(f'{kind} "{name}" not found')
    return data


def resolve_env(
    pod: JSON,
    container: JSON,
    facts: PodFacts,
    lookup: Lookup,
    services: list[JSON],
    image_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's final environment; raises EnvError for what kubelet reports as config errors."""
    namespace = pod["metadata"]["namespace"]
    spec = pod.get("spec", {})
    env: dict[str, str] = dict(image_env or {})
    kube_env: dict[str, str] = {}
    kube_env.update(service_env(services, namespace, spec.get("enableServiceLinks", True)))
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        if "configMapRef" in src:
            ref, kind = src["configMapRef"], "configmap"
        elif "secretRef" in src:
            ref, kind = src["secretRef"], "secret"
        else:
            continue
        data = _source(lookup, kind, ref["name"], bool(ref.get("optional")))
        for key, value in (data or {}).items():
            kube_env[prefix + key] = value
    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            kube_env[name] = expand(item.get("value", ""), {**env, **kube_env})
            continue
        vf = item["valueFrom"]
        if "fieldRef" in vf:
            kube_env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"], facts)
        elif "resourceFieldRef" in vf:
            kube_env[name] = resource_ref(pod, vf["resourceFieldRef"], container["name"], facts)
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind = "secret" if "secretKeyRef" in vf else "configmap"
            ref = vf["secretKeyRef"] if kind == "secret" else vf["configMapKeyRef"]
            optional = bool(ref.get("optional"))
            data = _source(lookup, kind, ref["name"], optional)
            if data is None:
                continue
            if ref["key"] not in data:
                if optional:
                    continue
                what = "Secret" if kind == "secret" else "ConfigMap"
                raise EnvError(f"couldn't find key {ref['key']} in {what} {namespace}/{ref['name']}")
            kube_env[name] = data[ref["key"]]
    env.update(kube_env)
    return env


def expand_command(args: list[str], env: Mapping[str, str]) -> list[str]:
    return [expand(a, env) for a in args]
