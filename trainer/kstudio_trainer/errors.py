"""What can go wrong in a training run, split by who must act.

- InputError (exit 2): the experiment spec or its data is wrong; retrying cannot help, the user must fix it.
- InfrastructureError (exit 75, EX_TEMPFAIL): storage unreachable, credentials rejected, ...; retry later.
"""

from __future__ import annotations

from kstudio_core.exitcodes import EXIT_INFRASTRUCTURE_ERROR, EXIT_INPUT_ERROR


class TrainerError(Exception):
    exit_code = 1
    reason = "Failed"


class InputError(TrainerError):
    """The spec or the data is wrong. The message names the field, column or value."""

    exit_code = EXIT_INPUT_ERROR
    reason = "InvalidInput"


class SpecError(InputError):
    reason = "InvalidSpec"

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid experiment spec: " + "; ".join(self.problems))


class DataError(InputError):
    reason = "InvalidData"


class InfrastructureError(TrainerError):
    exit_code = EXIT_INFRASTRUCTURE_ERROR
    reason = "InfrastructureError"
