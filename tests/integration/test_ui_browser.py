"""The UIs in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright) finds the
deployments in the Prefect UI and the `champion` alias in the MLflow UI, and, after a real training flow
run against both servers, the model version's one-line description in the MLflow UI and the run's outcome
line in its Prefect logs. Screenshots are kept in `test-artifacts/ui/`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctcd import registry
from ctcd.app import deployments, stack
from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace
from tests.integration.test_prefect_stack import make_standin_project, write_config
from tests.integration.test_training_flow import land_validated
from tests.integration.test_training_flow import write_config as save_config
from tests.tasks.test_training import small_config

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = Path("/usr/bin/chromium")
DEPLOYMENT_NAMES = ("ingest-validate", "drift-watch", "retrain", "deliver")


@dataclass(frozen=True)
class Uis:
    cfg: CtcdConfig
    prefect: str
    mlflow: str
    model: str
    version: registry.ModelRef
    flow_run_id: str
    outcome: str


@pytest.fixture(scope="module")
def uis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uis]:
    """The Prefect server with the deployments, and the MLflow server with a champion trained by the training
    flow, run in this process against both servers."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/ci-system-deps.sh does)")
    root = tmp_path_factory.mktemp("ui")
    cfg = write_config(root, {"project_dir": str(make_standin_project(root / "project"))})
    ws = Workspace.open(root / "home")
    deadline = time.monotonic() + 300
    try:
        prefect, mlflow = stack.start_prefect_server(cfg, ws), stack.start_mlflow(cfg, ws)
        stack.wait_prefect(cfg, prefect, deadline)
        api = deployments.prefect_api_url(cfg)
        deployments.ensure_work_pools(api, [cfg.orchestration.cpu_pool, cfg.orchestration.gpu_pool])
        deployments.deploy(cfg, ws, api)
        stack.wait_mlflow(cfg, mlflow, deadline)
        trained, ref, flow_run_id, outcome = _train_champion(cfg, ws, root, api)
        yield Uis(
            cfg,
            deployments.prefect_url(cfg),
            deployments.mlflow_url(cfg),
            trained.registered_model_name,
            ref,
            flow_run_id,
            outcome,
        )
    finally:
        stack.down(ws, grace=10)


def _train_champion(
    cfg: CtcdConfig, ws: Workspace, root: Path, api: str
) -> tuple[CtcdConfig, registry.ModelRef, str, str]:
    """Run the training flow on a few stream days against the stack's MLflow and Prefect servers; return
    its config, the champion it registered, the flow run's id and the run's outcome line."""
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from flows.training import training_flow

    small = small_config(cfg)
    trained = small.model_copy(
        update={"tracking": small.tracking.model_copy(update={"tracking_uri": deployments.mlflow_url(cfg)})}
    )
    path = str(save_config(trained, root / "training.yaml"))
    land_validated(trained, ws, range(1, 5))
    with (
        pytest.MonkeyPatch.context() as env,
        temporary_settings({PREFECT_API_URL: api, PREFECT_LOCAL_STORAGE_PATH: root / "prefect-results"}),
    ):
        env.setenv("CTCD_HOME", str(ws.root))
        state = training_flow(path, reason="ui check", return_state=True)
        report = state.result()
        APILogWorker.drain_all()  # the run's logs reach the server in the background: send what is queued
    assert report.promoted, report.summary()
    ref = registry.Registry(trained, ws).require_champion()
    return trained, ref, str(state.state_details.flow_run_id), report.summary()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/ci-system-deps.sh does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
        )
        yield chromium
        chromium.close()


def _screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def test_prefect_ui_lists_the_deployments(uis: Uis, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    try:
        page.goto(f"{uis.prefect}/deployments", wait_until="domcontentloaded", timeout=60_000)
        for name in DEPLOYMENT_NAMES:
            page.get_by_text(name, exact=True).first.wait_for(state="visible", timeout=60_000)
        text = page.inner_text("body")
        assert "Can't connect to Server API" not in text
        for name in DEPLOYMENT_NAMES:
            assert name in text
    finally:
        shot = _screenshot(page, "prefect-deployments")
        page.close()
    assert shot.stat().st_size > 10_000


def test_mlflow_ui_shows_the_champion_alias(uis: Uis, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    try:
        page.goto(f"{uis.mlflow}/#/models/{uis.model}", wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("champion").first.wait_for(state="visible", timeout=60_000)
        text = page.inner_text("body")
        assert uis.model in text
        assert "champion" in text
    finally:
        shot = _screenshot(page, "mlflow-registered-model")
        page.close()
    assert shot.stat().st_size > 10_000


def test_mlflow_ui_shows_the_version_s_one_line_description(uis: Uis, browser: object) -> None:
    """The registered model's versions table and the version's page show the line ctcd wrote: why the
    version was trained, the gate's verdict and delta, and the rollout outcome."""
    line = uis.version.description
    assert line.startswith("xgboost trained on ") and "(ui check); gate passed: " in line, line
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    try:
        page.goto(f"{uis.mlflow}/#/models/{uis.model}", wait_until="domcontentloaded", timeout=60_000)
        page.get_by_text("xgboost trained on").first.wait_for(state="visible", timeout=60_000)
        _screenshot(page, "mlflow-versions-table")
        page.goto(
            f"{uis.mlflow}/#/models/{uis.model}/versions/{uis.version.version}",
            wait_until="domcontentloaded",
            timeout=60_000,
        )
        page.get_by_text("gate passed: ").first.wait_for(state="visible", timeout=60_000)
        text = page.inner_text("body")
        assert line in " ".join(text.split())
        assert "ctcd.gate" in text and "ctcd.git_commit" not in text, "the version shows a handful of tags"
    finally:
        shot = _screenshot(page, "mlflow-model-version")
        page.close()
    assert shot.stat().st_size > 10_000


def test_prefect_ui_shows_the_training_run_s_outcome_line_in_its_logs(uis: Uis, browser: object) -> None:
    """The flow run's Logs tab says what happened: the version, the gate's verdict and the promotion."""
    assert uis.outcome.startswith(f"training v{uis.version.version} (ui check): gate PASSED vs baseline")
    page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
    try:
        page.goto(
            f"{uis.prefect}/runs/flow-run/{uis.flow_run_id}", wait_until="domcontentloaded", timeout=60_000
        )
        line = page.get_by_text("gate PASSED vs baseline").first
        line.wait_for(state="visible", timeout=90_000)
        line.scroll_into_view_if_needed()
        text = " ".join(page.inner_text("body").split())
        assert "Can't connect to Server API" not in text
        assert f"training v{uis.version.version} (ui check): gate PASSED vs baseline" in text
        assert f"promoted: champion v{uis.version.version}" in text
    finally:
        shot = _screenshot(page, "prefect-flow-run-logs")
        page.close()
    assert shot.stat().st_size > 10_000
