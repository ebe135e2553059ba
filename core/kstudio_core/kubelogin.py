"""The API server credentials of every kstudio process that talks to it (operator, console, CLI).

In a pod: the service account's token and CA, at the API service's address from the environment the
kubelet sets (KUBERNETES_SERVICE_HOST/PORT), as client-go's in-cluster config does; kopf's own in-cluster
login dials https://kubernetes.default.svc, which needs cluster DNS. Elsewhere: $KUBECONFIG (or
~/.kube/config) as it is now. The parsing is kopf's (`kopf.login_with_*`), imported only when called, so
the core stays light for the scorer and the trainer.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import kopf


def cluster_credentials(settings: kopf.OperatorSettings | None = None) -> kopf.ConnectionInfo | None:
    """The in-cluster service account's credentials, else the kubeconfig's; None when there are neither.
    Raises what kopf raises for an unreadable kubeconfig (OSError, ValueError, kopf.LoginError)."""
    import kopf

    settings = settings or kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings)
    if info is None:
        return kopf.login_with_kubeconfig(settings=settings)
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if host and port:
        host = f"[{host}]" if ":" in host else host
        info = dataclasses.replace(info, server=f"https://{host}:{port}")
    return info
