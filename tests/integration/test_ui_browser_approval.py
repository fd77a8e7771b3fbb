"""Manual approval in the Prefect UI, in a real browser: a training run waiting for `ctcd approve` shows as
Paused on its page of the Prefect UI (the session's real `prefect server start`, tests/live_stack.py;
headless Chromium through Playwright); `ctcd reject` then resumes it. The screenshot is kept in
`test-artifacts/ui/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace
from tests.integration.test_approval import ctcd, finish, manual_project, start_training, wait_paused
from tests.integration.test_ui_browser import CHROMIUM, _screenshot, browser  # noqa: F401 - fixture
from tests.live_stack import PrefectServer

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@dataclass(frozen=True)
class PrefectUi:
    url: str
    api: str
    ws: Workspace
    root: Path


@pytest.fixture(scope="module")
def prefect_ui(tmp_path_factory: pytest.TempPathFactory, shared_prefect: PrefectServer) -> PrefectUi:
    """The session's real `prefect server start` with its UI (tests/live_stack.py; no deployments, no
    workers: the training runs in `ctcd train`), and a fresh workspace for the training."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/ci-system-deps.sh does)")
    root = tmp_path_factory.mktemp("approval-ui")
    return PrefectUi(shared_prefect.url, shared_prefect.api, Workspace.open(root / "home"), root)


def test_a_run_waiting_for_approval_is_paused_in_the_prefect_ui(
    prefect_ui: PrefectUi,
    browser: object,  # noqa: F811 - the fixture
    default_config: CtcdConfig,
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ws = prefect_ui.ws
    cfg = manual_project(default_config, ws, prefect_ui.root)
    log = prefect_ui.root / "train.log"
    proc = start_training(ws, cfg, prefect_ui.api, log)
    try:
        with temporary_settings({PREFECT_API_URL: prefect_ui.api}):
            run = wait_paused(cfg, "1", proc, log)
        page = browser.new_page(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        try:
            url = f"{prefect_ui.url}/runs/flow-run/{run.id}"
            page.goto(url, wait_until="domcontentloaded", timeout=60_000)
            page.get_by_text(run.name).first.wait_for(state="visible", timeout=60_000)
            page.get_by_text("Paused", exact=True).first.wait_for(state="visible", timeout=60_000)
            # the UI offers the typed form's Resume (the approval from the browser)
            page.get_by_role("button", name="Resume").first.wait_for(state="visible", timeout=60_000)
            text = page.inner_text("body")
            assert "Can't connect to Server API" not in text
            assert run.name in text and "Paused" in text and "ctcd.version:1" in text
        finally:
            shot = _screenshot(page, "prefect-flow-run-paused-for-approval")
            page.close()
        assert shot.stat().st_size > 10_000
    finally:
        if proc.poll() is None:
            done = ctcd(ws, cfg, prefect_ui.api, "reject", "1", "--reason", "browser test over")
            assert done.returncode == 0, done.stderr
    assert "version 1 stays the challenger" in finish(proc, log)
