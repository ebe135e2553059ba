"""How `kstudio train` and `kstudio serve` tell the operator why they stopped: the exit code, and a short
message in the container's termination log (Kubernetes shows it in the pod's status)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
# The spec, the data or the artifact is wrong: retrying cannot help, a human must fix it.
EXIT_INPUT_ERROR: Final = 2
# Infrastructure (storage unreachable, credentials rejected): retry later. EX_TEMPFAIL of sysexits.h.
EXIT_INFRASTRUCTURE_ERROR: Final = 75
# 128 + SIGKILL: what a container killed by the kernel's OOM killer (or any SIGKILL) exits with.
EXIT_KILLED: Final = 137

# The container's terminationMessagePath (the Kubernetes default); a process writes it only if it exists.
TERMINATION_LOG: Final = "/dev/termination-log"
