"""The Endpoint a WebService owns: `<web service>-default`, which follows the service's model."""

from __future__ import annotations

from typing import Any

from kstudio_operator import constants as c
from kstudio_operator.resources.scheduling import Scheduling
from kstudio_operator.resources.webservice import Scorer


def default_endpoint_name(web_service: str) -> str:
    return f"{web_service}-default"


def default_endpoint(namespace: str, web_service: str, scorer: Scorer) -> dict[str, Any]:
    """The default Endpoint of `web_service`, sized and placed by its spec.scorer. Its spec names no
    model: it serves whatever the service serves."""
    return {
        "apiVersion": c.GROUP_VERSION,
        "kind": "Endpoint",
        "metadata": {
            "name": default_endpoint_name(web_service),
            "namespace": namespace,
            "labels": {c.LABEL_WEB_SERVICE: web_service, c.LABEL_MANAGED_BY: c.MANAGED_BY},
        },
        "spec": {
            "webService": web_service,
            "replicas": scorer.replicas,
            "resources": scorer.resources.to_wire(),
            **_scheduling_field(scorer.scheduling),
        },
    }


def _scheduling_field(wanted: Scheduling) -> dict[str, Any]:
    """{"scheduling": ...} for a default Endpoint's spec, nothing when the service sets none."""
    return {"scheduling": wanted.to_wire()} if wanted != Scheduling() else {}
