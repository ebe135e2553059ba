"""Azure ML Studio (classic) batch execution (BES)'s wire format, so classic batch clients work by
changing only their connection string and URL (the routes are http/classic_job_endpoints.py's):

  POST   /workspaces/{ws}/services/{svc}/jobs?api-version=2.0           body below -> "<job id>"
  POST   /workspaces/{ws}/services/{svc}/jobs/{id}/start?api-version=2.0
  GET    /workspaces/{ws}/services/{svc}/jobs/{id}?api-version=2.0   -> {StatusCode, Results, Details}
  DELETE /workspaces/{ws}/services/{svc}/jobs/{id}?api-version=2.0      cancels

  {"Inputs":  {"input1":  {"ConnectionString": "...", "RelativeLocation": "/container/in.csv"}},
   "Outputs": {"output1": {"ConnectionString": "...", "RelativeLocation": "/container/out.csv"}},
   "GlobalParameters": {}}

(or, as the older request of classic's documentation, `"Input": {...}` for the one input). Outputs are
required: classic wrote to the workspace's storage account without them, an endpoint has none.

A connection string in Azure's syntax whose `BlobEndpoint` is an S3 endpoint is read as object-storage
credentials (AccountName = access key, AccountKey = secret key); `/container/path` is bucket/key. Results
name the output's BaseLocation (that endpoint) and RelativeLocation; there are no SAS tokens
(`SasBlobToken` is empty): read the output with the same credentials.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from kstudio_core.storage import S3Uri, StorageSettings
from kstudio_scorer.bes.jobs import Job, new_job
from kstudio_scorer.errors import MalformedRequestError

# our job states -> classic's StatusCode
STATUS_CODES = {
    "Created": "NotStarted",
    "Queued": "NotStarted",
    "Running": "Running",
    "Succeeded": "Finished",
    "Failed": "Failed",
    "Cancelled": "Cancelled",
}


class ClassicJobRequestError(MalformedRequestError):
    """A BES body that cannot be a job (400); `target` names the field. Never quotes a key. `code`, when
    given, is the case's code in classic's error reference (snake case: the envelope spells it as classic)."""

    def __init__(self, message: str, target: str, code: str | None = None) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        if code is not None:
            self.code = code


def storage_from_connection_string(text: Any, where: str) -> tuple[StorageSettings, str]:
    """Azure-syntax connection string -> (S3 settings, BaseLocation). Errors name settings, never values."""
    if not isinstance(text, str) or not text.strip():
        raise ClassicJobRequestError("must be a connection string", where)
    fields: dict[str, str] = {}
    for n, part in enumerate(text.split(";"), start=1):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ClassicJobRequestError(f"part {n} is not Key=Value", where)
        fields[key.strip().lower()] = value.strip()
    endpoint = fields.get("blobendpoint", "")
    if not endpoint:
        raise ClassicJobRequestError(
            "has no BlobEndpoint; kstudio reads S3-compatible object storage: add "
            "BlobEndpoint=http(s)://<host>:<port>/ of the S3 endpoint, with AccountName = access key and "
            "AccountKey = secret key",
            where,
        )
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/"):
        raise ClassicJobRequestError(
            f"BlobEndpoint {endpoint!r} must be http(s)://<host>:<port>/ (no path)", where
        )
    missing = [name for name in ("AccountName", "AccountKey") if not fields.get(name.lower())]
    if missing:
        raise ClassicJobRequestError(
            f"has no {' and no '.join(missing)} (the S3 access key and secret key)", where
        )
    settings = StorageSettings(
        endpoint=url.netloc,
        access_key=fields["accountname"],
        secret_key=fields["accountkey"],
        secure=url.scheme == "https",
    )
    return settings, f"{url.scheme}://{url.netloc}/"


def uri_of_relative_location(location: Any, where: str) -> S3Uri:
    """`/container/path/blob.csv` -> s3://container/path/blob.csv."""
    if not isinstance(location, str) or not location.strip("/"):
        raise ClassicJobRequestError("must be /<container>/<path of the blob>", where)
    try:
        return S3Uri.parse("s3://" + location.strip().lstrip("/"))
    except ValueError as exc:
        raise ClassicJobRequestError(f"{location!r} is not /<container>/<path>: {exc}", where) from exc


def _one(doc: dict[str, Any], section: str) -> tuple[str, Any]:
    block = doc.get(section)
    if not isinstance(block, dict) or len(block) != 1:
        count = len(block) if isinstance(block, dict) else 0
        raise ClassicJobRequestError(
            f"must hold exactly one entry (this service has one {section[:-1].lower()}1), got {count}",
            section,
        )
    name, ref = next(iter(block.items()))
    if not isinstance(ref, dict):
        raise ClassicJobRequestError("must be {ConnectionString, RelativeLocation}", f"{section}.{name}")
    return str(name), ref


def _input(doc: dict[str, Any]) -> tuple[str, Any]:
    """The one input: `Inputs` by name, or (the older request of classic's documentation) `Input`."""
    single = doc.get("Input")
    if single is None:
        return _one(doc, "Inputs")
    if doc.get("Inputs") is not None:
        raise ClassicJobRequestError(
            "give Input (the one input) or Inputs (inputs by name), not both",
            "Input",
            code="duplicate_input_in_batch_call",
        )
    if not isinstance(single, dict):
        raise ClassicJobRequestError("must be {ConnectionString, RelativeLocation}", "Input")
    return "input1", single


def job_from_request(body: bytes) -> Job:
    """The classic BES create body -> a job record. Raises ClassicJobRequestError naming the field."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ClassicJobRequestError(f"not valid JSON: {exc}", "body") from exc
    if not isinstance(doc, dict):
        raise ClassicJobRequestError(
            'must be {"Inputs": {...}, "Outputs": {...}, "GlobalParameters": {}}', "body"
        )
    params = doc.get("GlobalParameters", {})
    if params is not None and not isinstance(params, dict):
        raise ClassicJobRequestError("must be an object", "GlobalParameters")
    in_name, in_ref = _input(doc)
    if not doc.get("Outputs"):
        raise ClassicJobRequestError(
            'must say where output1 goes: {"output1": {"ConnectionString": ..., "RelativeLocation": ...}} '
            "(classic wrote to the workspace's storage account; a kstudio endpoint has none)",
            "Outputs",
            code="missing_output_override_specification",
        )
    out_name, out_ref = _one(doc, "Outputs")
    in_where, out_where = f"Inputs.{in_name}", f"Outputs.{out_name}"
    in_storage, _ = storage_from_connection_string(
        in_ref.get("ConnectionString"), f"{in_where}.ConnectionString"
    )
    out_storage, out_base = storage_from_connection_string(
        out_ref.get("ConnectionString"), f"{out_where}.ConnectionString"
    )
    in_uri = uri_of_relative_location(in_ref.get("RelativeLocation"), f"{in_where}.RelativeLocation")
    out_uri = uri_of_relative_location(out_ref.get("RelativeLocation"), f"{out_where}.RelativeLocation")
    try:
        return new_job(
            str(in_uri),
            str(out_uri),
            None,
            None,
            classic={
                "input": in_name,
                "output": out_name,
                "outputRelativeLocation": "/" + out_uri.bucket + "/" + out_uri.key,
                "outputBaseLocation": out_base,
            },
            credentials={"input": in_storage, "output": out_storage},
        )
    except ValueError as exc:  # the blob's extension tells neither CSV nor Parquet
        raise ClassicJobRequestError(str(exc), f"{in_where}.RelativeLocation") from exc


def status_document(job: Job) -> dict[str, Any]:
    """`GET .../jobs/{id}` as classic answered it."""
    classic = job.classic or {}
    results = None
    if job.state == "Succeeded":
        results = {
            classic.get("output", "output1"): {
                "ConnectionString": None,  # never echoed: it holds the secret key
                # a /jobs job (no classic record) is named by its s3:// output as /bucket/key
                "RelativeLocation": classic.get(
                    "outputRelativeLocation", "/" + job.output.removeprefix("s3://")
                ),
                "BaseLocation": classic.get("outputBaseLocation"),
                "SasBlobToken": "",
            }
        }
    return {
        "StatusCode": STATUS_CODES[job.state],
        "Results": results,
        "Details": job.error,
        "CreatedAt": job.created_at.isoformat(),
        "StartTime": job.started_at.isoformat() if job.started_at else None,
        "EndTime": job.finished_at.isoformat() if job.finished_at else None,
    }
