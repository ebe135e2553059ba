"""Label and annotation keys that more than one component writes or reads."""

from __future__ import annotations

from typing import Final

API_GROUP: Final = "kstudio.io"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
MANAGED_BY: Final = "kstudio-operator"
APP_NAME: Final = "kstudio"

LABEL_EXPERIMENT: Final = f"{API_GROUP}/experiment"
LABEL_RUN: Final = f"{API_GROUP}/run"
LABEL_WEB_SERVICE: Final = f"{API_GROUP}/webservice"
LABEL_ENDPOINT: Final = f"{API_GROUP}/endpoint"
