"""The console's pages from a cache filled as the watches fill it: what each page says, the run history and
its chart, who uses a model, rollouts and promotions, 404 pages for unknown names, "no evaluation report"
for an imported model, the Test form (its key never comes back in the page), and the security headers.
Reports in real storage and the browser are tested in tests/storage_trainer and tests/console."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kstudio_console import pages
from kstudio_console.app import Console, create_app
from kstudio_console.cache import ObjectCache
from kstudio_console.reports import Reports

NS = "team-a"
SHA = "ab" * 32
SCHEMA = [{"name": "bill_length_mm", "type": "number"}, {"name": "island", "type": "string"}]


def obj(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-12-01T10:00:00Z", **meta},
        "spec": spec,
        "status": status,
    }


def run(n: int, phase: str, started: str, seconds: int, **more: Any) -> dict[str, Any]:
    finished = f"2026-12-01T{started}:{seconds:02d}Z"
    return {
        "run": n,
        "generation": n,
        "job": f"penguins-run-{n}",
        "phase": phase,
        "startedAt": f"2026-12-01T{started}:00Z",
        "finishedAt": finished,
        **more,
    }


EXPERIMENT = obj(
    "Experiment",
    "penguins",
    {
        "dataset": {"uri": "s3://datasets/penguins.csv"},
        "label": "species",
        "task": "classification",
        "algorithm": {"name": "RandomForestClassifier", "params": {"n_estimators": 20}},
        "evaluation": {"metrics": ["f1_macro", "accuracy"]},
    },
    {
        "phase": "Ready",
        "latestTrainedModel": "penguins-2",
        "runs": [
            run(
                1,
                "Succeeded",
                "10:00",
                31,
                trainedModel="penguins-1",
                triggers=["create"],
                metrics={"accuracy": 0.9, "f1_macro": 0.85},
            ),
            run(
                2,
                "Succeeded",
                "11:00",
                40,
                trainedModel="penguins-2",
                triggers=["spec"],
                metrics={"accuracy": 0.97, "f1_macro": 0.96},
            ),
            run(3, "Failed", "12:00", 9, reason="BadColumn", message="column 'x' is not in the data"),
        ],
    },
)


def model(name: str, run_number: int | None, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"artifact": {"uri": f"s3://models/{name}.ilearner", "sha256": SHA}}
    if run_number is not None:
        spec["source"] = {"experiment": "penguins", "run": run_number}
    return obj(
        "TrainedModel",
        name,
        spec,
        {
            "phase": "Ready",
            "metrics": {"accuracy": 0.9},
            "headlineMetric": "accuracy=0.9000",
            "inputSchema": SCHEMA,
            **status,
        },
    )


WEB_SERVICE = obj(
    "WebService",
    "penguins",
    {"modelFrom": {"experiment": "penguins", "promote": {"metric": "f1_macro", "minDelta": 0.01}}},
    {
        "phase": "Ready",
        "model": "penguins-2",
        "modelDigest": SHA,
        "defaultEndpoint": "penguins-default",
        "promotions": [
            {
                "from": "penguins-1",
                "to": "penguins-2",
                "metric": "f1_macro",
                "delta": 0.11,
                "promoted": True,
                "reason": "f1_macro 0.9600 vs 0.8500 served",
                "at": "2026-12-01T11:01:00Z",
            },
            {
                "from": None,
                "to": "penguins-1",
                "promoted": True,
                "reason": "first model",
                "at": "2026-12-01T10:01:00Z",
            },
        ],
    },
)
ENDPOINT = obj(
    "Endpoint",
    "ep2",
    {"webService": "penguins", "model": "penguins-2", "replicas": 2},
    {
        "phase": "RollingOut",
        "model": "penguins-1",
        "modelDigest": SHA,
        "readyReplicas": 2,
        "replicas": 2,
        "keysSecret": "ep2-keys",
        "rollout": {"from": "penguins-1", "to": "penguins-2", "startedAt": "2026-12-01T11:05:00Z"},
        "history": [
            {
                "from": None,
                "to": "penguins-1",
                "startedAt": "2026-12-01T10:02:00Z",
                "finishedAt": "2026-12-01T10:02:07Z",
                "seconds": 7.2,
            },
        ],
    },
)


SCORES = obj(
    "BatchJob",
    "scores",
    {
        "model": "penguins-2",
        "input": {"uri": "s3://batch/in/"},
        "output": {"uri": "s3://batch/out/", "oneFile": True},
        "shards": 3,
        "errorThreshold": {"rows": 10},
        "credentialsSecret": "kstudio-s3",
    },
    {
        "phase": "Succeeded",
        "reason": "Succeeded",
        "message": "42000 rows scored",
        "model": "penguins-2",
        "modelSource": "TrainedModel/penguins-2",
        "modelDigest": SHA,
        "modelDigestPrefix": SHA[:12],
        "job": "scores",
        "inputs": {"objects": 2, "sizeBytes": 1_234_567, "format": "csv"},
        "shards": {"total": 3, "active": 0, "succeeded": 3, "failed": 0},
        "rows": {"scored": 42_000, "rejected": 2},
        "rowsPerSecond": 51234.5,
        "startedAt": "2026-12-01T12:00:00Z",
        "finishedAt": "2026-12-01T12:01:05Z",
        "outputs": ["s3://batch/out/manifest.json", "s3://batch/out/scores.csv", "s3://batch/out/errors.csv"],
        "conditions": [{"type": "Complete", "status": "True", "reason": "Published", "message": "done"}],
    },
)
BROKEN = obj(
    "BatchJob",
    "broken",
    {"endpoint": "ep2", "input": {"uris": ["s3://batch/a.csv"]}, "output": {"uri": "s3://batch/b/"}},
    {
        "phase": "Failed",
        "reason": "ShardFailed",
        "message": "shard 1: the input has no column 'island'",
        "model": "penguins-1",
        "shards": {"total": 2, "active": 0, "succeeded": 1, "failed": 1},
        "failedShards": [{"index": 1, "exitCode": 2, "reason": "MissingColumn", "message": "no 'island'"}],
    },
    creationTimestamp="2026-12-01T13:00:00Z",
)


def pod(name: str, endpoint: str, ready: bool, model_name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"kstudio.io/endpoint": endpoint},
            "annotations": {"kstudio.io/model": model_name},
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "containerStatuses": [{"restartCount": 1}],
        },
    }


def event(name: str, kind: str, about: str, reason: str, at: str, type_: str = "Normal") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "involvedObject": {"kind": kind, "name": about, "namespace": NS},
        "type": type_,
        "reason": reason,
        "message": f"{reason} <b>of</b> {about}",
        "lastTimestamp": at,
    }


@pytest.fixture
def cache() -> ObjectCache:
    c = ObjectCache()
    c.replace("experiments", "", [EXPERIMENT])
    c.replace("trainedmodels", "", [model("penguins-1", 1), model("penguins-2", 2), model("imported", None)])
    c.replace("webservices", "", [WEB_SERVICE])
    c.replace("endpoints", "", [ENDPOINT])
    c.replace("batchjobs", "", [SCORES, BROKEN])
    c.replace("pods", "", [pod("ep2-a", "ep2", True, "penguins-1"), pod("other-b", "other", True, "x")])
    c.replace("services", "", [])
    c.replace(
        "events",
        "",
        [
            event("e1", "Experiment", "penguins", "RunSucceeded", "2026-12-01T11:00:41Z"),
            event("e2", "Endpoint", "ep2", "RolloutStarted", "2026-12-01T11:05:00Z"),
            event("e3", "Pod", "ep2-a", "Pulled", "2026-12-01T11:05:01Z", "Warning"),
        ],
    )
    return c


@pytest.fixture
def client(cache: ObjectCache) -> TestClient:
    return TestClient(create_app(Console(cache, Reports(None, None, "no storage in this test"))))


# --- the pure page builders ----------------------------------------------------------------------------


def test_run_history_is_newest_first_with_durations_metrics_and_failure_reasons(cache: ObjectCache) -> None:
    models = {pages.name_of(m): m for m in cache.objects(pages_kind("TrainedModel"), NS)}
    rows = pages.run_rows(EXPERIMENT, models)
    assert [r["run"] for r in rows] == [3, 2, 1]
    assert rows[0]["failure"] == "BadColumn: column 'x' is not in the data" and rows[0]["model_url"] == ""
    assert rows[1]["metric"] == "f1_macro 0.9600" and rows[1]["duration"] == "40 s"
    assert rows[1]["model_url"] == "/ns/team-a/models/penguins-2"
    assert rows[2]["triggers"] == "create" and rows[2]["failure"] == ""


def test_the_chart_plots_the_experiments_headline_metric_per_run() -> None:
    assert pages.chart_metric(EXPERIMENT) == "f1_macro"
    assert pages.chart_points(EXPERIMENT, "f1_macro") == [
        (1, 0.85, "Succeeded"),
        (2, 0.96, "Succeeded"),
        (3, None, "Failed"),
    ]


def test_run_history_chart_is_an_svg_drawn_by_matplotlib_marking_failed_runs() -> None:
    from kstudio_console.charts import run_history_svg

    svg = run_history_svg("f1_macro", pages.chart_points(EXPERIMENT, "f1_macro"))
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"Matplotlib" in svg
    assert b"f1_macro per run" in svg and b"failed run" in svg and b"0.960" in svg


def test_who_uses_a_model_counts_serving_and_pinning(cache: ObjectCache) -> None:
    both = {
        **ENDPOINT,
        "metadata": {**ENDPOINT["metadata"], "name": "ep3"},
        "status": {"model": "penguins-2"},
    }
    assert pages.model_users([], [both])["penguins-2"] == [("Endpoint", "ep3", "serves, pinned in spec")]
    users = pages.model_users([WEB_SERVICE], [ENDPOINT])
    assert users["penguins-2"] == [
        ("WebService", "penguins", "serves"),
        ("Endpoint", "ep2", "pinned in spec"),
    ]
    assert users["penguins-1"] == [("Endpoint", "ep2", "serves")]
    assert "imported" not in users


def test_rollout_timeline_puts_the_rollout_in_progress_first() -> None:
    timeline = pages.rollout_timeline(ENDPOINT)
    assert [(r["from"], r["to"], r["done"]) for r in timeline] == [
        ("penguins-1", "penguins-2", False),
        ("", "penguins-1", True),
    ]
    assert timeline[1]["seconds"] == "7 s"


def test_promotions_newest_first_with_reasons() -> None:
    rows = pages.promotion_rows(WEB_SERVICE)
    assert [r["to"] for r in rows] == ["penguins-2", "penguins-1"]
    assert rows[0]["delta"] == "+0.1100" and rows[0]["reason"].startswith("f1_macro 0.9600")


def test_scorer_pods_of_one_endpoint_with_the_model_each_serves(cache: ObjectCache) -> None:
    rows = pages.scorer_pods(cache.objects(pages_kind("Pod"), NS), "ep2")
    assert rows == [
        {
            "name": "ep2-a",
            "phase": "Running",
            "ready": True,
            "restarts": 1,
            "model": "penguins-1",
            "deleting": False,
        }
    ]


def test_events_newest_first_linked_to_kstudio_objects(cache: ObjectCache) -> None:
    now = datetime(2026, 12, 1, 11, 5, 11, tzinfo=UTC)
    rows = pages.event_rows(cache.objects(pages_kind("Event"), NS), now, limit=2)
    assert [r["reason"] for r in rows] == ["Pulled", "RolloutStarted"]
    assert rows[0]["object_url"] == "" and rows[1]["object_url"] == "/ns/team-a/endpoints/ep2"
    assert rows[0]["age"] == "10 s ago"
    about = pages.event_rows(cache.objects(pages_kind("Event"), NS), now, limit=10, about="penguins")
    assert [r["reason"] for r in about] == ["RunSucceeded"]


def test_durations_read_as_people_read_them() -> None:
    assert [pages.seconds_text(s) for s in (0, 59.6, 61, 3600 + 125)] == [
        "0 s",
        "1 min 00 s",
        "1 min 01 s",
        "1 h 02 min",
    ]


def test_batch_jobs_newest_first_with_shards_rows_and_why_one_failed() -> None:
    rows = pages.batch_job_rows(NS, [SCORES, BROKEN])
    assert [r["name"] for r in rows] == ["broken", "scores"]
    broken, scores = rows
    assert broken["failure"] == "ShardFailed: shard 1: the input has no column 'island'"
    assert (broken["shards"], broken["failed"], broken["model"]) == ("1/2", 1, "penguins-1")
    assert (scores["shards"], scores["scored"], scores["rejected"], scores["rate"]) == (
        "3/3",
        42_000,
        2,
        "51,234",
    )
    assert (scores["duration"], scores["failure"], scores["digest"]) == ("1 min 05 s", "", SHA[:12])
    assert scores["model_url"] == "/ns/team-a/models/penguins-2"


def test_batch_job_facts_say_what_the_spec_asked_and_the_status_found() -> None:
    facts = pages.batch_job_facts(SCORES)
    assert facts["input_found"] == "2 objects, 1,234,567 bytes, csv"
    assert (facts["sharding"], facts["output_format"]) == ("3 shards", "csv, one file")
    assert facts["error_threshold"] == "10 rows" and facts["outputs"][-1] == "s3://batch/out/errors.csv"
    broken = pages.batch_job_facts(BROKEN)
    assert broken["input"] == "s3://batch/a.csv" and broken["sharding"] == "1 shard"
    assert broken["failed_shards"] == [
        {"index": 1, "exit_code": 2, "reason": "MissingColumn", "message": "no 'island'"}
    ]
    waiting = obj("BatchJob", "w", {"endpoint": "ep9", "input": {}, "output": {}}, {"phase": "Pending"})
    assert pages.batch_model(waiting) == "the model Endpoint ep9 serves"


def test_batch_job_pages_show_progress_outputs_digest_and_the_failure(client: TestClient) -> None:
    listing = client.get("/ns/team-a/batchjobs").text
    assert 'href="/ns/team-a/batchjobs/scores"' in listing and "42,000" in listing
    assert "the input has no column &#39;island&#39;" in listing
    assert 'href="/ns/team-a/batchjobs"' in client.get("/ns/team-a/").text  # the overview's count links it
    page = client.get("/ns/team-a/batchjobs/scores").text
    for text in (
        SHA,
        "s3://batch/out/scores.csv",
        "42,000",
        "51,234",
        "2 objects",
        "Published",
        "1 min 05 s",
    ):
        assert text in page, text
    assert 'href="/ns/team-a/models/penguins-2"' in page
    assert "kstudio-s3" not in page  # where the storage keys are: nothing of it on the page
    failed = client.get("/ns/team-a/batchjobs/broken").text
    assert "Failed: ShardFailed: shard 1: the input has no column" in failed and "MissingColumn" in failed
    assert 'href="/ns/team-a/endpoints/ep2"' in failed
    assert client.get("/ns/team-a/batchjobs/nope").status_code == 404


def pages_kind(kind: str) -> Any:
    from kstudio_console import cache as c

    return {"TrainedModel": c.TRAINED_MODEL, "Pod": c.POD, "Event": c.EVENT}[kind]


# --- the app -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/ns/team-a/",
        "/ns/team-a/models",
        "/ns/team-a/events",
        "/ns/team-a/experiments/penguins",
        "/ns/team-a/models/penguins-1",
        "/ns/team-a/compare?a=penguins-1&b=penguins-2",
        "/ns/team-a/webservices/penguins",
        "/ns/team-a/endpoints/ep2",
        "/ns/team-a/batchjobs",
        "/ns/team-a/batchjobs/scores",
        "/ns/team-a/batchjobs/broken",
    ],
)
def test_every_page_renders_escaped_with_a_policy_that_allows_only_the_consoles_own_files(
    client: TestClient, path: str
) -> None:
    page = client.get(path)
    assert page.status_code == 200, page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["cache-control"] == "no-store"
    assert "<b>of</b>" not in page.text  # event messages (and everything else) escaped
    assert (
        ' style="' not in page.text and "<script>" not in page.text
    )  # nothing inline (the policy forbids it)


def test_overview_shows_what_each_endpoint_serves(client: TestClient) -> None:
    page = client.get("/ns/team-a/").text
    assert 'href="/ns/team-a/experiments/penguins"' in page and "f1_macro=" not in page  # no metric named yet
    assert 'href="/ns/team-a/endpoints/ep2"' in page and 'href="/ns/team-a/models/penguins-1"' in page
    assert "2/2" in page and "RollingOut" in page


def test_experiment_page_has_the_chart_the_runs_and_the_compare_form(client: TestClient) -> None:
    page = client.get("/ns/team-a/experiments/penguins").text
    assert '<img class="chart" src="/ns/team-a/experiments/penguins/runs.svg?v=' in page
    assert "BadColumn: column &#39;x&#39; is not in the data" in page
    assert '<form class="compare" method="get" action="/ns/team-a/compare">' in page
    assert '<option value="penguins-1" selected>' in page  # A: the run before the newest
    chart = client.get(page.split('<img class="chart" src="')[1].split('"')[0].replace("&amp;", "&"))
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert chart.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"


def test_a_model_without_report_says_so_instead_of_failing(client: TestClient) -> None:
    page = client.get("/ns/team-a/models/imported")
    assert page.status_code == 200
    assert "TrainedModel imported has no evaluation report (imported, or trained without one)" in page.text
    assert "imported" in page.text and "bill_length_mm" in page.text


def test_model_page_names_its_users_and_its_run(client: TestClient) -> None:
    page = client.get("/ns/team-a/models/penguins-1").text
    assert 'Endpoint <a href="/ns/team-a/endpoints/ep2">ep2</a>' in page
    assert '<a href="/ns/team-a/experiments/penguins">Experiment penguins</a>, run 1' in page
    assert '<option value="penguins-2">' in page  # compare with the experiment's other model


def test_a_report_that_cannot_be_read_is_said_on_the_page(client: TestClient, cache: ObjectCache) -> None:
    named = model(
        "penguins-3",
        3,
        evaluation={"uri": "s3://models/penguins-3.ilearner.evaluation/evaluation.json", "sha256": SHA},
    )
    cache.apply("trainedmodels", "ADDED", named)
    page = client.get("/ns/team-a/models/penguins-3")
    assert page.status_code == 200
    assert "cannot read the evaluation report of penguins-3: no storage in this test" in page.text


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/ns/team-a/models/nope", "TrainedModel nope not found in namespace team-a"),
        ("/ns/team-a/experiments/nope", "Experiment nope not found in namespace team-a"),
        ("/ns/team-a/webservices/nope", "WebService nope not found in namespace team-a"),
        ("/ns/team-a/endpoints/nope", "Endpoint nope not found in namespace team-a"),
        ("/ns/team-a/compare?a=penguins-1&b=nope", "TrainedModel nope not found in namespace team-a"),
        ("/ns/elsewhere/", "namespace elsewhere has no kstudio objects"),
        ("/ns/team-a/models/penguins-1/figures/roc.svg", "TrainedModel penguins-1 has no evaluation report"),
        ("/nothing/here", "Not Found"),
    ],
)
def test_unknown_names_are_a_404_page_saying_what_was_not_found(
    client: TestClient, path: str, message: str
) -> None:
    page = client.get(path)
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text and message in page.text
    assert "data-revision-url" not in page.text  # an error page does not refresh itself


def test_namespaces_outside_the_watched_ones_are_404(cache: ObjectCache) -> None:
    client = TestClient(create_app(Console(cache, Reports(None, None), namespaces=["team-b"])))
    assert client.get("/", follow_redirects=False).headers["location"] == "/ns/team-b/"
    page = client.get("/ns/team-a/")
    assert page.status_code == 404 and "namespace team-a is not watched by this console (team-b)" in page.text


def test_revision_moves_when_the_namespace_changes(client: TestClient, cache: ObjectCache) -> None:
    before = client.get("/ns/team-a/revision").json()["revision"]
    page = client.get("/ns/team-a/endpoints/ep2").text
    assert f'data-revision="{before}" data-revision-url="/ns/team-a/revision"' in page
    patched = {**ENDPOINT, "status": {**ENDPOINT["status"], "model": "penguins-2", "phase": "Ready"}}
    cache.apply("endpoints", "MODIFIED", patched)
    assert client.get("/ns/team-a/revision").json()["revision"] > before
    assert (
        '<dd class="serves"><a href="/ns/team-a/models/penguins-2">penguins-2</a></dd>'
        in client.get("/ns/team-a/endpoints/ep2").text
    )


def test_the_test_form_is_generated_from_the_served_models_schema(client: TestClient) -> None:
    page = client.get("/ns/team-a/endpoints/ep2").text
    assert '<input id="col-1" name="col:bill_length_mm" value="" inputmode="decimal">' in page
    assert '<input id="col-2" name="col:island" value="" >' in page
    assert (
        '<input id="key" name="key" type="password" value="" autocomplete="off" spellcheck="false">' in page
    )


def test_the_key_sent_with_the_test_form_never_comes_back_in_the_page(client: TestClient) -> None:
    form = "col%3Abill_length_mm=39.1&col%3Aisland=Dream&key=sekrit-key-value-123"
    page = client.post(
        "/ns/team-a/endpoints/ep2",
        content=form,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert page.status_code == 200
    assert "sekrit-key-value-123" not in page.text
    assert 'value="39.1"' in page.text and 'value="Dream"' in page.text  # the row stays for the next try
    assert "Endpoint ep2 has no Service with an address yet" in page.text


def test_compare_page_puts_metrics_side_by_side_with_deltas(client: TestClient, cache: ObjectCache) -> None:
    better = model("penguins-2", 2, metrics={"accuracy": 0.97, "f1_macro": 0.96})
    cache.apply("trainedmodels", "MODIFIED", better)
    page = client.get("/ns/team-a/compare?a=penguins-1&b=penguins-2").text
    assert '<td class="delta-better">+0.0700 (B better)</td>' in page
    assert "TrainedModel penguins-1 has no evaluation report" in page
    assert 'href="/ns/team-a/compare?a=penguins-2&amp;b=penguins-1">Swap A and B' in page
    assert client.get("/ns/team-a/compare?a=penguins-1").status_code == 400
