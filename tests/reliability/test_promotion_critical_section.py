"""Guarantee 6: two CT runs (a schedule and a drift trigger) cannot both promote.

Two guards: the `retrain` deployment runs one flow run at a time (Prefect concurrency limit 1, queued),
and, for runs that bypass it (`ctcd run`, `ctcd train`, the pipeline flow, a second machine's worker on
the same workspace), promotion is a compare-and-set under the workspace's promotion lock: a run promotes
only if the champion is still the one its gate compared against.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
import yaml

from ctcd import audit, registry
from ctcd.config import load_config
from ctcd.workspace import Workspace
from tests.conftest import REPO
from tests.integration.test_serving import register_version, write_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


TRAINING_ENTRYPOINTS = {"flows/training.py:training_flow", "flows/pipeline.py:ctcd_pipeline"}


def test_one_deployment_can_train_and_it_runs_one_flow_run_at_a_time():
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text(encoding="utf-8"))
    training = [d for d in spec["deployments"] if d["entrypoint"] in TRAINING_ENTRYPOINTS]
    # Two deployments with a limit of 1 each could still train at once.
    assert [d["name"] for d in training] == ["retrain"]
    (retrain,) = training
    assert retrain["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    # The schedule and the drift trigger both start this deployment, so both are under the limit.
    assert retrain["schedules"] and any(t["type"] == "event" for t in retrain["triggers"])


def _promote_after(barrier, config: str, home: str, version: str, expected: str, results) -> None:
    """One CT run's last step: promote `version` if the champion is still `expected` (another process)."""
    from ctcd import registry as reg
    from ctcd.config import load_config as load
    from ctcd.errors import WorkFailed
    from ctcd.workspace import Workspace as Ws

    cfg, ws = load(config), Ws.open(home)
    ref = reg.Registry(cfg, ws).version(version)
    barrier.wait(timeout=120)
    try:
        reg.Registry(cfg, ws).promote(ref, f"run of version {version}", expected_champion=expected)
        results.put((version, "promoted"))
    except WorkFailed as exc:
        results.put((version, f"refused: {exc}"))
    except Exception as exc:  # reported, so the assertion names it
        results.put((version, f"error: {type(exc).__name__}: {exc}"))


def test_two_concurrent_promotions_against_the_same_champion_cannot_both_happen(tmp_path: Path):
    config = write_project(tmp_path, port=3000)
    cfg, ws = load_config(config), Workspace.open(tmp_path / "home")
    first = register_version(cfg, ws, seed=1)
    registry.Registry(cfg, ws).promote(first, reason="first champion")
    candidates = [register_version(cfg, ws, seed=s).version for s in (2, 3)]

    spawn = multiprocessing.get_context("spawn")
    with spawn.Manager() as manager:
        barrier, results = manager.Barrier(2), manager.Queue()
        runs = [
            spawn.Process(
                target=_promote_after,
                args=(barrier, str(config), str(ws.root), v, first.version, results),
            )
            for v in candidates
        ]
        for run in runs:
            run.start()
        for run in runs:
            run.join(timeout=300)
        outcomes = dict(results.get(timeout=5) for _ in runs)

    promoted = [v for v, outcome in outcomes.items() if outcome == "promoted"]
    assert len(promoted) == 1, outcomes
    (loser,) = set(candidates) - set(promoted)
    assert outcomes[loser].startswith("refused:") and "champion" in outcomes[loser], outcomes
    assert registry.Registry(cfg, ws).require_champion().version == promoted[0]
    moves = [e for e in audit.alias_history(ws) if e.get("action") == "promote"]
    assert [e["version"] for e in moves] == [first.version, promoted[0]]
    assert moves[-1]["previous"] == first.version
