"""The retraining policy: thresholds in, one decision out; cool-down, deduplication, label minimum, window."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ctcd.config import DriftPolicyConfig
from ctcd.drift_report import ColumnDrift
from tasks.drift import CovariateShift, MonitoringSignals, Performance, PredictionDrift, PriorShift
from tasks.policy import Episode, PolicyState, decide

DAY1 = date(2026, 1, 1)
POLICY = DriftPolicyConfig(cooldown_days=2, min_labelled_rows=500)
ENOUGH = 2000


def day(n: int) -> date:
    return DAY1 + timedelta(days=n - 1)


def signals(*fired: str, onset: date | None = None) -> MonitoringSignals:
    """A window in which exactly the named signals fired."""
    drifted = ["salary"] if "covariate_shift" in fired else []
    return MonitoringSignals(
        window_start=DAY1,
        window_end=DAY1,
        reference_rows=5000,
        current_rows=2000,
        covariate_shift=CovariateShift(
            columns=[
                ColumnDrift(
                    column=c, kind="numerical", method="wasserstein", threshold=0.1, score=s, drifted=s > 0.1
                )
                for c, s in (("salary", 0.8 if drifted else 0.01), ("age", 0.02))
            ],
            drifted=drifted,
            share=0.5 if drifted else 0.0,
            threshold=0.3,
            fired=bool(drifted),
        ),
        prediction_drift=PredictionDrift(
            evaluated=True, method="wasserstein", score=0.3, threshold=0.1, fired="prediction_drift" in fired
        ),
        prior_shift=PriorShift(
            evaluated=True,
            labelled_rows=2000,
            reference_rate=0.68,
            current_rate=0.5,
            change=-0.18,
            threshold=0.1,
            fired="prior_shift" in fired,
        ),
        performance=Performance(
            evaluated=True,
            labelled_rows=2000,
            metrics={"accuracy": 0.5},
            baseline={"accuracy": 0.99},
            accuracy_drop=0.49,
            threshold=0.05,
            fired="performance" in fired,
            onset=onset,
        ),
    )


def run(days: dict[int, tuple[str, ...]], last: int, policy: DriftPolicyConfig = POLICY, onset=None):
    """Replay days 1..last through the policy, carrying the state; return the decisions."""
    state, decisions = PolicyState(), []
    for n in range(1, last + 1):
        decision, state = decide(signals(*days.get(n, ()), onset=onset), state, policy, day(n), ENOUGH, 7)
        decisions.append(decision)
    return decisions, state


def test_nothing_fired_is_none_and_closes_the_episode():
    open_episode = PolicyState(episode=Episode(started=DAY1, signals=["prior_shift"], retrained_on=DAY1))
    decision, state = decide(signals(), open_episode, POLICY, day(5), ENOUGH, 7)
    assert decision.action == "none" and decision.reason == "no drift signal fired"
    assert state.episode is None and state.last_retrain is None


def test_signals_outside_retrain_on_only_alert():
    decision, state = decide(signals("prediction_drift"), PolicyState(), POLICY, DAY1, ENOUGH, 7)
    assert decision.action == "alert"
    assert "prediction_drift" in decision.reason
    assert state.last_retrain is None


def test_first_drift_retrains_with_the_reason():
    decision, state = decide(signals("covariate_shift"), PolicyState(), POLICY, DAY1, ENOUGH, 7)
    assert decision.action == "retrain"
    assert decision.reason == "1 of 2 features drifted (salary)"
    assert decision.window_start is None
    assert state.last_retrain == DAY1
    assert state.episode == Episode(started=DAY1, signals=["covariate_shift"], retrained_on=DAY1)


def test_one_episode_starts_one_retraining():
    decisions, _ = run({n: ("covariate_shift",) for n in range(3, 10)}, last=10)
    actions = [d.action for d in decisions]
    assert actions == [
        "none",
        "none",
        "retrain",
        "alert",
        "alert",
        "alert",
        "alert",
        "alert",
        "alert",
        "none",
    ]
    assert "already started a retraining on 2026-01-03" in decisions[5].reason


def test_a_new_episode_after_a_quiet_day_retrains_again():
    decisions, _ = run({3: ("covariate_shift",), 4: ("covariate_shift",), 6: ("covariate_shift",)}, last=6)
    assert [d.action for d in decisions] == ["none", "none", "retrain", "alert", "none", "retrain"]


def test_a_new_kind_of_signal_escalates_the_episode():
    decisions, _ = run(
        {1: ("covariate_shift",), 2: ("covariate_shift",), 4: ("covariate_shift", "performance")}, 4
    )
    assert [d.action for d in decisions] == ["retrain", "alert", "none", "retrain"]
    # Days 3 was quiet, so this is simply a new episode; the same within one episode:
    decisions, _ = run(
        {n: ("covariate_shift",) if n < 4 else ("covariate_shift", "performance") for n in range(1, 6)}, 5
    )
    assert [d.action for d in decisions] == ["retrain", "alert", "alert", "retrain", "alert"]


def test_cool_down_delays_the_next_episode_until_it_ends():
    decisions, state = run({1: ("prior_shift",), 3: ("performance",), 4: ("performance",)}, last=4)
    # cool-down 2 days after day 1: day 3 is the first day out of it
    assert [d.action for d in decisions] == ["retrain", "none", "retrain", "alert"]
    decisions, state = run({1: ("prior_shift",), 2: ("performance",), 3: ("performance",)}, last=3)
    assert [d.action for d in decisions] == ["retrain", "alert", "retrain"]
    assert decisions[1].cooldown_until == day(3)
    assert "cool-down" in decisions[1].reason
    assert state.episode.started == day(2), "the pending episode retrains once the cool-down ends"


def test_zero_cool_down_still_deduplicates():
    policy = POLICY.model_copy(update={"cooldown_days": 0})
    decisions, _ = run({n: ("prior_shift",) for n in range(1, 5)}, last=4, policy=policy)
    assert [d.action for d in decisions] == ["retrain", "alert", "alert", "alert"]


def test_too_few_new_labels_waits():
    decision, state = decide(signals("performance"), PolicyState(), POLICY, DAY1, 120, 7)
    assert decision.action == "alert"
    assert "waiting for labels: 120 labelled rows" in decision.reason
    assert state.episode is not None and state.episode.retrained_on is None
    decision, _ = decide(signals("performance"), state, POLICY, day(2), 900, 7)
    assert decision.action == "retrain"


def test_concept_drift_restarts_the_window_at_the_onset():
    onset = day(20)
    decision, state = decide(signals("performance", onset=onset), PolicyState(), POLICY, day(21), ENOUGH, 7)
    assert decision.action == "retrain"
    assert decision.window_start == onset
    assert "training window restarts at 2026-01-20" in decision.reason
    # A later retraining inside the training window does not slide back over the stale data ...
    decision, state = decide(
        signals("prior_shift"), state.model_copy(update={"episode": None}), POLICY, day(24), ENOUGH, 7
    )
    assert decision.action == "retrain" and decision.window_start == onset
    # ... and once the onset is older than the training window, the window slides normally again.
    decision, _ = decide(
        signals("prior_shift"), state.model_copy(update={"episode": None}), POLICY, day(30), ENOUGH, 7
    )
    assert decision.action == "retrain" and decision.window_start is None


@pytest.mark.parametrize("name", ["covariate_shift", "prior_shift", "performance"])
def test_retrain_on_decides_which_signals_retrain(name):
    policy = POLICY.model_copy(update={"retrain_on": [name]})
    for other in {"covariate_shift", "prior_shift", "performance"} - {name}:
        assert decide(signals(other), PolicyState(), policy, DAY1, ENOUGH, 7)[0].action == "alert"
    assert decide(signals(name), PolicyState(), policy, DAY1, ENOUGH, 7)[0].action == "retrain"


def test_the_default_stream_scenario_retrains_once_per_episode():
    # covariate shift days 8-14, prior shift 15-19, concept drift from day 20 (seen on day 21 with the labels,
    # fixed by the retraining on day 21, so performance is quiet again from day 22).
    days = {n: ("covariate_shift",) for n in range(8, 15)}
    days |= {n: ("prior_shift",) for n in range(16, 20)}
    days |= {21: ("performance", "prior_shift")}
    decisions, _ = run(days, last=30, onset=day(20))
    retrains = [(d.today.day, d.window_start) for d in decisions if d.action == "retrain"]
    assert retrains == [(8, None), (16, None), (21, day(20))]
