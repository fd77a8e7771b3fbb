"""The replay behind `ctcd backtest` (tasks/replay.py) is honest: labels arrive late, rejected batches are
skipped, a model only serves after it was promoted, the policy sees no label early, and the gate's numbers
are re-checked.

A tiny replay (10 days x 600 rows, a corrupted day 5, concept drift on day 7); no targets, no timings.
"""

from __future__ import annotations

import numpy as np
import pytest

from ctcd.app.backtest import apply_overrides
from ctcd.config import CtcdConfig, ScenarioEvent, load_config
from tasks import policy, training
from tasks.drift import BATCH, labelled_predictions
from tasks.replay import PolicyRun, monitor, replay, served_predictions
from tasks.replay_history import Scenario, agrawal_scenario, rejection, sea_scenario
from tasks.replay_registry import FitCache, train_and_gate, training_window
from tasks.replay_scoring import recovery_days, reference_levels, summarize
from tests.conftest import REPO

WARMUP = 3
DRIFT_DAY = 7
CORRUPT_DAY = 5
POLICIES = ("never", "weekly", "daily", "ctcd", "every-3")
CHEAP = ["model.search.budget=1", "model.params.n_estimators=20", "gates.model.bootstrap_samples=20"]


@pytest.fixture(scope="module")
def scenario(default_config: CtcdConfig) -> Scenario:
    assert default_config.stream is not None
    events = [
        ScenarioEvent(day=CORRUPT_DAY, kind="corrupt_batch", corruption="null_flood"),
        ScenarioEvent(day=DRIFT_DAY, kind="concept_drift", function=2),
    ]
    cfg = apply_overrides(default_config, CHEAP)
    cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"events": events})})
    return agrawal_scenario(cfg, days=10, rows_per_day=600)


@pytest.fixture(scope="module")
def runs(scenario: Scenario) -> dict[str, PolicyRun]:
    cache = FitCache()
    device = training.DeviceChoice("cpu", "cpu", "test")
    return {p: replay(scenario, p, WARMUP, cache, device) for p in POLICIES}


def test_the_corrupted_batch_is_rejected_and_a_batch_with_nulls_too(scenario: Scenario) -> None:
    assert [d.day for d in scenario.days if d.rejected] == [CORRUPT_DAY]
    assert [o.label for o in scenario.onsets] == [f"concept_drift@{DRIFT_DAY}"]
    cfg = scenario.cfg
    clean = scenario.days[0]
    holed = clean.features.copy()
    holed.loc[3, cfg.dataset.features[0]] = np.nan
    assert rejection(clean.features, [], cfg) is None
    assert rejection(holed, [], cfg) == "1 null feature values"


def test_the_training_window_holds_only_validated_batches_whose_labels_arrived(scenario: Scenario) -> None:
    delay = scenario.cfg.dataset.label_delay_batches
    batches, split = training_window(scenario, today=6, window_start=None)
    assert [b.day for b in batches] == [d for d in range(1, 6 - delay + 1) if d != CORRUPT_DAY]
    assert sum(split.rows.values()) == 600 * len(batches)
    restarted, _ = training_window(scenario, today=9, window_start=scenario.days[DRIFT_DAY - 1].batch_id)
    assert [b.day for b in restarted] == list(range(DRIFT_DAY, 9 - delay + 1))


def test_policies_train_on_their_schedule_with_arrived_labels_only(scenario: Scenario, runs: dict) -> None:
    delay = scenario.cfg.dataset.label_delay_batches
    assert [t.day for t in runs["never"].trainings] == [WARMUP]
    assert [t.day for t in runs["daily"].trainings] == list(range(WARMUP, 11))
    assert [t.day for t in runs["weekly"].trainings] == [WARMUP, WARMUP + 7]
    assert [t.day for t in runs["every-3"].trainings] == [WARMUP, WARMUP + 3, WARMUP + 6]
    by_id = {d.batch_id: d for d in scenario.days}
    for run in runs.values():
        for t in run.trainings:
            assert t.error is None, t.error
            assert t.window, "a training without batches"
            assert all(by_id[b].day + delay <= t.day and by_id[b].rejected is None for b in t.window)


def test_a_model_serves_only_after_its_promotion_and_rejected_days_are_not_scored(runs: dict) -> None:
    for run in runs.values():
        promoted_on = {t.version: t.day for t in run.trainings if t.served}
        assert CORRUPT_DAY not in run.accuracy
        assert sorted(run.accuracy) == [d for d in range(WARMUP + 1, 11) if d != CORRUPT_DAY]
        for day, version in run.served_by.items():
            assert promoted_on[version] < day
        # the champion serving each day is the last one promoted before it
        for day, version in run.served_by.items():
            assert version == max(
                (v for v, d in promoted_on.items() if d < day), key=lambda v: promoted_on[v]
            )


def test_gate_records_are_rechecked_from_the_probabilities(runs: dict) -> None:
    for run in runs.values():
        for t in run.trainings:
            assert t.decision is not None
            assert t.passed == t.decision.passed
            assert t.candidate_metric == pytest.approx(t.decision.bootstrap.candidate)
            assert t.reference_metric == pytest.approx(t.decision.bootstrap.reference)
            assert t.reference_kind == ("baseline" if t.day == WARMUP else "champion")
            assert t.cost is not None and t.cost.rows > 0 and t.cost.cpu_seconds > 0


def test_the_policy_sees_the_drift_only_once_its_labels_arrive(scenario: Scenario, runs: dict) -> None:
    delay = scenario.cfg.dataset.label_delay_batches
    ctcd = runs["ctcd"]
    fired = {m.day: m.fired for m in ctcd.monitoring}
    assert all("performance" not in fired[d] for d in fired if d < DRIFT_DAY + delay)
    assert "performance" in fired[DRIFT_DAY + delay]
    retrains = [t for t in ctcd.trainings if t.day > WARMUP]
    assert retrains and all(t.day >= DRIFT_DAY + delay for t in retrains)
    # its window restarts at an onset estimated from arrived labels only
    first = retrains[0]
    assert first.window_start is not None
    assert first.window_start <= scenario.days[first.day - delay - 1].batch_id


def test_monitoring_reads_the_prediction_log_format(scenario: Scenario) -> None:
    cfg = scenario.cfg
    record, champion = train_and_gate(
        scenario, WARMUP, None, None, "1", "initial", FitCache(), training.DeviceChoice("cpu", "cpu", "t")
    )
    assert record.served is not None and champion is not None
    served = scenario.days[WARMUP]  # day WARMUP + 1, the first served day
    log = served_predictions(cfg, served, champion)
    assert {"request_id", "served_at", "probability", "prediction", "model_version"} <= set(log.columns)
    joined = labelled_predictions(log, served.labels, cfg.dataset)
    assert len(joined) == len(log)
    assert set(joined[BATCH]) == {served.batch_id}
    # the day it was served, none of its labels are visible to the policy; the next day all of them are
    logs = {served.day: log}
    outcome = monitor(scenario, served.day, champion, logs, policy.PolicyState())
    assert outcome is not None
    assert outcome[0].batch == served.batch_id
    assert outcome[0].new_labelled_rows == 0
    logs[served.day + 1] = served_predictions(cfg, scenario.days[served.day], champion)
    outcome = monitor(scenario, served.day + 1, champion, logs, policy.PolicyState())
    assert outcome is not None
    assert outcome[0].new_labelled_rows == len(log)


def test_recovery_counts_days_from_onset_back_within_tolerance_of_the_best_pre_drift_level(
    scenario: Scenario,
) -> None:
    onset = scenario.onsets[0]
    assert onset.day == DRIFT_DAY
    good = PolicyRun("daily", accuracy={4: 1.0, 5: 0.98, 6: 1.0, 7: 0.5, 8: 0.9, 9: 0.985, 10: 1.0})
    stale = PolicyRun("never", accuracy=dict.fromkeys(range(4, 11), 0.8))
    levels = reference_levels([good, stale], scenario)
    assert levels == {onset.label: pytest.approx((1.0 + 0.98 + 1.0) / 3)}
    assert recovery_days(good.accuracy, onset=7, until=11, level=1.0, tolerance=0.02) == 2
    assert recovery_days(good.accuracy, onset=7, until=9, level=1.0, tolerance=0.02) is None
    assert recovery_days(good.accuracy, onset=5, until=11, level=1.0, tolerance=0.02) == 0
    summary = summarize(good, scenario, 0.02, levels)
    assert summary.recovery[onset.label] == 2
    assert summary.mean_accuracy == pytest.approx(np.mean(list(good.accuracy.values())))
    # a policy that stayed at its own low level has not recovered to what was achievable before the drift
    assert summarize(stale, scenario, 0.02, levels).recovery[onset.label] is None


def test_sea_stream_labels_follow_the_variant_schedule() -> None:
    cfg = load_config(REPO / "benchmarks" / "configs" / "sea.yaml")
    sea = sea_scenario(cfg, days=4, rows_per_day=200, schedule={1: 0, 3: 2}, noise=0.0, seed=1)
    assert [o.day for o in sea.onsets] == [3]
    x1, x2, _ = cfg.dataset.numerical_features
    for day, threshold in [(1, 8.0), (2, 8.0), (3, 7.0), (4, 7.0)]:
        d = sea.days[day - 1]
        expected = (d.features[x1] + d.features[x2] > threshold).astype(int).to_numpy()
        assert (d.labels[cfg.dataset.target].to_numpy() == expected).all()
        assert d.rejected is None and d.batch_id == d.start.date().isoformat()
