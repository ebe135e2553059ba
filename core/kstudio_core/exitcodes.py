"""Exit codes of `kstudio train` and `kstudio serve`: the contract between the pods and the operator."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
# The spec, the data or the artifact is wrong: retrying cannot help, a human must fix it.
EXIT_INPUT_ERROR: Final = 2
# Infrastructure (storage unreachable, credentials rejected): retry later. EX_TEMPFAIL of sysexits.h.
EXIT_INFRASTRUCTURE_ERROR: Final = 75
# 128 + SIGKILL: what a container killed by the kernel's OOM killer (or any SIGKILL) exits with.
EXIT_KILLED: Final = 137
