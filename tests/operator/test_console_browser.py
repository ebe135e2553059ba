"""The console in a real browser: Debian's Chromium driven by Playwright, against the console the Helm chart
runs in the local cluster (its own ServiceAccount, read-only RBAC, restricted pod), after real training runs
by the chart's operator.

What a user does and sees: every page loads without a console error; the figures render (non-empty SVG);
Experiment → run → compare works; the Test form, filled from the model's input schema with the endpoint's
key, returns the scored label, and the endpoint's 401 and 422 (naming the column) come back as it sent
them, never the key; an imported model says "no evaluation report", a changed report is refused, an unknown
name is a 404 page; an Endpoint patched to another model shows it on its open page within seconds, without
a reload; a BatchJob's list and detail pages show its phase, shards, rows, digest and outputs, and a failed
one says why. Screenshots of the main pages are kept under tests/output/console/ (or
$KSTUDIO_CONSOLE_SCREENSHOTS).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batch_kit import PENGUIN_ROWS, batch_job, finished_batch_job, score_penguins
from operator_support import REPO, Kubectl, experiment_manifest, trained_model_manifest, wait_until
from test_chart_install import RELEASE, Helm, chart_values

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "kstudio"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root, as `make test` runs here: Chromium's sandbox needs an unprivileged user
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("KSTUDIO_CONSOLE_SCREENSHOTS") or REPO / "tests" / "output" / "console")
PENGUIN = {
    "bill_length_mm": "46.5",
    "bill_depth_mm": "17.9",
    "flipper_length_mm": "192",
    "body_mass_g": "3500",
    "island": "Dream",
    "sex": "female",
}
SPECIES = {"Adelie", "Chinstrap", "Gentoo"}


def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: `apt-get install chromium` (hack/prereqs.sh installs it for `make test`)"
        )
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def console_release(
    kube: Kubectl, local_cluster: Any, namespace: str, tmp_path: Path, helm_binary: Path
) -> Iterator[Helm]:
    """The chart with the console, both watching only this namespace; what is left is removed after."""
    helm = Helm(local_cluster, helm_binary, tmp_path / "helm")
    values = [
        *chart_values(namespace, local_cluster.minio.pod_endpoint),
        "--set",
        "console.enabled=true",
        "--set",
        f"console.namespaces={{{namespace}}}",
    ]
    helm("install", RELEASE, str(CHART), "--namespace", namespace, *values)
    try:
        yield helm
    finally:
        # Delete our objects while the chart's operator still honours their finalizers.
        kinds = ("batchjobs", "webservices", "endpoints.kstudio.io", "experiments", "trainedmodels")
        for kind in kinds:
            kube.run("delete", kind, "--all", "--wait=false", check=False)
        kube.run("wait", "--for=delete", "trainedmodels", "--all", "--timeout=60s", check=False)
        kube.release_finalizers(*kinds)
        helm("uninstall", RELEASE, "--namespace", namespace, "--timeout", "60s", check=False)
        for role in (f"{RELEASE}-{namespace}-operator", f"{RELEASE}-{namespace}-console"):
            local_cluster.kubectl(
                "delete", "clusterrole,clusterrolebinding", role, "--ignore-not-found", check=False
            )


@pytest.fixture
def console_url(console_release: Helm, kube: Kubectl, local_cluster: Any) -> Iterator[str]:
    """http://127.0.0.1:<port>: this machine's loopback forwarded to the console's Service in the cluster's
    network (as `make demo` prints it)."""
    kube.run("rollout", "status", "deployment/kstudio-console", "--timeout=180s")
    ip = (kube.get("service", "kstudio-console") or {})["spec"]["clusterIP"]
    port = free_port()
    forward = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kstudio_localcluster.forward",
            "--netns",
            local_cluster.info.layout.netns,
            f"127.0.0.1:{port}={ip}:80",
        ],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("the console ready through the forward", lambda: _ready(url), timeout=60)
        yield url
    finally:
        forward.terminate()
        forward.wait(10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def ready_model(kube: Kubectl, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        model = kube.get("trainedmodel", name)
        return model if model and (model.get("status") or {}).get("phase") == "Ready" else None

    return wait_until(f"TrainedModel {name} Ready", probe, timeout=300)


def run_phase(kube: Kubectl, run: int, phase: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        runs = {r["run"]: r for r in kube.status("experiment", "penguins").get("runs") or []}
        return runs.get(run) if (runs.get(run) or {}).get("phase") == phase else None

    return wait_until(f"run {run} {phase}", probe, timeout=300)


def serving(kube: Kubectl, endpoint: str, model: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        st = kube.status("endpoint.kstudio.io", endpoint)
        return st if st.get("phase") == "Ready" and st.get("model") == model else None

    return wait_until(f"{endpoint} serving {model}", probe, timeout=240)


def train_and_serve(kube: Kubectl) -> str:
    """Three runs (a good one, a weaker one the gate refuses, one that fails), a WebService following the
    experiment behind an f1_macro gate, an extra Endpoint pinned to run 1, an imported model and one whose
    report's sha256 is wrong. Returns the default endpoint's primary key."""
    assert kube.apply(experiment_manifest()).returncode == 0
    first = ready_model(kube, "penguins-1")
    service = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "WebService",
        "metadata": {"name": "penguins"},
        "spec": {"modelFrom": {"experiment": "penguins", "promote": {"metric": "f1_macro", "minDelta": 0.0}}},
    }
    assert kube.apply(json.dumps(service)).returncode == 0
    ep2 = {
        "apiVersion": "kstudio.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "ep2"},
        "spec": {"webService": "penguins", "model": "penguins-1"},
    }
    assert kube.apply(json.dumps(ep2)).returncode == 0
    weaker = {"spec": {"algorithm": {"params": {"n_estimators": 2, "max_depth": 1, "random_state": 0}}}}
    kube.run("patch", "experiment", "penguins", "--type=merge", "-p", json.dumps(weaker))
    ready_model(kube, "penguins-2")
    missing = {"spec": {"dataset": {"uri": "s3://datasets/no-such-file.csv"}}}
    kube.run("patch", "experiment", "penguins", "--type=merge", "-p", json.dumps(missing))
    run_phase(kube, 3, "Failed")
    artifact = first["spec"]["artifact"]
    wrong = {"uri": first["spec"]["evaluation"]["uri"], "sha256": "0" * 64}
    assert kube.apply(trained_model_manifest("imported", {"artifact": artifact})).returncode == 0
    assert (
        kube.apply(trained_model_manifest("tampered", {"artifact": artifact, "evaluation": wrong})).returncode
        == 0
    )
    ready_model(kube, "imported")
    ready_model(kube, "tampered")
    serving(kube, "penguins-default", "penguins-1")
    serving(kube, "ep2", "penguins-1")
    secret = kube.get("secret", "penguins-default-keys") or {}
    return base64.b64decode(secret["data"]["primaryKey"]).decode()


def batch_jobs(kube: Kubectl, store: Any, namespace: str) -> str:
    """Two BatchJobs run by the chart's operator: penguins.csv scored with penguins-1, and one whose input
    does not exist (Failed before any pod). Returns the first's output prefix."""
    ghost = {
        "model": "penguins-1",
        "input": {"uri": f"s3://batch/{namespace}/no-such.csv"},
        "output": {"uri": f"s3://batch/{namespace}/ghost/"},
    }
    store.ensure_bucket("batch")
    assert kube.apply(batch_job("ghost", **ghost)).returncode == 0
    status, out = score_penguins(kube, store, namespace, "penguin-scores")
    assert status["phase"] == "Succeeded", status
    assert finished_batch_job(kube, "ghost")["phase"] == "Failed"
    return out


class Browser:
    """One Chromium page, recording console errors, page errors and failed requests."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("requestfailed", self._request_failed)

    def _request_failed(self, request: Any) -> None:
        # net::ERR_ABORTED is Chromium cancelling a request because the page moved on (a favicon still
        # loading when the test clicks a link): nothing a user sees. A missing file answers 404, which
        # "requestfailed" never reports and Chromium logs as a console error (recorded above).
        if request.failure != "net::ERR_ABORTED":
            self.errors.append(f"request failed: {request.url} {request.failure}")

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        return response

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def figures_render(self, selector: str = "figure img") -> int:
        """How many images match; fails unless every one loaded and each is a non-empty SVG."""
        script = "imgs => imgs.map(i => [i.src, i.complete, i.naturalWidth])"
        # Polled from here: a predicate polled inside the page would need 'unsafe-eval', which the
        # console's Content-Security-Policy rightly refuses.
        loaded = wait_until(
            f"images {selector} loaded",
            lambda: (
                (found := self.page.eval_on_selector_all(selector, script))
                and all(c for _, c, _ in found)
                and found
            ),
            timeout=60,
        )
        sizes = [(src, width) for src, _, width in loaded]
        for src, width in sizes:
            assert width > 0, f"{src} did not render"
            body = self.page.request.get(src)
            assert body.status == 200 and body.headers["content-type"] == "image/svg+xml", src
            assert b"<svg" in body.body() and len(body.body()) > 1000, src
        return len(sizes)


def test_console_in_a_real_browser(
    kube: Kubectl, console_url: str, local_cluster: Any, namespace: str, tmp_path: Path, example_data: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    executable = chromium()
    key = train_and_serve(kube)
    scores_out = batch_jobs(kube, example_data, namespace)
    digest = (kube.get("trainedmodel", "penguins-1") or {})["spec"]["artifact"]["sha256"]
    ns = namespace

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            ui = Browser(browser.new_page(viewport={"width": 1280, "height": 900}), console_url)

            # The start page of a one-namespace console is that namespace's overview.
            ui.open("/")
            assert ui.page.url == f"{console_url}/ns/{ns}/"
            expect(ui.page.locator("h1")).to_have_text(f"Namespace{ns}")
            assert ui.page.locator('a[href$="/endpoints/ep2"]').count() >= 1
            ui.shot("overview")

            # Experiment → its run history with the chart and the failure reason.
            ui.page.click(f'a[href="/ns/{ns}/experiments/penguins"]')
            expect(ui.page.locator("h1")).to_have_text("Experimentpenguins")
            assert ui.figures_render("img.chart") == 1
            runs = ui.page.locator("table.runs tbody tr")
            expect(runs).to_have_count(3)
            expect(runs.nth(0)).to_contain_text("Failed")
            expect(runs.nth(0).locator("td.failure")).to_contain_text("no-such-file.csv")
            ui.shot("experiment")

            # → a run's report: the figures from storage, verified; the metrics; the spec snapshot.
            ui.page.click(f'table.runs a[href="/ns/{ns}/models/penguins-1"]')
            expect(ui.page.locator("h1")).to_have_text("Trained modelpenguins-1")
            assert ui.figures_render() == 4
            expect(ui.page.locator("#report")).to_contain_text("(verified)")
            expect(ui.page.locator("#report")).to_contain_text("Experiment snapshot")
            ui.shot("run-report")

            # → compare the two runs (the experiment's form): deltas and the curves overlaid.
            ui.page.go_back()
            ui.page.select_option('form.compare select[name="a"]', "penguins-1")
            ui.page.select_option('form.compare select[name="b"]', "penguins-2")
            ui.page.click("form.compare button")
            expect(ui.page.locator("h1")).to_contain_text("penguins-1 (A) with penguins-2 (B)")
            assert ui.figures_render() == 5
            expect(ui.page.locator("table.metrics")).to_contain_text("f1_macro")
            expect(ui.page.locator("#compare")).to_contain_text(
                "WebService penguins gate: would refuse penguins-2"
            )
            ui.shot("compare")

            # The web service: what it serves, its promotions with their reasons.
            ui.open(f"/ns/{ns}/webservices/penguins")
            expect(ui.page.locator("td.not-promoted")).to_have_count(1)
            expect(ui.page.locator("#webservice")).to_contain_text("penguins-1")
            ui.shot("webservice")

            # Studio's Test form on the default endpoint: the key pasted, the scored row shown.
            ui.open(f"/ns/{ns}/endpoints/penguins-default")
            for column, value in PENGUIN.items():
                ui.page.fill(f'input[name="col:{column}"]', value)
            ui.page.fill("#key", key)
            ui.page.click("form.test button")
            expect(ui.page.locator("#answer")).to_contain_text("HTTP 200")
            label = ui.page.locator("table.scored tbody tr td").first.inner_text()
            assert label in SPECIES
            expect(ui.page.locator("table.scored")).to_contain_text("Adelie 0.")  # probabilities per class
            assert key not in ui.page.content() and ui.page.input_value("#key") == ""
            ui.shot("endpoint-test")
            ui.page.fill("#key", "not-the-key")
            ui.page.click("form.test button")
            expect(ui.page.locator("#answer")).to_contain_text("HTTP 401")
            ui.page.fill('input[name="col:bill_length_mm"]', "long")
            ui.page.fill("#key", key)
            ui.page.click("form.test button")
            expect(ui.page.locator("#answer")).to_contain_text("HTTP 422")
            expect(ui.page.locator("pre.error-body")).to_contain_text("bill_length_mm")
            assert key not in ui.page.content()

            # An imported model, a refused report, the events page.
            ui.open(f"/ns/{ns}/models/imported")
            expect(ui.page.locator("p.notice")).to_contain_text(
                "TrainedModel imported has no evaluation report"
            )
            ui.open(f"/ns/{ns}/models/tampered")
            expect(ui.page.locator("p.refused")).to_contain_text(
                f"not the recorded {'0' * 64}: refusing to show it"
            )
            ui.open(f"/ns/{ns}/events")
            assert ui.page.locator("table.events tbody tr").count() > 0

            # Batch jobs: the list (from the navigation), a finished job's page, a failed one's reason.
            ui.page.click(f'header nav a[href="/ns/{ns}/batchjobs"]')
            expect(ui.page.locator("h1")).to_have_text(f"Batch jobs in{ns}")
            expect(ui.page.locator("table.batchjobs")).to_contain_text("ghost")
            ui.page.click(f'table.batchjobs a[href="/ns/{ns}/batchjobs/penguin-scores"]')
            expect(ui.page.locator("h1")).to_have_text("Batch jobpenguin-scores")
            expect(ui.page.locator("dd.batch-phase")).to_have_text("Succeeded")
            expect(ui.page.locator("dd.model")).to_have_text("penguins-1")
            expect(ui.page.locator("dd.digest")).to_have_text(digest)
            cells = ui.page.locator("table.progress tbody td")
            expect(cells.nth(0)).to_have_text("1")  # shards
            expect(cells.nth(2)).to_have_text("1")  # succeeded
            scored, rejected = (int(cells.nth(i).inner_text().replace(",", "")) for i in (4, 5))
            assert scored + rejected == PENGUIN_ROWS and scored > 300, (scored, rejected)
            expect(ui.page.locator("ul.outputs")).to_contain_text(f"{scores_out}manifest.json")
            ui.shot("batchjob")
            ui.open(f"/ns/{ns}/batchjobs/ghost")
            expect(ui.page.locator("p.refused")).to_contain_text(
                f"InputNotFound: s3://batch/{ns}/no-such.csv does not exist"
            )

            # An Endpoint patched while its page is open: the page shows the new model by itself.
            ui.open(f"/ns/{ns}/endpoints/ep2")
            expect(ui.page.locator("dd.serves")).to_have_text("penguins-1")
            ui.page.evaluate("window.kstudioTestMarker = 'not reloaded'")
            patched_at = time.monotonic()
            kube.run(
                "patch",
                "endpoints.kstudio.io",
                "ep2",
                "--type=merge",
                "-p",
                '{"spec":{"model":"penguins-2"}}',
            )
            serving(kube, "ep2", "penguins-2")
            in_status = time.monotonic()
            expect(ui.page.locator("dd.serves")).to_have_text("penguins-2", timeout=15_000)
            on_page = time.monotonic()
            expect(ui.page.locator("ol.timeline li").first).to_contain_text("penguins-1 → penguins-2")
            assert ui.page.evaluate("window.kstudioTestMarker") == "not reloaded"
            print(
                f"ep2 patched: status serving penguins-2 after {in_status - patched_at:.1f} s, "
                f"page showing it after {on_page - patched_at:.1f} s ({on_page - in_status:.1f} s later)"
            )
            ui.shot("endpoint-rollout")
            assert ui.errors == [], ui.errors

            # Unknown names: a 404 page (the browser logs the 404 status itself; nothing else).
            lost = Browser(browser.new_page(), console_url)
            assert lost.open(f"/ns/{ns}/models/no-such-model").status == 404
            expect(lost.page.locator("h1")).to_have_text("Not found")
            expect(lost.page.locator("p.refused")).to_have_text(
                f"TrainedModel no-such-model not found in namespace {ns}"
            )
            assert [e for e in lost.errors if "404" not in e] == []
        finally:
            browser.close()

    # The console read all that with get/list/watch only, and never a key.
    account = f"system:serviceaccount:{ns}:kstudio-console"
    for verb, resource, allowed in (
        ("get", "secrets", "no"),
        ("list", "secrets", "no"),
        ("watch", "trainedmodels.kstudio.io", "yes"),
        ("watch", "batchjobs.kstudio.io", "yes"),
        ("create", "batchjobs.kstudio.io", "no"),
        ("patch", "endpoints.kstudio.io", "no"),
        ("create", "pods", "no"),
    ):
        answer = kube.run("auth", "can-i", verb, resource, f"--as={account}", check=False).stdout.strip()
        assert answer == allowed, (verb, resource, answer)
    log = kube.run("logs", "deployment/kstudio-console", "--tail=2000", check=False).stdout
    assert key not in log and "Forbidden" not in log, log
