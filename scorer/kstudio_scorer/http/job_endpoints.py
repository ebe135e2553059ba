"""The batch jobs API: `POST /jobs` scores an s3:// file into another, `GET`/`DELETE /jobs/{job_id}`.

The jobs themselves (records, who runs them, the scoring of files) are bes/'s business.
"""

from __future__ import annotations

import asyncio

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from kstudio_scorer.errors import InputValidationError
from kstudio_scorer.http.responses import json_response
from kstudio_scorer.http.state import state_of


class JobRequest(BaseModel):
    """A batch scoring job: score every row of `input` into `output` (both s3:// objects)."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="s3://bucket/key of a CSV (with header) or Parquet file", min_length=6)
    output: str = Field(description="s3://bucket/key to write the scored rows to", min_length=6)
    inputFormat: str | None = Field(None, description="csv or parquet; default: from the input's extension")
    outputFormat: str | None = Field(None, description="csv or parquet; default: from the output's extension")


async def submit_job(request: Request, job: JobRequest) -> Response:
    state = state_of(request)
    state.ready_model()
    assert state.jobs is not None
    try:
        created = await asyncio.to_thread(
            state.jobs.submit, job.input, job.output, job.inputFormat, job.outputFormat
        )
    except ValueError as exc:
        raise InputValidationError(str(exc)) from exc
    return json_response(created.to_dict(), 202, headers={"Location": f"{request.url.path}/{created.id}"})


async def get_job(request: Request, job_id: str) -> Response:
    state = state_of(request)
    assert state.jobs is not None
    return json_response((await asyncio.to_thread(state.jobs.get, job_id)).to_dict())


async def cancel_job(request: Request, job_id: str) -> Response:
    """Cancel a job: answered with the job; a running one turns Cancelled at its next chunk."""
    state = state_of(request)
    assert state.jobs is not None
    return json_response((await asyncio.to_thread(state.jobs.cancel, job_id)).to_dict())
