"""The scorer's routes, declared once: every layer of the app reads this table.

- FastAPI registers the endpoints (app.py); the fast routes serve the `fast` ones below FastAPI's
  endpoint machinery (fast_routes.py), the router keeps them too, for 405 and trailing-slash redirects.
- auth.py refuses a `needs_key` route without a valid key before its body is read;
- limits.py counts the `limited` ones against max_concurrent_calls;
- metrics.py labels every response with its route's template, also a 413 or 429 answered by the limits
  layer before any endpoint ran;
- errors under the classic routes' head (`/workspaces/`) answer in classic's envelope (responses.py);
- openapi.py describes every route of the table, the fast ones included, and marks the protected ones.
"""

from __future__ import annotations

from kstudio_scorer.http import classic_job_endpoints as classic_jobs
from kstudio_scorer.http import job_endpoints as jobs
from kstudio_scorer.http import scoring_endpoints as scoring
from kstudio_scorer.http import status_endpoints as status
from kstudio_scorer.http.routing import Route, RouteTable

CLASSIC_SERVICE = "/workspaces/{workspace}/services/{service}"
CLASSIC_JOB = CLASSIC_SERVICE + "/jobs/{job_id}"
V2_MODEL = "/v2/models/{name}"

ROUTES = RouteTable(
    [
        # method, path template, endpoint; needs_key, limited, fast, classic
        Route("GET", "/healthz", status.healthz),
        Route("GET", "/readyz", status.readyz),
        Route("GET", "/metrics", status.metrics),
        Route("GET", "/openapi.json", status.openapi_document),
        Route("POST", "/score", scoring.score, needs_key=True, limited=True, fast=True),
        Route(
            "POST",
            CLASSIC_SERVICE + "/execute",
            scoring.execute,
            needs_key=True,
            limited=True,
            fast=True,
            classic=True,
        ),
        Route("POST", "/jobs", jobs.submit_job, needs_key=True, limited=True),
        Route("GET", "/jobs/{job_id}", jobs.get_job, needs_key=True),
        Route("DELETE", "/jobs/{job_id}", jobs.cancel_job, needs_key=True),
        Route(
            "POST",
            CLASSIC_SERVICE + "/jobs",
            classic_jobs.create_job,
            needs_key=True,
            limited=True,
            classic=True,
        ),
        Route("POST", CLASSIC_JOB + "/start", classic_jobs.start_job, needs_key=True, classic=True),
        Route("GET", CLASSIC_JOB, classic_jobs.get_job, needs_key=True, classic=True),
        Route("DELETE", CLASSIC_JOB, classic_jobs.cancel_job, needs_key=True, classic=True),
        Route("GET", "/v2", status.v2_server_metadata),
        Route("GET", "/v2/health/live", status.v2_live),
        Route("GET", "/v2/health/ready", status.v2_ready),
        Route("GET", V2_MODEL, status.v2_model_metadata),
        Route("GET", V2_MODEL + "/ready", status.v2_model_ready),
        Route("POST", V2_MODEL + "/infer", scoring.v2_infer, needs_key=True, limited=True, fast=True),
        Route(
            "POST",
            V2_MODEL + "/versions/{version}/infer",
            scoring.v2_infer,
            name="v2_infer_version",  # the endpoint serves both V2 routes: a name of its own
            needs_key=True,
            limited=True,
            fast=True,
        ),
    ]
)
