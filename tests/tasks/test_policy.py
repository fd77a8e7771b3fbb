"""The retraining policy: thresholds in, one decision out; cool-down, deduplication, label minimum, window."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from ctcd.config import DriftPolicyConfig
from ctcd.drift_report import ColumnDrift
from tasks.drift import CovariateShift, MonitoringSignals, Performance, PredictionDrift, PriorShift
from tasks.policy import Episode, PolicyState, decide, record_outcome, training_outcome

START = date(2026, 1, 1)
POLICY = DriftPolicyConfig(cooldown_batches=2, min_labelled_rows=500)
ENOUGH = 2000


def day(n: int) -> str:
    """The id of the daily batch of day n."""
    return (START + timedelta(days=n - 1)).isoformat()


def num(batch: str) -> int:
    return date.fromisoformat(batch).day


DAY1 = day(1)


def signals(*fired: str, onset: str | None = None) -> MonitoringSignals:
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


def run(
    days: dict[int, tuple[str, ...]],
    last: int,
    policy: DriftPolicyConfig = POLICY,
    onset=None,
    promoted: bool | None = None,
    onsets: dict[int, str] | None = None,
):
    """Replay days 1..last through the policy, carrying the state; return the decisions.

    `promoted`: the outcome of every retraining, fed back as the monitoring flow does (None: not known);
    `onsets`: a per-day onset estimate overriding `onset`.
    """
    state, decisions = PolicyState(), []
    for n in range(1, last + 1):
        seen = (onsets or {}).get(n, onset)
        decision, state = decide(signals(*days.get(n, ()), onset=seen), state, policy, day(n), ENOUGH, 7)
        if decision.action == "retrain":
            state = record_outcome(state, promoted)
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
    policy = POLICY.model_copy(update={"cooldown_batches": 0})
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
    retrains = [(num(d.batch), d.window_start) for d in decisions if d.action == "retrain"]
    assert retrains == [(8, None), (16, None), (21, day(20))]


def test_a_promoted_retraining_ends_the_episode_as_before():
    days = {n: ("performance",) for n in range(21, 30)}
    for outcome in (True, None):  # promoted, or not known yet (a training still running, or failed)
        decisions, state = run(days, last=29, onset=day(20), promoted=outcome)
        assert [num(d.batch) for d in decisions if d.action == "retrain"] == [21]
        assert state.episode.promoted is outcome and state.episode.retries == 0
        said = "already started a retraining on 2026-01-21" + (", which was promoted" if outcome else "")
        assert decisions[-1].reason.endswith(said)


def test_a_rejected_retraining_is_retried_after_the_cool_down_from_the_same_onset():
    days = {n: ("performance",) for n in range(21, 30)}
    # the onset estimate moves later once a noisy day is back above the floor: the retry keeps the first
    decisions, state = run(
        days, last=24, onset=day(20), promoted=False, onsets={n: day(22) for n in range(22, 30)}
    )
    retrains = [d for d in decisions if d.action == "retrain"]
    assert [(d.batch, d.window_start) for d in retrains] == [(day(21), day(20)), (day(23), day(20))]
    assert "cool-down after retraining on 2026-01-21 until 2026-01-23" in decisions[21].reason
    assert "the model gate rejected the retraining of 2026-01-21, retry 1 of 2" in retrains[1].reason
    assert retrains[1].episode_started == retrains[0].episode_started == day(21), "the same episode"
    assert state.episode.retries == 1 and state.episode.promoted is False
    assert state.window_floor == day(20)


def test_retries_are_bounded_per_episode():
    days = {n: ("performance",) for n in range(21, 40)}
    decisions, state = run(days, last=39, onset=day(20), promoted=False)
    assert [num(d.batch) for d in decisions if d.action == "retrain"] == [21, 23, 25]
    assert state.episode.retries == 2
    assert "no retry left (2 of max_retries_per_episode 2 spent)" in decisions[-1].reason
    never = POLICY.model_copy(update={"max_retries_per_episode": 0})
    decisions, _ = run(days, last=39, policy=never, onset=day(20), promoted=False)
    assert [num(d.batch) for d in decisions if d.action == "retrain"] == [21]
    # a quiet day ends the episode: the next one starts with its own retries
    days = {n: ("performance",) for n in [*range(21, 27), *range(28, 34)]}
    decisions, _ = run(days, last=33, onset=day(20), promoted=False)
    assert [d.batch for d in decisions if d.action == "retrain"] == [day(n) for n in (21, 23, 25, 28, 30, 32)]


def test_a_retry_still_waits_for_new_labels():
    state = PolicyState(
        last_retrain=day(21),
        episode=Episode(
            started=day(21),
            signals=["performance"],
            retrained_on=day(21),
            window_start=day(20),
            promoted=False,
        ),
        window_floor=day(20),
    )
    decision, pending = decide(signals("performance", onset=day(20)), state, POLICY, day(24), 100, 7)
    assert decision.action == "alert" and "waiting for labels" in decision.reason
    assert pending.episode == state.episode
    decision, _ = decide(signals("performance", onset=day(20)), pending, POLICY, day(25), 900, 7)
    assert decision.action == "retrain" and decision.window_start == day(20)


def test_record_outcome_only_touches_an_episode_that_retrained():
    assert record_outcome(PolicyState(), False) == PolicyState()
    waiting = PolicyState(episode=Episode(started=DAY1, signals=["performance"]))
    assert record_outcome(waiting, False) == waiting
    retrained = PolicyState(episode=Episode(started=DAY1, signals=["performance"], retrained_on=DAY1))
    assert record_outcome(retrained, None) == retrained
    assert record_outcome(retrained, False).episode.promoted is False


def _tags(reason: str, batch: str | None, gate: str | None = None) -> dict[str, str]:
    tags = {"ctcd.reason": reason, "ctcd.trigger": batch or "-"}
    return tags | ({"ctcd.gate": gate} if gate else {})


def test_training_outcome_reads_the_episode_s_drift_training_from_the_registry_tags():
    retrained_on = day(23)
    newest_first = [
        ("7", _tags("scheduled", None, "rejected")),
        ("6", _tags("drift: accuracy dropped", "2026-01-23", "rejected")),
        ("5", _tags("drift: accuracy dropped", "2026-01-21", "passed")),
    ]
    assert training_outcome(newest_first, {"1", "5"}, retrained_on) is False
    assert training_outcome(newest_first, {"1", "5"}, day(21)) is True
    assert training_outcome(newest_first, {"1", "5", "6"}, retrained_on) is True
    # registered but not judged yet, or not registered at all (still running, or failed): not known
    pending = [("6", _tags("drift: accuracy dropped", "2026-01-23"))]
    assert training_outcome(pending, {"1"}, retrained_on) is None
    assert training_outcome(newest_first, {"1"}, day(25)) is None
    # a manual training that happens to carry the day is not the policy's
    assert training_outcome([("8", _tags("manual", "2026-01-23", "rejected"))], set(), retrained_on) is None
    assert (
        training_outcome([("9", {"ctcd.reason": "drift", "ctcd.trigger": "{trunc"})], set(), day(1)) is None
    )
    # versions registered before the trigger tag held the batch id carry the drift event's JSON
    old = {
        "ctcd.reason": "drift",
        "ctcd.trigger": json.dumps({"today": "2026-01-23"}),
        "ctcd.gate": "rejected",
    }
    assert training_outcome([("4", old)], set(), retrained_on) is False


@pytest.mark.parametrize("name", ["covariate_shift", "prior_shift"])
def test_a_rejected_retraining_without_a_performance_drop_is_not_retried(name):
    # the gate kept a champion that did as well as a model trained on the shifted data: nothing to retry
    decisions, _ = run({n: (name,) for n in range(8, 15)}, last=14, promoted=False)
    assert [num(d.batch) for d in decisions if d.action == "retrain"] == [8]
    assert decisions[-1].reason.endswith(
        "which the model gate rejected; the champion's accuracy has not dropped"
    )
    # ... until its accuracy drops: a new kind of signal, retrained at once (escalation, as before)
    days = {n: (name,) for n in range(8, 15)} | {15: (name, "performance")}
    decisions, _ = run(days, last=15, promoted=False, onset=day(14))
    assert [num(d.batch) for d in decisions if d.action == "retrain"] == [8, 15]


PERSISTENT = POLICY.model_copy(update={"covariate_persistence_batches": 2})


def test_a_one_day_covariate_wobble_only_alerts_when_persistence_is_asked():
    decisions, state = run({5: ("covariate_shift",)}, last=7, policy=PERSISTENT)
    assert [d.action for d in decisions[4:]] == ["alert", "none", "none"]
    assert "fired 2 batches in a row (covariate_persistence_batches): batch 1, since 2026-01-05" in (
        decisions[4].reason
    )
    assert state.last_retrain is None and state.covariate_since is None


def test_a_persisting_covariate_shift_retrains_on_its_second_day_and_once():
    decisions, state = run({n: ("covariate_shift",) for n in range(8, 15)}, last=15, policy=PERSISTENT)
    assert [num(d.batch) for d in decisions if d.action == "retrain"] == [9]
    assert decisions[7].action == "alert" and decisions[14].action == "none"
    assert state.covariate_since is None


def test_persistence_does_not_delay_a_covariate_shift_that_comes_with_another_signal():
    decisions, _ = run({8: ("covariate_shift", "prior_shift")}, last=8, policy=PERSISTENT)
    assert decisions[7].action == "retrain" and decisions[7].triggering == ["covariate_shift", "prior_shift"]


def test_a_gap_restarts_the_covariate_streak():
    days = {3: ("covariate_shift",), 5: ("covariate_shift",), 6: ("covariate_shift",)}
    decisions, _ = run(days, last=6, policy=PERSISTENT)
    assert [num(d.batch) for d in decisions if d.action == "retrain"] == [6]


def test_the_default_config_waits_two_days_for_a_covariate_shift(default_config):
    assert default_config.drift.covariate_persistence_batches == 2
