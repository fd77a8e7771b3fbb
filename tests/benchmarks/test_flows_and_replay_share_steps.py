"""The flows and the replay run the same CT steps (tasks/ct_steps.py): for every training of a replayed
drift scenario, the training flow's own task bodies (`search`, `evaluate`, `gate`) on the same window reach
the same verdict; for every monitoring run, the monitoring flow's `compute-signals` task on the same loaded
inputs fires the same signals, and the policy step the flow calls decides the same action.

No Prefect server or MLflow: the tasks' `.fn` bodies are called directly (what the flows run inside them).
A tiny replay: 10 batches x 600 rows, concept drift on batch 6, cheap search.
"""

from __future__ import annotations

import pandas as pd
import pytest

import flows.monitoring as monitoring_flow
import flows.training as training_flow
from ctcd.app.backtest import apply_overrides
from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.ct_inputs import with_batches
from ctcd.registry import ModelRef
from tasks import ct_steps, training
from tasks.model import features_frame, positive_proba
from tasks.monitoring import MonitoringInputs
from tasks.replay import PolicyRun, replay
from tasks.replay_history import Scenario, agrawal_scenario
from tasks.replay_registry import FitCache, training_window

WARMUP = 3
DRIFT = 6
DEVICE = training.DeviceChoice("cpu", "cpu", "test")
CHEAP = ["model.search.budget=1", "model.params.n_estimators=20", "gates.model.bootstrap_samples=30"]


@pytest.fixture(scope="module")
def scenario(default_config: CtcdConfig) -> Scenario:
    assert default_config.stream is not None
    cfg = apply_overrides(default_config, CHEAP)
    events = [ScenarioEvent(day=DRIFT, kind="concept_drift", function=2)]
    cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"events": events})})
    return agrawal_scenario(cfg, days=10, rows_per_day=600)


@pytest.fixture(scope="module")
def run(scenario: Scenario) -> PolicyRun:
    return replay(scenario, "ctcd", WARMUP, FitCache(), DEVICE)


def test_the_flows_are_wired_to_the_shared_steps() -> None:
    assert monitoring_flow.ct_steps is ct_steps and training_flow.ct_steps is ct_steps


def test_the_training_flow_steps_reach_the_replays_gate_verdicts(scenario: Scenario, run: PolicyRun) -> None:
    cfg = scenario.cfg
    assert len(run.trainings) >= 2, "the drift should have caused a retraining"
    for t in run.trainings:
        _, split = training_window(scenario, t.day, t.window_start)
        fitted = training_flow.run_search.fn(cfg, split, DEVICE)
        evaluated = training_flow.evaluate.fn(fitted, split, cfg)
        champion = None
        if t.reference_kind == "champion":
            champion = max(
                (c for c in run.champions.values() if c.trained_on < t.day), key=lambda c: c.trained_on
            )
        proba = (
            None
            if champion is None
            else positive_proba(champion.model, features_frame(split.test, cfg.dataset))
        )
        ref = ModelRef(cfg.registered_model_name, t.version, "run")
        # what the flow derives from its drift trigger and window start
        metric = ct_steps.gate_metric(cfg, t.triggering)
        competes = ct_steps.competes_with_baseline(t.window_start)
        decision = training_flow.gate.fn(
            cfg, split, evaluated, proba, ref, champion.version if champion else None, metric, competes
        )
        assert t.decision is not None
        assert (decision.passed, decision.chosen, decision.reference_kind) == (
            t.decision.passed,
            t.decision.chosen,
            t.decision.reference_kind,
        )
        assert decision.bootstrap.candidate == pytest.approx(t.decision.bootstrap.candidate)
        assert decision.bootstrap.reference == pytest.approx(t.decision.bootstrap.reference)
        assert fitted.cost.rows == t.cost.rows


def test_the_monitoring_flow_steps_fire_and_decide_as_the_replay(scenario: Scenario, run: PolicyRun) -> None:
    cfg, timeline = scenario.cfg, scenario.timeline
    delay = cfg.dataset.label_delay_batches
    judged = [m for m in run.monitoring if m.state is not None]
    assert judged and any(m.action == "retrain" for m in judged)
    for m in judged:
        batch = scenario.days[m.day - 1].batch_id
        window = ct_steps.windows(cfg, timeline, batch)
        served = [
            log
            for d, log in run.logs.items()
            if d <= m.day and scenario.days[d - 1].batch_id in window.lookback
        ]
        champion = max(
            (c for c in run.champions.values() if c.trained_on < m.day), key=lambda c: c.trained_on
        )
        labels = pd.concat([d.labels for d in scenario.days[: m.day - delay]], ignore_index=True)
        inputs = MonitoringInputs(
            timeline=timeline,
            windows=window,
            champion_version=champion.version,
            reference=champion.reference,
            baseline=champion.baseline,
            predictions=with_batches(pd.concat(served, ignore_index=True), timeline),
            labels=labels,
        )
        signals, labelled = monitoring_flow.signals_of.fn(cfg, inputs)
        assert signals.fired == m.fired, m
        decision, _ = ct_steps.policy_decision(cfg, signals, labelled, m.state, batch, timeline)
        assert (decision.action, decision.window_start) == (m.action, m.window_start), m
