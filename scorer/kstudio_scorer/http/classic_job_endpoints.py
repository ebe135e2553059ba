"""The Azure ML Studio (classic) batch execution routes (BES): create, start, get and cancel a job.

The wire format (connection strings, relative locations, status documents) is bes/classic_bes.py; the jobs
are bes/jobs.py's. Classic answered a created job with its id as a JSON string, and start and cancel
with an empty body.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import Request, Response

from kstudio_scorer.bes.classic_bes import job_from_request, status_document
from kstudio_scorer.http.responses import JSON
from kstudio_scorer.http.state import ScorerState, state_of
from kstudio_scorer.protocols.classic import ClassicQuery


def _checked(request: Request) -> ScorerState:
    """The state, once the query is one classic clients send (400 for another api-version)."""
    ClassicQuery.parse(request.url.query)
    return state_of(request)


async def create_job(request: Request, workspace: str, service: str) -> Response:
    state = _checked(request)
    state.ready_model()
    body = await request.body()
    request.state.body = body
    assert state.jobs is not None
    job = await asyncio.to_thread(state.jobs.create, job_from_request(body))
    return Response(orjson.dumps(job.id), media_type=JSON)


async def start_job(request: Request, workspace: str, service: str, job_id: str) -> Response:
    state = _checked(request)
    state.ready_model()
    assert state.jobs is not None
    await asyncio.to_thread(state.jobs.start, job_id)
    return Response(b"", media_type=JSON)


async def get_job(request: Request, workspace: str, service: str, job_id: str) -> Response:
    state = _checked(request)
    assert state.jobs is not None
    job = await asyncio.to_thread(state.jobs.get, job_id)
    return Response(orjson.dumps(status_document(job)), media_type=JSON)


async def cancel_job(request: Request, workspace: str, service: str, job_id: str) -> Response:
    state = _checked(request)
    assert state.jobs is not None
    await asyncio.to_thread(state.jobs.cancel, job_id)
    return Response(b"", media_type=JSON)
