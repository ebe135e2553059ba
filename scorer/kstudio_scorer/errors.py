"""Domain errors of the scorer. http/responses.py maps each class to one HTTP status, in one place."""

from __future__ import annotations


class ScorerError(Exception):
    """Base class: `message` is safe to show to the caller (no keys, no internals)."""

    code = "scorer_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequestError(ScorerError):
    """The body is not JSON, or not the shape of the protocol (400)."""

    code = "malformed_request"


class InputValidationError(ScorerError):
    """A value does not fit the model's input schema (422); names the row and the column."""

    code = "invalid_input"

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.row = row
        self.column = column


class TooManyRowsError(ScorerError):
    """More rows than max_rows in one request (413)."""

    code = "too_many_rows"


class UnauthorizedError(ScorerError):
    """Missing or wrong key (401). Never says which key was tried or which one failed."""

    code = "unauthorized"


class ModelNotFoundError(ScorerError):
    """/v2/models/{name} with a name this process does not serve (404)."""

    code = "model_not_found"


class ModelNotReadyError(ScorerError):
    """The model is still loading or failed to load (503)."""

    code = "model_not_ready"


class JobNotFoundError(ScorerError):
    """GET /jobs/{id} for an unknown id (404)."""

    code = "job_not_found"


class PredictionError(ScorerError):
    """The model raised on input that passed validation (422: the input is the likely cause)."""

    code = "prediction_failed"
