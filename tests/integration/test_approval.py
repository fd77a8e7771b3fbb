"""Manual approval against a real Prefect server (the session's `prefect server start`, tests/live_stack.py):
`ctcd train` with `gates.model.approval: manual` pauses its flow run once the candidate is blessed; the real
`ctcd approve` / `ctcd reject` (subprocesses) resume it, and the decision is recorded like a promotion.

`manual_project`, `start_training`, `wait_paused` and `ctcd` are shared with test_ui_browser_approval.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctcd import audit, registry
from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace
from tests.integration.test_training_flow import land_validated, write_config
from tests.live_stack import reporting_to
from tests.tasks.test_training import small_config

pytestmark = pytest.mark.integration

CTCD = str(Path(sys.executable).parent / "ctcd")


def manual_project(default_config: CtcdConfig, ws: Workspace, directory: Path, **gate: Any) -> CtcdConfig:
    """A small, fast config with `approval: manual` (plus `gate` overrides) and six labelled days landed."""
    small = small_config(default_config)
    model_gate = small.gates.model.model_copy(update={"approval": "manual", **gate})
    cfg = small.model_copy(update={"gates": small.gates.model_copy(update={"model": model_gate})})
    path = write_config(cfg, directory / "ctcd.yaml")
    land_validated(cfg, ws, range(1, 7))
    return load_config(path)


def _env(ws: Workspace, api: str) -> dict[str, str]:
    return {**os.environ, "CTCD_HOME": str(ws.root), "PREFECT_API_URL": api}


def ctcd(ws: Workspace, cfg: CtcdConfig, api: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line against the workspace and the Prefect server `api`."""
    return subprocess.run(
        [CTCD, *args, "--config", str(cfg.source)],
        env=_env(ws, api),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def start_training(ws: Workspace, cfg: CtcdConfig, api: str, log: Path) -> subprocess.Popen[str]:
    """`ctcd train` in the background, its output in `log`."""
    out = log.open("w", encoding="utf-8")
    return subprocess.Popen(
        [CTCD, "train", "--reason", "approval test", "--config", str(cfg.source)],
        env=_env(ws, api),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_paused(cfg: CtcdConfig, version: str, proc: subprocess.Popen[str], log: Path) -> Any:
    """The training's flow run once it is Paused waiting for `version` (fails if the training ends first)."""
    from ctcd.app.commands.approval import waiting_run

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        run = waiting_run(cfg.registered_model_name, version)
        if run is not None:
            return run
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            pytest.fail(f"the training ended (rc {proc.returncode}) without pausing:\n{tail}")
        time.sleep(1.0)
    proc.kill()
    pytest.fail(f"no paused run for version {version}:\n{log.read_text()[-3000:]}")


def finish(proc: subprocess.Popen[str], log: Path) -> str:
    """Wait for the background training; its output (it must have succeeded)."""
    rc = proc.wait(timeout=900)
    text = log.read_text(encoding="utf-8")
    assert rc == 0, text[-3000:]
    return text


def flow_run_state(run_id: Any) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state.type.value


@pytest.fixture(scope="module")
def prefect_api(shared_prefect) -> Iterator[str]:
    """The session's real Prefect server (tests/live_stack.py): every paused run here is resumed, and a
    paused run is found by its model's and version's tags and pause key."""
    with reporting_to(shared_prefect) as api:
        yield api


def _approval_entries(ws: Workspace) -> list[dict[str, Any]]:
    return [e for e in audit.alias_history(ws, None) if e.get("action") in ("approve", "reject")]


def test_ctcd_approve_resumes_the_paused_run_and_promotes(prefect_api, default_config, workspace, tmp_path):
    cfg = manual_project(default_config, workspace, tmp_path)
    log = tmp_path / "train.log"
    proc = start_training(workspace, cfg, prefect_api, log)
    run = wait_paused(cfg, "1", proc, log)
    assert flow_run_state(run.id) == "PAUSED"
    assert registry.Registry(cfg, workspace).champion() is None  # nothing promoted while it waits

    approve = ("approve", "1", "--reason", "slices look fine", "--actor", "alice")
    done = ctcd(workspace, cfg, prefect_api, *approve)
    assert done.returncode == 0, done.stderr
    assert "version 1 approved by alice: slices look fine" in done.stdout

    assert "champion: version 1 (was none)" in finish(proc, log)
    assert flow_run_state(run.id) == "COMPLETED"
    champ = registry.Registry(cfg, workspace).require_champion()
    assert champ.version == "1"
    run_tags = registry.Registry(cfg, workspace).client.get_run(champ.run_id).data.tags
    assert run_tags["ctcd.approval"] == "approved by alice: slices look fine"
    assert run_tags["ctcd.promotion_reason"].endswith("; approved by alice: slices look fine")
    [entry] = _approval_entries(workspace)
    assert (entry["version"], entry["actor"], entry["reason"]) == ("1", "alice", "slices look fine")
    assert entry["action"] == "approve"
    assert [e["version"] for e in audit.alias_history(workspace)] == ["1"]


def test_ctcd_reject_resumes_the_paused_run_without_promotion(
    prefect_api, default_config, workspace, tmp_path
):
    cfg = manual_project(default_config, workspace, tmp_path)
    log = tmp_path / "train.log"
    proc = start_training(workspace, cfg, prefect_api, log)
    run = wait_paused(cfg, "1", proc, log)

    no_reason = ctcd(workspace, cfg, prefect_api, "reject", "1")
    assert no_reason.returncode == 2  # --reason is required
    done = ctcd(workspace, cfg, prefect_api, "reject", "1", "--reason", "not this week", "--actor", "bob")
    assert done.returncode == 0, done.stderr

    assert "version 1 stays the challenger" in finish(proc, log)
    assert flow_run_state(run.id) == "COMPLETED"
    reg = registry.Registry(cfg, workspace)
    assert reg.champion() is None
    assert reg.by_alias(registry.CHALLENGER).version == "1"
    assert reg.version("1").tags["ctcd.rollout"] == "rejected by bob: not this week"
    assert (
        reg.client.get_run(reg.version("1").run_id).data.tags["ctcd.approval"]
        == "rejected by bob: not this week"
    )
    [entry] = _approval_entries(workspace)
    assert (entry["action"], entry["actor"], entry["reason"]) == ("reject", "bob", "not this week")
    assert audit.alias_history(workspace) == []  # the champion never moved

    again = ctcd(workspace, cfg, prefect_api, "approve", "1")
    assert again.returncode == 1
    assert len(again.stderr.strip().splitlines()) == 1
    assert "no paused training run waits for the approval of version 1" in again.stderr


def test_no_decision_within_the_time_out_is_a_rejection(prefect_api, default_config, workspace, tmp_path):
    from flows.training import training_flow

    cfg = manual_project(default_config, workspace, tmp_path, approval_timeout_s=1)
    state = training_flow(str(cfg.source), reason="time-out test", return_state=True)
    report = state.result()
    assert (report.version, report.promoted) == ("1", False)
    assert state.is_completed()
    reg = registry.Registry(cfg, workspace)
    assert reg.champion() is None
    tag = reg.version("1").tags["ctcd.rollout"]
    assert tag.startswith("rejected by ctcd-timeout: no decision within 1 s")
    [entry] = _approval_entries(workspace)
    assert (entry["action"], entry["timed_out"]) == ("reject", True)
