"""`next_step`: a rollout's next step on an online verdict (pure: a verdict and a rollout state in)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from ctcd.config import CtcdConfig
from ctcd.rollout import RolloutState
from tasks import online_gate
from tasks.online_gate import OnlineVerdict, next_step


@pytest.fixture(scope="module")
def cfg(default_config: CtcdConfig) -> CtcdConfig:
    online = default_config.gates.online.model_copy(update={"min_labelled_rows": 200, "max_regression": 0.01})
    gates = default_config.gates.model_copy(update={"online": online})
    serving = default_config.serving.model_copy(update={"canary_steps": [0.05, 0.25, 1.0]})
    return default_config.model_copy(update={"gates": gates, "serving": serving})


def verdict(action: str, rows: int, delta: float | None) -> OnlineVerdict:
    return OnlineVerdict(
        action=action,
        candidate_version="2",
        champion_version="1",
        labelled_rows=rows,
        metric="roc_auc",
        delta=delta,
        reason=f"{action} because",
    )


def canary(step: int, fraction: float) -> RolloutState:
    return RolloutState(
        candidate_version="2",
        champion_version="1",
        mode="canary",
        step=step,
        fraction=fraction,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


SHADOW = RolloutState(
    candidate_version="2", champion_version="1", mode="shadow", started_at=datetime(2026, 1, 1, tzinfo=UTC)
)


def test_the_default_step_threshold_is_a_quarter_of_the_verdicts(cfg):
    assert cfg.gates.online.step_min_labelled_rows is None
    assert online_gate.step_min_labelled_rows(cfg) == 50


@pytest.mark.parametrize("state", [SHADOW, canary(1, 0.25)])
def test_promote_and_reject_follow_the_gate(cfg, state):
    up = next_step(cfg, verdict("promote", 400, 0.05), state)
    assert (up.action, up.fraction, up.reason) == ("promote", 1.0, "promote because")
    down = next_step(cfg, verdict("reject", 400, -0.05), state)
    assert (down.action, down.fraction) == ("reject", 0.0)


def test_a_shadow_holds_while_the_gate_waits_whatever_the_evidence(cfg):
    step = next_step(cfg, verdict("wait", 150, 0.05), SHADOW)
    assert (step.action, step.mode, step.fraction) == ("hold", "shadow", 0.0)
    assert "the gate waits" in step.reason


def test_a_canary_without_labels_holds_at_its_share(cfg):
    step = next_step(cfg, verdict("wait", 0, None), canary(0, 0.05))
    assert (step.action, step.step, step.fraction) == ("hold", 0, 0.05)
    assert "0 of 50 labelled rows" in step.reason
    assert next_step(cfg, verdict("wait", 49, 0.1), canary(0, 0.05)).action == "hold"


def test_a_canary_steps_up_one_share_on_enough_labels_and_no_regression(cfg):
    step = next_step(cfg, verdict("wait", 50, -0.01), canary(0, 0.05))  # exactly -max_regression
    assert (step.action, step.step, step.fraction) == ("step_up", 1, 0.25)
    assert "50 labelled rows" in step.reason and step.summary().startswith("canary step_up to 25%")
    assert next_step(cfg, verdict("wait", 120, 0.02), canary(1, 0.25)).fraction == 1.0


def test_a_canary_with_a_point_regression_holds(cfg):
    step = next_step(cfg, verdict("wait", 150, -0.0101), canary(1, 0.25))
    assert (step.action, step.fraction) == ("hold", 0.25)
    assert "below -0.01" in step.reason


def test_a_canary_at_its_last_share_holds(cfg):
    step = next_step(cfg, verdict("wait", 150, 0.05), canary(2, 1.0))
    assert (step.action, step.step, step.fraction) == ("hold", 2, 1.0)
    assert "last of serving.canary_steps" in step.reason


def test_a_configured_step_threshold_counts_and_is_validated(cfg):
    online = cfg.gates.online.model_copy(update={"step_min_labelled_rows": 120})
    strict = cfg.model_copy(update={"gates": cfg.gates.model_copy(update={"online": online})})
    assert next_step(strict, verdict("wait", 119, 0.05), canary(0, 0.05)).action == "hold"
    assert next_step(strict, verdict("wait", 120, 0.05), canary(0, 0.05)).action == "step_up"
    data = cfg.model_dump(mode="python")
    data["gates"]["online"]["step_min_labelled_rows"] = 201
    with pytest.raises(ValidationError, match="step_min_labelled_rows"):
        CtcdConfig.model_validate(data)
