"""The product as a user sees it, in a real headless chromium against the real local stack.

0. Every service asks for credentials: the Prefect UI's login page takes the stack's auth string,
   the browser answers MLflow's basic-auth challenge with the stack's admin (never anonymous).
1. Prefect UI: find deployment `nightly` of flow `transfer-pipeline`, open Run → Custom run, edit
   the `params` form (k_shot = 3, and a tiny configuration so the run takes about a minute), Submit.
2. The process worker runs it to Completed (polled through the Prefect API, bounded).
   Its Artifacts tab lists the gate's verdict first (then the accuracy table), keys per target.
3. MLflow UI: the experiment `warmstart/uci-digits-5-9` opens in the training view (runs table),
   the pipeline's parent run with its test accuracy metric and gate verdict, the chart view with
   one `test_accuracy` chart holding every arm's runs, the registered model
   `warmstart-uci-digits-5-9-8x8-1ch-<digest>` with either the `champion` alias on our version or the version's
   `gate_verdict` tag "not promoted", and the version's link to the run that trained it.

Every step saves a screenshot under test-output/e2e/<test>/NN-<step>.png; a failing step saves
NN-<step>-FAILED.png and the assertion names the step.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.verdicts import expected_verdict
from warmstart.params import PipelineParams
from warmstart.tasks.flow_artifacts import flow_run_artifacts

# What the test types into the custom-run form (titles as Prefect renders the pydantic fields).
K_SHOT = 3
FORM = {
    "Source": "builtin:uci-digits?classes=0-4",
    "Target": "builtin:uci-digits?classes=5-9",
    "K Shot": str(K_SHOT),
    "Seeds": "1",
    "Pretrain Epochs": "2",
    "Finetune Epochs": "3",
    "Confirm Seeds": "2",  # the fewest the gate's interval takes (the default 5 trains 6 more)
}
STRATEGIES_KEPT = ["supervised"]
TRANSFER_MODES = ["linear_probe"]
EXPERIMENT = "warmstart/uci-digits-5-9"
TARGET_SLUG = "uci-digits-5-9"  # Prefect artifact keys name the target
# Every arm's runs carry test_accuracy: transfer, scratch and the control.
ARM_RUN_PREFIXES = (
    "finetune-target[supervised/linear_probe/",
    "train-scratch-baseline[scratch/",
    "train-control[",
)
# the registered model: warmstart-<target>-<H>x<W>-<C>ch-<preprocessing digest>
MODEL_PREFIX = "warmstart-uci-digits-5-9-8x8-1ch-"
RUN_TIMEOUT_S = 600  # the worker must finish the tiny run within this
UI_TIMEOUT_MS = 30_000
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
DEFAULTS = PipelineParams()  # what the form shows before the test edits it

# A pydantic field in Prefect's schema form: the nearest `.schema-form-property` around its label.
_PROPERTY = (
    "xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '),"
    " ' schema-form-property ')][1]"
)


class Steps:
    """Names each step, screenshots it, times it, and turns any error into one that names it."""

    def __init__(self, page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.n = 0
        self.seconds: dict[str, float] = {}
        self.saved: list[Path] = []

    def shot(self, name: str) -> Path:
        path = self.folder / f"{self.n:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.saved.append(path)
        return path

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.n += 1
        t0 = time.monotonic()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - re-raised with the step's name
            try:
                where = self.shot(f"{name}-FAILED")
            except Exception:  # noqa: BLE001 - the page itself may be gone
                where = "no screenshot"
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            what = " | ".join(lines[:3]) or type(exc).__name__
            raise AssertionError(f"e2e step '{name}' failed ({where}): {what}") from exc
        self.seconds[name] = time.monotonic() - t0
        self.shot(name)


def _field(page, title: str):
    from playwright.sync_api import expect

    label = page.locator(
        ".schema-form-property__label",
        has_text=re.compile(rf"^{re.escape(title)}( \(Optional\))?$"),
    )
    expect(label, f"form field {title!r}").to_have_count(1)
    return label.locator(_PROPERTY)


def _flow_run_ids(api: str, auth: tuple[str, str], deployment_id: str) -> set[str]:
    body = {"deployments": {"id": {"any_": [deployment_id]}}}
    r = httpx.post(f"{api}/flow_runs/filter", json=body, auth=auth, timeout=10)
    r.raise_for_status()
    return {fr["id"] for fr in r.json()}


def _wait_new_run(
    api: str, auth: tuple[str, str], deployment_id: str, before: set[str], timeout: float = 30
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _flow_run_ids(api, auth, deployment_id) - before
        if new:
            assert len(new) == 1, f"one Submit created {len(new)} flow runs: {sorted(new)}"
            return new.pop()
        time.sleep(0.5)
    raise AssertionError(f"no flow run was created for deployment {deployment_id} in {timeout} s")


def _wait_terminal(api: str, auth: tuple[str, str], flow_run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    run: dict = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{api}/flow_runs/{flow_run_id}", auth=auth, timeout=10)
        r.raise_for_status()
        run = r.json()
        if run["state_type"] in TERMINAL:
            return run
        time.sleep(2)
    raise AssertionError(
        f"flow run {flow_run_id} still {run.get('state_type')} after {timeout:.0f} s"
    )


def _worker_log_tail(home: Path, lines: int = 15) -> str:
    log = home / "logs" / "worker.log"
    if not log.exists():
        return f"(no {log})"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _dismiss_mlflow_overlays(page) -> None:
    """MLflow 3's assistant side panel and feature tips cover the page; close them if shown."""
    for selector in (
        '[data-component-id="mlflow.assistant.chat_panel.close"]',
        '[data-component-id="mlflow.detect_issues.guidance.got_it"]',
    ):
        button = page.locator(selector)
        if button.count() and button.first.is_visible():
            button.first.click()


def _chart_of_this_run(page, mlflow_url: str, experiment_id: str, parent, flow_run_id: str):
    """The runs page's chart view, on this flow run's runs, the parent expanded, every run shown
    and the charts narrowed to test_accuracy."""
    from urllib.parse import quote

    where = quote(f"tags.`warmstart.flow_run_id` = '{flow_run_id}'")
    page.goto(
        f"{mlflow_url}/#/experiments/{experiment_id}/runs"
        f"?compareRunsMode=CHART&searchFilter={where}"
    )
    _dismiss_mlflow_overlays(page)
    link = page.get_by_role("link", name=parent.info.run_name, exact=True)
    expander = link.locator("xpath=ancestor::div[@role='gridcell'][1]").locator("button").first
    expander.dispatch_event("click")  # the grid re-renders while polling: no stable moment
    page.get_by_role("button", name="Toggle visibility of runs").click()
    page.get_by_role("menuitemradio", name="Show all runs").click()
    page.get_by_placeholder("Search metric charts").fill("test_accuracy")


@pytest.mark.browser
def test_failed_step_is_named_and_screenshotted(browser, tmp_path):
    """The harness itself: a failing step raises an error naming it and leaves a screenshot."""
    from playwright.sync_api import expect

    page = browser.new_page()
    page.set_content("<h1>warmstart</h1>")
    step = Steps(page, tmp_path)
    with step("heading"):
        expect(page.get_by_role("heading", name="warmstart")).to_be_visible()
    with pytest.raises(AssertionError, match=r"^e2e step 'missing-button' failed \("):
        with step("missing-button"):
            expect(page.get_by_role("button", name="Run")).to_be_visible(timeout=300)
    page.close()
    assert [p.name for p in step.saved] == ["01-heading.png", "02-missing-button-FAILED.png"]
    assert all(p.stat().st_size > 1000 for p in step.saved)
    assert list(step.seconds) == ["heading"]


@pytest.mark.services
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(RUN_TIMEOUT_S + 300)
def test_custom_run_from_prefect_ui_shows_up_in_mlflow_ui(stack, deployed, browser, shots):
    from mlflow.tracking import MlflowClient
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect

    cfg, auth = stack.config, stack.prefect_auth
    prefect, api, mlflow_url = cfg.prefect_url, cfg.prefect_api_url, cfg.mlflow_url
    assert "nightly" in deployed["names"], f"deploy() registered {deployed['names']}"
    dep = httpx.get(f"{api}/deployments/name/transfer-pipeline/nightly", auth=auth, timeout=10)
    assert dep.status_code == 200, f"deployment transfer-pipeline/nightly: {dep.status_code}"
    deployment_id = dep.json()["id"]
    user, password = stack.mlflow_auth

    t_start = time.monotonic()
    # MLflow's basic-auth challenge is answered with the stack's admin, for MLflow's origin only
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000},
        http_credentials={"username": user, "password": password, "origin": mlflow_url},
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    step = Steps(page, shots)
    print(f"\ne2e screenshots: {shots}")
    try:
        with step("prefect-login"):
            page.goto(f"{prefect}/deployments")
            box = page.get_by_placeholder("admin:pass")  # the UI asks for the auth string
            expect(box).to_be_visible()
            box.fill(":".join(auth))
            page.get_by_role("button", name="Login").click()
            expect(box).to_have_count(0)

        with step("prefect-deployments"):
            page.goto(f"{prefect}/deployments")
            link = page.get_by_role("link", name="nightly", exact=True)
            expect(link).to_have_count(1)
            expect(page.get_by_text("transfer-pipeline").first).to_be_visible()

        with step("prefect-deployment-nightly"):
            link.click()
            page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment_id}"))
            expect(page.get_by_role("link", name="transfer-pipeline").first).to_be_visible()
            page.get_by_role("button", name="Run", exact=True).click()
            expect(page.get_by_role("button", name="Custom run")).to_be_visible()

        with step("prefect-custom-run-form"):
            page.get_by_role("button", name="Custom run").click()
            page.wait_for_url(re.compile(rf"/deployments/deployment/{deployment_id}/run"))
            k = _field(page, "K Shot").locator("input")
            expect(k).to_have_value(str(DEFAULTS.k_shot))  # the flow's default, before we edit
            for title, value in FORM.items():
                box = _field(page, title).locator("input, textarea").first
                box.fill(value)
                expect(box).to_have_value(value)
            strategies = _field(page, "Strategies")
            for tag in (s for s in DEFAULTS.strategies if s not in STRATEGIES_KEPT):
                strategies.locator(".p-tag", has_text=re.compile(rf"^{tag}$")).locator(
                    ".p-tag__dismiss"
                ).click()
            expect(strategies.locator(".p-tag")).to_have_text(STRATEGIES_KEPT)
            items = _field(page, "Transfer Modes").locator(".p-draggable-list__item")
            expect(items).to_have_count(len(DEFAULTS.transfer_modes))
            for n in range(len(DEFAULTS.transfer_modes) - 1, 0, -1):  # keep one item, retype it
                items.nth(n).locator(".schema-form-property-array-item__control > button").click()
                expect(items).to_have_count(n)
            items.first.locator("textarea").fill(TRANSFER_MODES[0])
            # Refused candidates are registered too (tagged candidate), so the registry pages
            # exist whatever the verdict.
            keep = _field(page, "Keep Candidates").locator("[role=switch], input[type=checkbox]")
            keep.first.click()
            expect(keep.first).to_be_checked()
            k.scroll_into_view_if_needed()

        with step("prefect-submitted"):
            before = _flow_run_ids(api, auth, deployment_id)
            page.get_by_role("button", name="Submit").click()
            toast = page.get_by_role("button", name="View run").first  # the UI mounts 2 toast apps
            expect(toast).to_be_visible()
            flow_run_id = _wait_new_run(api, auth, deployment_id, before)
            run_url = f"{api}/flow_runs/{flow_run_id}"
            params = httpx.get(run_url, auth=auth, timeout=10).json()["parameters"]
            p = params["params"]
            assert p["k_shot"] == K_SHOT, f"k_shot sent {p['k_shot']}, typed {K_SHOT}"
            assert p["source"] == FORM["Source"] and p["target"] == FORM["Target"], p
            assert p["strategies"] == STRATEGIES_KEPT, p["strategies"]
            assert p["transfer_modes"] == TRANSFER_MODES, p["transfer_modes"]
            assert (p["seeds"], p["pretrain_epochs"], p["finetune_epochs"]) == (1, 2, 3), p
            assert p["confirm_seeds"] == 2, p
            assert p["keep_candidates"] is True, p
            page.wait_for_timeout(500)  # let the route's fade-in finish for the screenshot

        with step("prefect-flow-run-completed"):
            t_run = time.monotonic()
            run = _wait_terminal(api, auth, flow_run_id, RUN_TIMEOUT_S)
            run_seconds = time.monotonic() - t_run
            assert run["state_type"] == "COMPLETED", (
                f"flow run {flow_run_id} ended {run['state_type']}: "
                f"{(run.get('state') or {}).get('message')}\n{_worker_log_tail(cfg.home)}"
            )
            page.goto(f"{prefect}/runs/flow-run/{flow_run_id}")
            expect(page.get_by_text(f"k={K_SHOT}").first).to_be_visible()
            expect(page.get_by_text("Completed", exact=True).first).to_be_visible()

        with step("prefect-flow-run-artifacts-verdict-first"):
            own = flow_run_artifacts(flow_run_id, api, auth)  # the order the UI lists them
            assert [(a["type"], a["key"]) for a in own[:2]] == [
                ("markdown", f"gate-verdict-{TARGET_SLUG}"),
                ("table", f"accuracy-table-{TARGET_SLUG}"),
            ], own
            page.locator("li.p-tab#artifacts").click(no_wait_after=True)
            cards = page.locator(".flow-run-artifacts a[href^='/artifacts/artifact/']")
            expect(cards.first).to_have_attribute("href", f"/artifacts/artifact/{own[0]['id']}")
            expect(cards.first).to_contain_text("gate: ")

        # What the UI must show, read through the tracking API.
        client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name(EXPERIMENT)
        assert experiment is not None, f"no MLflow experiment {EXPERIMENT}"
        parents = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`warmstart.flow_run_id` = '{flow_run_id}' "
            "and tags.`warmstart.kind` = 'pipeline'",
        )
        assert len(parents) == 1, f"{len(parents)} MLflow parent runs for flow run {flow_run_id}"
        parent = parents[0]
        assert parent.data.params["k_shot"] == str(K_SHOT), parent.data.params.get("k_shot")
        metric = "test_acc.supervised.linear_probe"
        accuracy = parent.data.metrics[metric]
        assert 0.0 < accuracy <= 1.0, f"{metric} = {accuracy}"
        verdict = parent.data.tags["gate_verdict"]
        assert verdict == expected_verdict(parent.data.tags), parent.data.tags.get("gate_reason")
        versions = client.search_model_versions(
            f"name LIKE '{MODEL_PREFIX}%' and tags.flow_run_id = '{flow_run_id}'"
        )
        assert len(versions) == 1, (
            f"{len(versions)} versions of {MODEL_PREFIX}* from flow run {flow_run_id}"
        )
        version = versions[0]
        assert version.tags["gate_verdict"] == verdict, (version.tags, verdict)
        model = version.name
        champion = client.get_registered_model(model).aliases.get("champion")
        if verdict == "promoted":
            assert champion == version.version, f"promoted v{version.version}, champion {champion}"
        else:
            assert champion != version.version, f"not promoted v{version.version} is champion"

        anonymous = browser.new_context()  # no credentials: MLflow's UI must not open
        try:
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                anonymous.new_page().goto(mlflow_url)  # chromium gives up on the 401 challenge
        finally:
            anonymous.close()

        with step("mlflow-experiments"):
            page.goto(f"{mlflow_url}/#/experiments")
            _dismiss_mlflow_overlays(page)
            exp_link = page.get_by_role("link", name=EXPERIMENT, exact=True)
            expect(exp_link).to_be_visible()

        with step("mlflow-experiment-training-view"):
            # MLflow 3.17's UI opens experiments in the view its GenAI / Model training switch
            # holds (default GenAI; the experiment-kind tag is only read with the switch off):
            # a user picks "Model training" once and the experiment opens on its runs.
            assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
            page.get_by_text("Model training", exact=True).first.click()
            exp_link.click()
            page.wait_for_url(re.compile(rf"#/experiments/{experiment.experiment_id}/runs\b"))
            _dismiss_mlflow_overlays(page)
            run_link = page.get_by_role("link", name=parent.info.run_name, exact=True)
            expect(run_link).to_be_visible()

        with step("mlflow-pipeline-run"):
            run_link.click()
            page.wait_for_url(re.compile(rf"/runs/{parent.info.run_id}"))
            _dismiss_mlflow_overlays(page)
            expect(page.get_by_test_id("runs-header")).to_have_text(parent.info.run_name)
            tag = page.locator('[role="status"][title="gate_verdict"]')
            expect(tag).to_have_text(f"gate_verdict: {verdict}")
            row = page.get_by_role("row").filter(
                has=page.get_by_role("link", name=metric, exact=True)
            )
            expect(row).to_have_count(1)
            expect(row.get_by_role("cell").nth(1)).to_have_text(repr(accuracy))
            row.scroll_into_view_if_needed()

        with step("mlflow-chart-test-accuracy"):
            _chart_of_this_run(page, mlflow_url, experiment.experiment_id, parent, flow_run_id)
            charts = page.locator("[data-testid='experiment-view-compare-runs-card']")
            expect(charts).to_have_count(1)  # one chart: test_accuracy, every arm's runs in it
            expect(charts.first).to_contain_text("test_accuracy")
            for prefix in ARM_RUN_PREFIXES:
                expect(charts.first).to_contain_text(prefix)

        with step("mlflow-registered-model"):
            page.goto(f"{mlflow_url}/#/models/{model}")
            _dismiss_mlflow_overlays(page)
            expect(page.get_by_role("heading", name=model)).to_be_visible()
            v_link = page.get_by_role("link", name=f"Version {version.version}", exact=True)
            expect(v_link).to_be_visible()
            v_row = page.get_by_role("row").filter(has=v_link)
            expect(v_row).to_have_count(1)
            if champion == version.version:  # the aliases cell of our version
                expect(v_row).to_contain_text("champion")
            else:
                expect(v_row).not_to_contain_text("champion")

        with step("mlflow-model-version-verdict"):
            v_link.click()
            page.wait_for_url(re.compile(rf"#/models/{model}/versions/{version.version}$"))
            _dismiss_mlflow_overlays(page)
            row = page.get_by_role("row").filter(has_text="gate_verdict")
            expect(row).to_have_count(1)
            expect(row).to_contain_text(verdict)
            if verdict == "promoted":
                expect(page.get_by_text("champion").first).to_be_visible()
            row.scroll_into_view_if_needed()

        with step("mlflow-version-source-run"):
            trained_by = client.get_run(version.run_id)  # the stage run that trained it
            assert trained_by.info.run_name.startswith("finetune-target["), trained_by.info
            source = page.locator(f"a[href*='/runs/{version.run_id}']").first
            expect(source).to_be_visible()
            source.click()
            page.wait_for_url(re.compile(rf"/runs/{version.run_id}"))
            _dismiss_mlflow_overlays(page)
            expect(page.get_by_test_id("runs-header")).to_have_text(trained_by.info.run_name)
    finally:
        context.close()

    total = time.monotonic() - t_start
    print(f"e2e: flow run {flow_run_id} completed in {run_seconds:.1f} s; verdict {verdict!r}")
    print(
        f"e2e: browser test {total:.1f} s; steps (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in step.seconds.items())
    )
    print("e2e: " + "\n     ".join(str(p) for p in step.saved))
    assert len(step.saved) == 14 and all(p.stat().st_size > 10_000 for p in step.saved), step.saved
