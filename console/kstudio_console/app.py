"""The console's web app: one route table (ROUTES), server-rendered pages, read-only.

Every page reads the watch-fed cache (cache.py) on the event loop, where the watches write it, so a page
is consistent and costs no API request. Reading storage (reports, figures) and drawing (matplotlib, the
injected comparison renderer) block, so they run in worker threads on copies.

Pages send a Content-Security-Policy that allows only the console's own stylesheet, script and images;
figures (verified SVG) are served as images with a policy that runs nothing. The Test form's key is read
from the POST body and dropped after the call (testform.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from kstudio_console import pages, testform
from kstudio_console.cache import (
    BATCH_JOB,
    ENDPOINT,
    EVENT,
    EXPERIMENT,
    POD,
    SERVICE,
    TRAINED_MODEL,
    WEB_SERVICE,
    Kind,
    ObjectCache,
)
from kstudio_console.evaluations import ModelEvaluation, NothingToShow, Unreachable, metric_rows
from kstudio_console.report_html import report_sections
from kstudio_console.reports import Reports
from kstudio_console.watch import Watches

log = logging.getLogger("kstudio.console")
HERE = Path(__file__).resolve().parent
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
FIGURE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"  # an SVG's own <style>; no script
EVENTS_ON_PAGES = 15
EVENTS_ON_EVENTS_PAGE = 200

# What the composition root (the `kstudio` command) hands in: gate verdicts for two models given the
# namespace's WebServices (the operator's promotion gate), as kstudio_cli.report.gate_verdicts.
Verdicts = Callable[[dict[str, Any], dict[str, Any], list[dict[str, Any]]], list[str]]


@dataclass
class Console:
    """Everything a page needs: the cache, the reports, the watched namespaces ([] = all)."""

    cache: ObjectCache
    reports: Reports
    namespaces: list[str] = field(default_factory=list)
    verdicts: Verdicts | None = None
    watches: Watches | None = None
    templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["cell"] = _cell

    def page(
        self, template: str, namespace: str | None, http_status: int = 200, live: bool = True, **values: Any
    ) -> HTMLResponse:
        """The rendered page; `live` pages ask for the namespace's revision and refresh themselves."""
        problems = [
            f"watch of {plural} ({scope or 'all namespaces'}) failing: {error}"
            for (plural, scope), error in sorted(self.cache.errors.items())
        ]
        if self.reports.store_problem:
            problems.append(f"evaluation reports cannot be read: {self.reports.store_problem}")
        html = self.templates.get_template(template).render(
            namespace=namespace,
            ns_url=f"/ns/{quote(namespace)}" if namespace else "",
            revision=self.cache.revision(namespace) if namespace else 0,
            revision_url=f"/ns/{quote(namespace)}/revision" if namespace and live else "",
            problems=problems,
            **values,
        )
        return HTMLResponse(html, status_code=http_status, headers={"Cache-Control": "no-store"})

    def link(self, namespace: str, kind: Kind, name: str | None) -> str:
        """The page of an object the cache holds; "" (no link) for a name that names nothing (yet)."""
        if not name or self.cache.get(kind, namespace, name) is None:
            return ""
        return pages.url(namespace, kind.kind, name)


def _cell(value: Any) -> str:
    """A scored value as a table cell: probabilities per class as 'class 0.981, ...', floats to 4 places."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


class NotFound(HTTPException):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


def _now() -> datetime:
    return datetime.now(UTC)


# --- the pages ---------------------------------------------------------------------------------------


def watched(console: Console, namespace: str) -> str:
    """The namespace, or NotFound when the console does not watch it or it holds no kstudio object."""
    if console.namespaces and namespace not in console.namespaces:
        raise NotFound(
            f"namespace {namespace} is not watched by this console ({', '.join(console.namespaces)})"
        )
    if not console.namespaces and namespace not in console.cache.namespaces():
        raise NotFound(f"namespace {namespace} has no kstudio objects")
    return namespace


def found(console: Console, kind: Any, namespace: str, name: str) -> dict[str, Any]:
    obj = console.cache.get(kind, watched(console, namespace), name)
    if obj is None:
        raise NotFound(f"{kind.kind} {name} not found in namespace {namespace}")
    return obj


async def home(console: Console, request: Request) -> Response:
    if len(console.namespaces) == 1:
        return RedirectResponse(f"/ns/{quote(console.namespaces[0])}/", status_code=302)
    names = console.namespaces or console.cache.namespaces()
    rows = [
        {
            "name": ns,
            "url": f"/ns/{quote(ns)}/",
            "experiments": console.cache.count(EXPERIMENT, ns),
            "models": console.cache.count(TRAINED_MODEL, ns),
            "web_services": console.cache.count(WEB_SERVICE, ns),
            "endpoints": console.cache.count(ENDPOINT, ns),
        }
        for ns in names
    ]
    return console.page("namespaces.html", None, title="Namespaces", rows=rows, watched=console.namespaces)


async def overview(console: Console, request: Request) -> Response:
    ns = watched(console, request.path_params["namespace"])
    cache = console.cache
    return console.page(
        "overview.html",
        ns,
        title=ns,
        counts={
            "experiments": cache.count(EXPERIMENT, ns),
            "models": cache.count(TRAINED_MODEL, ns),
            "web_services": cache.count(WEB_SERVICE, ns),
            "endpoints": cache.count(ENDPOINT, ns),
            "batch_jobs": cache.count(BATCH_JOB, ns),
        },
        experiments=pages.experiment_rows(cache.objects(EXPERIMENT, ns)),
        web_services=pages.web_service_rows(ns, cache.objects(WEB_SERVICE, ns)),
        endpoints=pages.endpoint_rows(ns, cache.objects(ENDPOINT, ns)),
        events=pages.event_rows(cache.objects(EVENT, ns), _now(), EVENTS_ON_PAGES),
    )


async def events(console: Console, request: Request) -> Response:
    ns = watched(console, request.path_params["namespace"])
    rows = pages.event_rows(console.cache.objects(EVENT, ns), _now(), EVENTS_ON_EVENTS_PAGE)
    return console.page("events.html", ns, title=f"Events in {ns}", events=rows)


async def revision(console: Console, request: Request) -> Response:
    ns = request.path_params["namespace"]
    return JSONResponse({"revision": console.cache.revision(ns)}, headers={"Cache-Control": "no-store"})


async def experiment(console: Console, request: Request) -> Response:
    ns, name = request.path_params["namespace"], request.path_params["name"]
    exp = found(console, EXPERIMENT, ns, name)
    models = {pages.name_of(m): m for m in console.cache.objects(TRAINED_MODEL, ns)}
    runs = pages.run_rows(exp, models)
    comparable = [r["model"] for r in reversed(runs) if r["model_url"]]
    metric = pages.chart_metric(exp)
    chart_url = ""
    if metric:
        points = pages.chart_points(exp, metric)
        version = hashlib.sha256(json.dumps([metric, points]).encode()).hexdigest()[:12]
        chart_url = f"/ns/{quote(ns)}/experiments/{quote(name)}/runs.svg?v={version}"
    spec, status = pages.spec_of(exp), pages.status_of(exp)
    algorithm = spec.get("algorithm") or {}
    latest = status.get("latestTrainedModel")
    return console.page(
        "experiment.html",
        ns,
        title=f"Experiment {name}",
        name=name,
        spec=spec,
        status=status,
        algorithm=f"{algorithm.get('name', '')} {json.dumps(algorithm.get('params') or {})}",
        sweep=json.dumps((spec.get("sweep") or {}).get("params") or {}),
        latest_model_url=pages.url(ns, "TrainedModel", latest) if latest in models else "",
        runs=runs,
        chart_url=chart_url,
        chart_metric=metric,
        comparable=comparable,
        default_a=comparable[-2] if len(comparable) >= 2 else "",
        default_b=comparable[-1] if comparable else "",
        events=pages.event_rows(console.cache.objects(EVENT, ns), _now(), EVENTS_ON_PAGES, about=name),
    )


async def run_chart(console: Console, request: Request) -> Response:
    ns, name = request.path_params["namespace"], request.path_params["name"]
    exp = found(console, EXPERIMENT, ns, name)
    metric = pages.chart_metric(exp)
    if metric is None:
        raise NotFound(f"Experiment {name} has no run with a metric yet")
    points = pages.chart_points(exp, metric)
    svg = await run_in_threadpool(console.reports.run_chart, metric, points)
    return _svg(svg)


def _svg(data: bytes) -> Response:
    return Response(
        data,
        media_type="image/svg+xml",
        headers={
            "Content-Security-Policy": FIGURE_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600",
        },
    )


async def _evaluation(console: Console, model: dict[str, Any], *, required: bool) -> ModelEvaluation:
    """The model's verified report, read in a worker thread (storage blocks)."""
    copy = json.loads(json.dumps(model))  # the thread gets its own; the cache may change meanwhile
    evaluation: ModelEvaluation = await run_in_threadpool(console.reports.evaluation, copy, required=required)
    return evaluation


async def model_page(console: Console, request: Request) -> Response:
    ns, name = request.path_params["namespace"], request.path_params["name"]
    model = found(console, TRAINED_MODEL, ns, name)
    spec, status = pages.spec_of(model), pages.status_of(model)
    users = pages.model_users(console.cache.objects(WEB_SERVICE, ns), console.cache.objects(ENDPOINT, ns))
    source = spec.get("source") or {}
    siblings = (
        [
            pages.name_of(m)
            for m in console.cache.objects(TRAINED_MODEL, ns)
            if pages.name_of(m) != name
            and (pages.spec_of(m).get("source") or {}).get("experiment") == source.get("experiment")
        ]
        if source
        else []
    )
    refused = missing = ""
    evaluation: ModelEvaluation | None = None
    try:
        evaluation = await _evaluation(console, model, required=True)
    except NothingToShow as exc:
        # "no evaluation report" (imported, not verified yet) or a refusal (sha256 mismatch, unreadable)
        if status.get("evaluation"):
            refused = str(exc)
        else:
            missing = str(exc)
    except Unreachable as exc:  # storage down: the rest of the page still shows
        missing = f"{exc} (shown once storage answers)"
    figures, tables, report_rows = [], Markup(""), ""
    if evaluation is not None and evaluation.report is not None and evaluation.ref is not None:
        report = evaluation.report
        figures = [
            {
                "title": f.title,
                "url": f"/ns/{quote(ns)}/models/{quote(name)}/figures/{f.name}.svg?v={f.sha256[:12]}",
            }
            for f in report.figures
            if f.name in evaluation.figures
        ]
        tables = Markup("\n".join(report_sections(report)))  # noqa: S704 - every value escaped by report_html
        report_rows = f"{report.rows.train} train rows, {report.rows.test} test rows"
    return console.page(
        "model.html",
        ns,
        title=f"TrainedModel {name}",
        name=name,
        spec=spec,
        status=status,
        artifact=spec.get("artifact") or {},
        source=source,
        source_url=console.link(ns, EXPERIMENT, source.get("experiment")),
        users=pages.user_links(ns, users.get(name, [])),
        metrics=sorted((status.get("metrics") or {}).items()),
        compare_with=siblings,
        refused=refused,
        missing=missing,
        report_uri=evaluation.ref.uri if evaluation and evaluation.ref else "",
        report_sha256=evaluation.ref.sha256 if evaluation and evaluation.ref else "",
        report_rows=report_rows,
        report_figures=figures,
        report_tables=tables,
        events=pages.event_rows(console.cache.objects(EVENT, ns), _now(), EVENTS_ON_PAGES, about=name),
    )


async def model_figure(console: Console, request: Request) -> Response:
    ns, name, figure = (request.path_params[k] for k in ("namespace", "name", "figure"))
    model = found(console, TRAINED_MODEL, ns, name)
    try:
        evaluation = await _evaluation(console, model, required=True)
    except NothingToShow as exc:
        raise NotFound(str(exc)) from exc
    except Unreachable as exc:
        raise HTTPException(503, str(exc)) from exc
    if figure not in evaluation.figures:
        raise NotFound(f"TrainedModel {name}'s report has no figure {figure}")
    return _svg(evaluation.figures[figure])


async def _pair(console: Console, request: Request) -> tuple[str, ModelEvaluation, ModelEvaluation]:
    ns = request.path_params["namespace"]
    a_name, b_name = request.query_params.get("a", ""), request.query_params.get("b", "")
    if not a_name or not b_name:
        raise HTTPException(400, "compare needs two TrainedModels: ?a=<name>&b=<name>")
    a_model, b_model = found(console, TRAINED_MODEL, ns, a_name), found(console, TRAINED_MODEL, ns, b_name)
    a = await _readable(console, a_model)
    b = await _readable(console, b_model)
    return ns, a, b


async def _readable(console: Console, model: dict[str, Any]) -> ModelEvaluation:
    """The model's evaluation for a comparison: without a report (or with a refused one) it still has its
    metrics, and `missing` says why it has no curves."""
    try:
        return await _evaluation(console, model, required=False)
    except (NothingToShow, Unreachable) as exc:
        return ModelEvaluation(pages.name_of(model), model, missing=str(exc))


async def compare(console: Console, request: Request) -> Response:
    ns, a, b = await _pair(console, request)
    overlaid = await run_in_threadpool(console.reports.comparison, a, b)
    query = request.url.query
    figures = [
        {"title": f.title, "url": f"/ns/{quote(ns)}/compare/figures/{f.name}.svg?{query}"} for f in overlaid
    ]
    verdicts = (
        console.verdicts(a.model, b.model, console.cache.objects(WEB_SERVICE, ns)) if console.verdicts else []
    )
    return console.page(
        "compare.html",
        ns,
        title=f"{a.name} vs {b.name}",
        a=a.name,
        b=b.name,
        a_url=pages.url(ns, "TrainedModel", a.name),
        b_url=pages.url(ns, "TrainedModel", b.name),
        swap_url=pages.compare_url(ns, b.name, a.name),
        rows=metric_rows(a, b),
        notes=[e.missing for e in (a, b) if e.missing],
        verdicts=verdicts,
        overlaid=figures,
    )


async def compare_figure(console: Console, request: Request) -> Response:
    _, a, b = await _pair(console, request)
    overlaid = await run_in_threadpool(console.reports.comparison, a, b)
    figure = request.path_params["figure"]
    for f in overlaid:
        if f.name == figure:
            return _svg(f.svg)
    raise NotFound(f"no figure {figure} in the comparison of {a.name} and {b.name}")


async def web_service(console: Console, request: Request) -> Response:
    ns, name = request.path_params["namespace"], request.path_params["name"]
    ws = found(console, WEB_SERVICE, ns, name)
    spec, status = pages.spec_of(ws), pages.status_of(ws)
    follow = spec.get("modelFrom") or {}
    rule = follow.get("promote") or {}
    gate = ""
    if rule:
        direction = rule.get("direction") or "the metric's own direction"
        gate = f"{rule.get('metric')} improves by at least {rule.get('minDelta', 0)} ({direction})"
    own = [e for e in console.cache.objects(ENDPOINT, ns) if pages.spec_of(e).get("webService") == name]
    model = status.get("model")
    default = status.get("defaultEndpoint")
    return console.page(
        "webservice.html",
        ns,
        title=f"WebService {name}",
        name=name,
        spec=spec,
        status=status,
        model_url=console.link(ns, TRAINED_MODEL, model),
        follows=follow.get("experiment") or "",
        follows_url=pages.url(ns, "Experiment", follow["experiment"]) if follow.get("experiment") else "",
        gate=gate,
        default_url=console.link(ns, ENDPOINT, default),
        endpoints=pages.endpoint_rows(ns, own),
        promotions=pages.promotion_rows(ws),
        events=pages.event_rows(console.cache.objects(EVENT, ns), _now(), EVENTS_ON_PAGES, about=name),
    )


async def endpoint(console: Console, request: Request) -> Response:
    ns, name = request.path_params["namespace"], request.path_params["name"]
    ep = found(console, ENDPOINT, ns, name)
    values: dict[str, str] = {}
    answer: testform.TestAnswer | None = None
    schema = _served_schema(console, ns, ep)
    if request.method == "POST":
        try:
            values, key = testform.read_form(await request.body())
        except ValueError as exc:
            raise HTTPException(413, str(exc)) from exc
        address = testform.service_address(console.cache.get(SERVICE, ns, name))
        if address is None:
            answer = testform.TestAnswer(problem=f"Endpoint {name} has no Service with an address yet")
        else:
            answer = await testform.call_endpoint(address, key, testform.score_request(schema, values))
        del key  # used for this one request: not kept, not shown
    spec, status = pages.spec_of(ep), pages.status_of(ep)
    model = status.get("model")
    ws = spec.get("webService")
    return console.page(
        "endpoint.html",
        ns,
        title=f"Endpoint {name}",
        name=name,
        spec=spec,
        status=status,
        self_url=pages.url(ns, "Endpoint", name),
        model_url=console.link(ns, TRAINED_MODEL, model),
        web_service_url=console.link(ns, WEB_SERVICE, ws),
        pods=pages.scorer_pods(console.cache.objects(POD, ns), name),
        rollouts=pages.rollout_timeline(ep),
        schema=schema,
        values=values,
        answer=answer,
        events=pages.event_rows(console.cache.objects(EVENT, ns), _now(), EVENTS_ON_PAGES, about=name),
    )


def _served_schema(console: Console, namespace: str, ep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The input schema of the model the endpoint serves (else the one its spec names)."""
    status, spec = pages.status_of(ep), pages.spec_of(ep)
    for model_name in (status.get("model"), spec.get("model")):
        model = console.cache.get(TRAINED_MODEL, namespace, str(model_name)) if model_name else None
        schema = pages.status_of(model).get("inputSchema") if model else None
        if schema:
            return list(schema)
    return []


async def models(console: Console, request: Request) -> Response:
    ns = watched(console, request.path_params["namespace"])
    users = pages.model_users(console.cache.objects(WEB_SERVICE, ns), console.cache.objects(ENDPOINT, ns))
    rows = pages.model_rows(console.cache.objects(TRAINED_MODEL, ns), users)
    return console.page("models.html", ns, title=f"Trained models in {ns}", rows=rows)


async def batch_jobs(console: Console, request: Request) -> Response:
    ns = watched(console, request.path_params["namespace"])
    rows = pages.batch_job_rows(ns, console.cache.objects(BATCH_JOB, ns))
    return console.page("batchjobs.html", ns, title=f"Batch jobs in {ns}", rows=rows)


async def batch_job(console: Console, request: Request) -> Response:
    ns, name = request.path_params["namespace"], request.path_params["name"]
    job = found(console, BATCH_JOB, ns, name)
    status = pages.status_of(job)
    return console.page(
        "batchjob.html",
        ns,
        title=f"BatchJob {name}",
        name=name,
        status=status,
        facts=pages.batch_job_facts(job),
        model_url=console.link(ns, TRAINED_MODEL, status.get("model")),
        endpoint_url=console.link(ns, ENDPOINT, pages.spec_of(job).get("endpoint")),
        endpoint=pages.spec_of(job).get("endpoint") or "",
        events=pages.event_rows(console.cache.objects(EVENT, ns), _now(), EVENTS_ON_PAGES, about=name),
    )


async def healthz(console: Console, request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(console: Console, request: Request) -> Response:
    """Ready once every watch has listed its objects: before that, pages would show a partial picture."""
    ready = console.watches is None or console.watches.synced
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


Handler = Callable[[Console, Request], Awaitable[Response]]
# The one route table: (methods, path, handler).
ROUTES: tuple[tuple[tuple[str, ...], str, Handler], ...] = (
    (("GET",), "/", home),
    (("GET",), "/healthz", healthz),
    (("GET",), "/readyz", readyz),
    (("GET",), "/ns/{namespace}/", overview),
    (("GET",), "/ns/{namespace}/revision", revision),
    (("GET",), "/ns/{namespace}/events", events),
    (("GET",), "/ns/{namespace}/models", models),
    (("GET",), "/ns/{namespace}/models/{name}", model_page),
    (("GET",), "/ns/{namespace}/models/{name}/figures/{figure}.svg", model_figure),
    (("GET",), "/ns/{namespace}/experiments/{name}", experiment),
    (("GET",), "/ns/{namespace}/experiments/{name}/runs.svg", run_chart),
    (("GET",), "/ns/{namespace}/compare", compare),
    (("GET",), "/ns/{namespace}/compare/figures/{figure}.svg", compare_figure),
    (("GET",), "/ns/{namespace}/webservices/{name}", web_service),
    (("GET", "POST"), "/ns/{namespace}/endpoints/{name}", endpoint),
    (("GET",), "/ns/{namespace}/batchjobs", batch_jobs),
    (("GET",), "/ns/{namespace}/batchjobs/{name}", batch_job),
)


def create_app(console: Console) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        if console.watches is not None:
            console.watches.start()
        try:
            yield
        finally:
            if console.watches is not None:
                await console.watches.stop()

    app = FastAPI(title="kstudio console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def bind(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(console, request)

        endpoint.__name__ = handler.__name__
        return endpoint

    for methods, path, handler in ROUTES:
        app.add_api_route(path, bind(handler), methods=list(methods), include_in_schema=False)

    @app.exception_handler(HTTPException)
    async def error_page(request: Request, exc: HTTPException) -> Response:
        ns = request.path_params.get("namespace") if request.path_params else None
        known = bool(ns) and ns in (console.namespaces or console.cache.namespaces())
        headings = {404: "Not found", 400: "Bad request", 503: "Not available now", 413: "Too large"}
        return console.page(
            "error.html",
            ns if known else None,
            http_status=exc.status_code,
            live=False,
            title=headings.get(exc.status_code, "Error"),
            heading=headings.get(exc.status_code, f"Error {exc.status_code}"),
            message=str(exc.detail),
            back_url=f"/ns/{quote(ns)}/" if known and ns else "/",
            back_text=f"Back to namespace {ns}" if known else "Back to the start page",
        )

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    return app
