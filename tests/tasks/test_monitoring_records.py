"""Monitoring's records and renderings (`tasks/monitoring.py`) and the policy's decision log
(`ctcd/policy_state.py`): the drift event's payload, the log's round trip by batch, the registry's answer on
an episode's retraining, and the verdict as rows, markdown and one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from ctcd import events, policy_state
from ctcd.cadence import Timeline
from ctcd.workspace import Workspace
from tasks import monitoring
from tasks.drift import CovariateShift, MonitoringSignals, Performance, PredictionDrift, PriorShift
from tasks.monitoring import MonitoringOutcome
from tasks.policy import Episode, PolicyState, RetrainDecision


def _signals(performance_fired: bool) -> MonitoringSignals:
    return MonitoringSignals(
        window_start="2026-03-03",
        window_end="2026-03-03",
        reference_rows=500,
        current_rows=2000,
        covariate_shift=CovariateShift(columns=[], drifted=[], share=0.0, threshold=0.5, fired=False),
        prediction_drift=PredictionDrift(evaluated=True, method="psi", score=0.05, threshold=0.2),
        prior_shift=PriorShift(evaluated=False, labelled_rows=12, threshold=0.1),
        performance=Performance(
            evaluated=True,
            labelled_rows=1500,
            metrics={"accuracy": 0.71},
            baseline={"accuracy": 0.93},
            accuracy_drop=0.22,
            threshold=0.05,
            fired=performance_fired,
            onset="2026-03-02" if performance_fired else None,
        ),
    )


def _outcome(tmp_path: Path) -> MonitoringOutcome:
    decision = RetrainDecision(
        action="retrain",
        reason="performance fired",
        batch="2026-03-03",
        fired=["performance"],
        triggering=["performance"],
        episode_started="2026-03-03",
        window_start="2026-03-02",
    )
    return MonitoringOutcome(
        batch="2026-03-03",
        model="bank",
        champion_version="4",
        signals=_signals(True),
        decision=decision,
        report=str(tmp_path / "drift-report.html"),
    )


def test_the_drift_payload_carries_the_training_parameters_and_the_evidence(tmp_path: Path):
    outcome = _outcome(tmp_path)
    payload = monitoring.drift_payload(outcome)
    assert set(events.TRIGGER_PARAMETERS) <= set(payload)
    assert payload["reason"] == "drift: performance fired" and payload["window_start"] == "2026-03-02"
    trigger = payload["trigger"]
    assert trigger["event"] == "drift" and trigger["batch"] == "2026-03-03"
    assert trigger["signals"] == ["performance"] and trigger["performance_drop"] == 0.22
    assert trigger["report"] == (tmp_path / "drift-report.html").as_uri()
    assert "event" not in payload and payload["champion_version"] == "4"
    json.dumps(payload)  # the event's payload is JSON


def test_the_decision_log_answers_with_the_state_of_the_latest_run_up_to_a_batch(workspace: Workspace):
    timeline = Timeline()
    assert (
        monitoring.policy_state(policy_state.read_state(workspace, timeline, "2026-03-05")) == PolicyState()
    )
    at = datetime(2026, 3, 3, 9, tzinfo=UTC)
    for batch, last_retrain in (("2026-03-01", None), ("2026-03-03", "2026-03-03")):
        outcome = MonitoringOutcome.model_validate(
            {**_outcome(Path("/tmp")).model_dump(), "batch": batch, "report": None}
        )
        entry = monitoring.decision_entry(outcome, PolicyState(last_retrain=last_retrain), at)
        policy_state.append_decision(workspace, entry)

    def state_at(batch: str) -> PolicyState:
        return monitoring.policy_state(policy_state.read_state(workspace, timeline, batch))

    assert state_at("2026-03-02") == PolicyState()  # a replay restarting before the second run
    assert state_at("2026-03-05").last_retrain == "2026-03-03"
    (first, second) = [
        json.loads(line) for line in policy_state.decision_log(workspace).read_text().splitlines()
    ]
    assert (first["batch"], second["action"], second["at"]) == (
        "2026-03-01",
        "retrain",
        "2026-03-03T09:00:00+00:00",
    )


def test_the_retraining_outcome_is_read_only_while_it_is_unknown():
    open_episode = PolicyState(
        episode=Episode(started="2026-03-03", signals=["performance"], retrained_on="2026-03-03")
    )
    tags = {"ctcd.reason": "drift: performance fired", "ctcd.trigger": "2026-03-03"}
    versions = [("5", tags), ("4", {"ctcd.reason": "initial"})]
    promoted = [{"model": "bank", "version": "5", "action": "promote"}]
    rolled_back = [{"model": "bank", "version": "5", "action": "rollback"}]

    assert monitoring.awaits_retrain_outcome(open_episode)
    assert monitoring.retrain_outcome(open_episode, "bank", promoted, versions) is True
    assert monitoring.retrain_outcome(open_episode, "other-model", promoted, versions) is None
    assert monitoring.retrain_outcome(open_episode, "bank", rolled_back, versions) is None
    rejected = [("5", {**tags, "ctcd.gate": "rejected"})]
    assert monitoring.retrain_outcome(open_episode, "bank", [], rejected) is False

    known = open_episode.model_copy(
        update={"episode": open_episode.episode.model_copy(update={"promoted": True})}
    )
    assert not monitoring.awaits_retrain_outcome(known)
    assert monitoring.retrain_outcome(known, "bank", [], rejected) is None
    assert monitoring.retrain_outcome(PolicyState(), "bank", promoted, versions) is None


def test_the_verdict_reads_as_rows_markdown_and_one_line(tmp_path: Path):
    outcome = _outcome(tmp_path).model_copy(update={"event_id": "evt-1"})
    rows = monitoring.verdict_rows(outcome.signals)
    assert [(name, status) for name, status, _ in rows] == [
        ("covariate shift", "not evaluated"),
        ("prediction drift", "ok"),
        ("prior shift", "not evaluated"),
        ("performance", "FIRED"),
    ]
    assert rows[3][2].startswith(
        "accuracy 0.710 vs 0.930 at promotion (1500 labelled rows), dropped since 2026-03-02"
    )
    markdown = monitoring.verdict_markdown(outcome)
    assert (
        "| performance | FIRED |" in markdown
        and "`evt-1`" in markdown
        and "Retrain on data from 2026-03-02" in markdown
    )
    assert outcome.summary() == (
        "monitoring batch 2026-03-03 (bank v4): drift: performance (accuracy 0.710); "
        "policy: retrain (performance fired)"
    )
    payload = outcome.as_payload()
    assert "report" not in payload and payload["event_id"] == "evt-1"
    assert monitoring.mlflow_tags(outcome)["ctcd.monitoring.fired"] == "performance"
    assert monitoring.artifact_key("Bank Marketing/v2") == "bank-marketing-v2"
