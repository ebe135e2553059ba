"""Container environment as kubelet builds it: order, expansion, refs, service links."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import pytest

from kstudio_localcluster.nodeagent.envvars import EnvError, PodFacts, expand, resolve_env, service_env

FACTS = PodFacts(pod_ip="10.244.0.12", host_ip="10.244.0.1", node_allocatable_cpu=Fraction(2))
OBJECTS: dict[tuple[str, str], dict[str, str]] = {
    ("secret", "db"): {"password": "s3cret", "user": "app"},
    ("configmap", "settings"): {"mode": "fast", "level": "3"},
}


def lookup(kind: str, name: str) -> Mapping[str, str] | None:
    return OBJECTS.get((kind, name))


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
        "spec": {"nodeName": "kst-node", "serviceAccountName": "sa", "containers": [container], **spec},
    }


def svc(ns: str, name: str, ip: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": ports}}


SERVICES = [
    svc("default", "kubernetes", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}]),
    svc("shop", "redis-main", "10.96.3.4", [{"port": 6379, "protocol": "TCP"}]),
    svc("other", "elsewhere", "10.96.9.9", [{"port": 80}]),
    svc("shop", "headless", "None", [{"port": 80}]),
]


def test_expand_replaces_defined_refs_keeps_unknown_and_unescapes_double_dollar() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "x-y-$(C)-$(A)"


def test_kubernetes_service_vars_are_always_there_and_own_namespace_links_by_default() -> None:
    env = service_env(SERVICES, "shop", enable_service_links=True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    assert env["REDIS_MAIN_SERVICE_HOST"] == "10.96.3.4"
    assert env["REDIS_MAIN_PORT_6379_TCP_PORT"] == "6379"
    assert not any(k.startswith(("ELSEWHERE_", "HEADLESS_")) for k in env)


def test_disabling_service_links_keeps_only_the_kubernetes_service() -> None:
    env = service_env(SERVICES, "shop", enable_service_links=False)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith("REDIS_MAIN") for k in env)


def test_resolve_env_orders_image_then_services_then_envfrom_then_env_with_expansion() -> None:
    container = {
        "name": "web",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}}],
        "env": [
            {"name": "PATH", "value": "/custom:$(PATH)"},
            {"name": "DSN", "value": "$(user):$(password)@$(REDIS_MAIN_SERVICE_HOST)"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
    }
    env = resolve_env(
        pod(container), container, FACTS, lookup, SERVICES, {"PATH": "/venv/bin:/usr/bin", "X": "1"}
    )
    assert env["PATH"] == "/custom:/venv/bin:/usr/bin"
    assert env["DSN"] == "app:s3cret@10.96.3.4"
    assert env["PASSWORD"] == "s3cret" and env["LEVEL"] == "3" and env["CFG_mode"] == "fast"
    assert env["POD_IP"] == "10.244.0.12" and env["APP"] == "web" and env["NS"] == "shop"
    assert env["NODE"] == "kst-node" and env["X"] == "1"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_resource_field_refs_use_limits_divisors_and_round_up() -> None:
    container = {
        "name": "web",
        "resources": {"limits": {"memory": "300Mi", "cpu": "1500m"}, "requests": {"cpu": "250m"}},
        "env": [
            {
                "name": "MEM_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {
                "name": "CPU_M",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
        ],
    }
    env = resolve_env(pod(container), container, FACTS, lookup, [])
    assert env["MEM_MI"] == "300" and env["CPU"] == "2" and env["CPU_M"] == "250"


def test_resource_field_ref_without_a_limit_falls_back_to_node_allocatable() -> None:
    container = {
        "name": "web",
        "env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
    }
    assert resolve_env(pod(container), container, FACTS, lookup, [])["CPU"] == "2"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"secretKeyRef": {"name": "missing", "key": "k"}}, 'secret "missing" not found'),
        ({"secretKeyRef": {"name": "db", "key": "nope"}}, "couldn't find key nope in Secret shop/db"),
        (
            {"configMapKeyRef": {"name": "settings", "key": "nope"}},
            "couldn't find key nope in ConfigMap shop/settings",
        ),
        ({"fieldRef": {"fieldPath": "spec.bogus"}}, "unsupported fieldRef"),
    ],
)
def test_missing_required_references_are_config_errors_naming_the_problem(
    ref: dict[str, Any], message: str
) -> None:
    container = {"name": "web", "env": [{"name": "V", "valueFrom": ref}]}
    with pytest.raises(EnvError, match=message):
        resolve_env(pod(container), container, FACTS, lookup, [])


def test_optional_missing_references_are_skipped() -> None:
    container = {
        "name": "web",
        "envFrom": [{"secretRef": {"name": "absent", "optional": True}}],
        "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
            {
                "name": "B",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "x", "optional": True}},
            },
        ],
    }
    env = resolve_env(pod(container), container, FACTS, lookup, [])
    assert "A" not in env and "B" not in env
