"""The UIs in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright) finds the
deployments in the Prefect UI and the `champion` alias in the MLflow UI. Screenshots are kept in
`test-artifacts/ui/`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctcd.app import deployments, stack
from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace
from tests.integration.test_prefect_stack import make_standin_project, write_config

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


@pytest.fixture(scope="module")
def uis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Uis]:
    """The Prefect server with the deployments, and the MLflow server with a champion."""
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
        model = _register_champion(deployments.mlflow_url(cfg), cfg.registered_model_name)
        yield Uis(cfg, deployments.prefect_url(cfg), deployments.mlflow_url(cfg), model)
    finally:
        stack.down(ws, grace=10)


def _register_champion(mlflow_url: str, name: str) -> str:
    """Register a version through the MLflow server and give it the champion alias."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    experiment = client.create_experiment("ui-test")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "roc_auc", 0.91)
    client.set_terminated(run.info.run_id)
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return name


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
