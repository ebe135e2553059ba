"""Studio's "Test" button: one row typed into a form generated from the model's input schema, sent to the
endpoint through its Service with the key the user pasted, and the endpoint's answer shown as it came.

The key is used for this one request and dropped: it is not stored, not logged, not put in the page that
shows the answer (the form comes back with an empty key field), and never part of a URL. Values are sent
typed by the schema when they parse (a number column's "3.5" as 3.5); a value that does not parse is sent
as typed, so that the endpoint's own 422 names the column, and an empty field is a missing value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp

MAX_FORM_BYTES = 64 * 1024
TIMEOUT_SECONDS = 15.0
FIELD_PREFIX = "col:"  # form field of an input column: col:<column name>
KEY_FIELD = "key"


@dataclass(frozen=True)
class TestAnswer:
    """What the endpoint answered (status and body), or why nothing was asked (`problem`)."""

    status: int = 0
    body: Any = None  # parsed JSON, or the text when the answer is not JSON
    problem: str = ""

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The scored rows of a 200 answer in the RRS shape."""
        if self.status != 200 or not isinstance(self.body, dict):
            return []
        rows = ((self.body.get("Results") or {}).get("output1")) or []
        return [r for r in rows if isinstance(r, dict)]

    @property
    def shown(self) -> str:
        """The answer's body as the page shows it."""
        if isinstance(self.body, dict | list):
            return json.dumps(self.body, indent=2, ensure_ascii=False)
        return str(self.body or "")


def read_form(body: bytes) -> tuple[dict[str, str], str]:
    """(column -> value as typed, key) from an url-encoded form body. ValueError when too large."""
    if len(body) > MAX_FORM_BYTES:
        raise ValueError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    values: dict[str, str] = {}
    key = ""
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if name == KEY_FIELD:
            key = value.strip()
        elif name.startswith(FIELD_PREFIX):
            values[name[len(FIELD_PREFIX) :]] = value
    return values, key


def typed(value: str, column_type: str) -> Any:
    """The value as the schema types it; as typed when it does not parse (the endpoint then says so)."""
    text = value.strip()
    if text == "":
        return None
    try:
        if column_type == "integer":
            return int(text)
        if column_type == "number":
            return float(text)
    except ValueError:
        return value
    if column_type == "boolean" and text.lower() in {"true", "false"}:
        return text.lower() == "true"
    return value


def score_request(schema: Sequence[Mapping[str, Any]], values: Mapping[str, str]) -> dict[str, Any]:
    """The RRS request for one row: every schema column, in schema order."""
    row = {
        str(c["name"]): typed(values.get(str(c["name"]), ""), str(c.get("type") or "string")) for c in schema
    }
    return {"Inputs": {"input1": [row]}, "GlobalParameters": {}}


def service_address(service: Mapping[str, Any] | None) -> str | None:
    """http://<cluster IP>:<port> of an endpoint's Service: reachable from a pod without cluster DNS."""
    spec = (service or {}).get("spec") or {}
    ip = spec.get("clusterIP")
    ports = spec.get("ports") or []
    if not ip or ip == "None" or not ports:
        return None
    host = f"[{ip}]" if ":" in str(ip) else ip
    return f"http://{host}:{ports[0].get('port')}"


async def call_endpoint(address: str, key: str, request: dict[str, Any]) -> TestAnswer:
    """POST the request to the endpoint's /score with the key; the answer whatever its status."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(f"{address}/score", data=json.dumps(request), headers=headers) as resp,
        ):
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The exception names the address, never the request's headers.
        return TestAnswer(problem=f"could not reach the endpoint at {address}: {exc or type(exc).__name__}")
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    return TestAnswer(status=status, body=body)
