"""The rollout record and the canary's row routing (`ctcd.rollout`), and the rollout config keys."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from ctcd.config import CtcdConfig
from ctcd.errors import ConfigError
from ctcd.rollout import RolloutState, clear_rollout, read_rollout, routes_to_candidate, write_rollout
from ctcd.workspace import Workspace


def test_rollout_state_round_trips_through_the_workspace(workspace: Workspace) -> None:
    assert read_rollout(workspace) is None
    state = RolloutState(
        candidate_version="5",
        champion_version="4",
        mode="canary",
        step=1,
        fraction=0.25,
        started_at=datetime(2026, 1, 8, 12, tzinfo=UTC),
        started_batch="2026-01-08",
    )
    write_rollout(workspace, state)
    assert (workspace.run / "rollout.json").exists()
    assert read_rollout(workspace) == state
    clear_rollout(workspace)
    assert read_rollout(workspace) is None
    clear_rollout(workspace)  # nothing to clear: no error


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.5])
def test_routing_sends_about_the_fraction_of_ids_to_the_candidate(fraction: float) -> None:
    routed = [routes_to_candidate(f"row-{i}", fraction) for i in range(20_000)]
    assert abs(sum(routed) / len(routed) - fraction) < 0.01


def test_routing_is_monotone_in_the_fraction_and_covers_the_ends() -> None:
    ids = [f"row-{i}" for i in range(2000)] + list(range(2000))
    assert not any(routes_to_candidate(i, 0.0) for i in ids)
    assert all(routes_to_candidate(i, 1.0) for i in ids)
    # A row the candidate answers at one canary step stays with it at every later step.
    small = {i for i in ids if routes_to_candidate(i, 0.05)}
    assert small and small <= {i for i in ids if routes_to_candidate(i, 0.25)}


def test_routing_is_the_same_in_another_process() -> None:
    ids = [f"row-{i}" for i in range(200)]
    here = [routes_to_candidate(i, 0.3) for i in ids]
    code = (
        "from ctcd.rollout import routes_to_candidate\n"
        f"print(''.join('1' if routes_to_candidate(i, 0.3) else '0' for i in {ids!r}))"
    )
    # A different hash seed: Python's own str hash would differ between the processes.
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "".join("1" if r else "0" for r in here)


def test_rollout_config_defaults_keep_direct_promotion(default_config: CtcdConfig) -> None:
    assert default_config.serving.rollout == "direct"
    assert default_config.serving.canary_steps == [0.05, 0.25, 1.0]


@pytest.mark.parametrize("steps", [[0.5, 0.25], [0.0, 1.0], [0.5, 1.5], []])
def test_canary_steps_must_be_increasing_shares(default_config: CtcdConfig, steps: list[float]) -> None:
    raw = default_config.model_dump(mode="json")
    raw["serving"] |= {"rollout": "canary", "canary_steps": steps}
    with pytest.raises((ConfigError, ValueError)):
        CtcdConfig.model_validate(raw)
