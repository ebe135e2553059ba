"""Property-based requests generated from the served OpenAPI document (schemathesis) against a real
`kstudio serve`: no input may produce a server error, every answer is one the document describes, and a
request the document forbids is refused. Derandomized (the same requests every run) and bounded (a fixed
number of examples per operation)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from scorer_support import BuiltModel, ScorerProcess, start_scorer

KEY = "schemathesis-key-0123456789"


@pytest.fixture(scope="module")
def fuzzed_scorer(
    models: dict[str, BuiltModel], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScorerProcess]:
    m = models["classifier"]
    work = tmp_path_factory.mktemp("fuzz")
    keys = work / "keys"
    keys.mkdir()
    (keys / "primaryKey").write_text(KEY)
    env = {
        "KSTUDIO_MODEL_URI": str(m.path),
        "KSTUDIO_MODEL_SHA256": m.sha256,
        "KSTUDIO_KEYS_DIR": str(keys),
        "KSTUDIO_MAX_ROWS": "50",
        "KSTUDIO_MAX_BODY_BYTES": "200000",
    }
    sp = start_scorer(env, work)
    yield sp
    log = sp.log()
    sp.stop()
    assert "Traceback" not in log, log[-5000:]
    assert KEY not in log


# Every answer is checked against the served document: no 5xx, a documented status, its content type and
# its schema; and (negative mode) a request the document forbids is refused with a 4xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def test_every_answer_conforms_to_the_served_openapi(fuzzed_scorer: ScorerProcess) -> None:
    # schemathesis' pytest integration does not support pytest 9 yet; drive hypothesis directly.
    schema = schemathesis.openapi.from_url(f"{fuzzed_scorer.url}/openapi.json")
    statuses: Counter[tuple[str, int]] = Counter()
    failures: dict[str, str] = {}  # one example per distinct failure
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    plan = [(op, GenerationMode.POSITIVE) for op in operations]
    # Negative data needs something to break: a body or a parameter (GET /healthz has neither).
    plan += [(op, GenerationMode.NEGATIVE) for op in operations if op.body or op.path_parameters]
    auth = {"Authorization": f"Bearer {KEY}"}

    def make_check(operation: schemathesis.APIOperation, mode: GenerationMode) -> Callable[[], None]:
        label = operation.label

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            derandomize=True,  # the same requests on every run: a failure here is reproducible
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzzed_scorer.url, headers=auth)
            statuses[(label, response.status_code)] += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
            except FailureGroup as group:  # recorded, not raised: hypothesis would shrink for minutes
                for failure in group.exceptions:
                    failures.setdefault(
                        f"{label} [{mode.value}] {failure.title}",
                        f"{response.status_code} {response.text[:300]} <- {case.body!r:.300} {case.query}",
                    )

        return check  # type: ignore[no-any-return]

    for operation, mode in plan:
        make_check(operation, mode)()
    print("\nschemathesis:", sum(statuses.values()), "requests;", dict(sorted(statuses.items())))
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))
    # the generator reached the scoring code, not only the error paths
    assert statuses[("POST /score", 200)] > 0
    assert statuses[("POST /v2/models/{name}/versions/{version}/infer", 422)] > 0


def test_generated_document_is_served(fuzzed_scorer: ScorerProcess, tmp_path: Path) -> None:
    import httpx

    with httpx.Client(base_url=fuzzed_scorer.url) as c:
        doc = c.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"] == {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    assert doc["paths"]["/score"]["post"]["security"] == [{"bearerAuth": []}]
