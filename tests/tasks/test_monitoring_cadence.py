"""Monitoring and the retraining policy with daily, weekly, monthly and uneven batches.

Each scenario replays seven batches through the real prediction log (`PredictionLogWriter`) and real label
files that land one batch late, then runs monitoring's own steps (timeline, current batch, windows, reads,
signals, policy) as `flows/monitoring.py` does, minus the registry. A concept drift starts with the sixth
batch: the performance signal must see it when that batch's labels arrive, one batch later, whatever a
batch is (with windows counted in days, monthly batches never saw a label).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from ctcd.cadence import Timeline, workspace_timeline
from ctcd.config import CtcdConfig
from ctcd.ct_inputs import current_batch, read_labels, read_window
from ctcd.prediction_log import PredictionLogWriter
from flows.monitoring import signals_of
from tasks.ct_steps import new_labelled_rows, windows
from tasks.drift import BATCH
from tasks.monitoring import MonitoringInputs
from tasks.policy import PolicyState, decide
from tests.tasks.test_drift import BASELINE, DATASET, make_rows

CFG = CtcdConfig.model_validate(
    {
        "dataset": DATASET.model_dump() | {"label_delay_batches": 1},
        "gates": {"data": {"suite": "unused.json"}},
        "training": {"window_batches": 3},
        "drift": {"min_labelled_rows": 500, "window_batches": 1, "retrain_on": ["performance"]},
    }
)
DRIFT_FROM = 5  # the sixth batch


def _served(moment: datetime, n: int, seed: int, concept: bool) -> pd.DataFrame:
    rows = make_rows(n, seed=seed, day=moment.date(), concept=concept)
    rows["served_at"] = [moment.replace(tzinfo=UTC) + timedelta(seconds=i) for i in range(n)]
    return rows


SCENARIOS = {
    # batch ids, when each batch's traffic was served (a replay's `as_of`), rows per batch
    "daily": (
        [f"2026-03-0{d}" for d in range(1, 8)],
        [datetime(2026, 3, d, 9) for d in range(1, 8)],
        [2000, 1500, 2500, 2000, 1800, 2200, 1900],
    ),
    "weekly": (
        ["2025-W51", "2025-W52", "2026-W01", "2026-W02", "2026-W03", "2026-W04", "2026-W05"],
        [
            datetime(2025, 12, 17),
            datetime(2025, 12, 26),
            datetime(2026, 1, 1),
            datetime(2026, 1, 11),
            datetime(2026, 1, 12),
            datetime(2026, 1, 21, 23),
            datetime(2026, 1, 28),
        ],
        [3000, 900, 5000, 2500, 1200, 4000, 700],
    ),
    "monthly": (
        ["2008-01", "2008-02", "2008-03", "2008-04", "2008-05", "2008-06", "2008-07"],
        [datetime(2008, m, 3 * m, 10) for m in range(1, 8)],
        [100, 15000, 800, 4000, 2500, 6000, 300],
    ),
    "uneven": (
        [
            "2026-03-01T00:00",
            "2026-03-01T08:00",
            "2026-03-02T17:30",
            "2026-03-05T00:00",
            "2026-03-05T06:00",
            "2026-03-09T12:00",
            "2026-03-10T00:00",
        ],
        [
            datetime(2026, 3, 1, 0, 5),
            datetime(2026, 3, 1, 8),
            datetime(2026, 3, 3, 2),
            datetime(2026, 3, 5, 1),
            datetime(2026, 3, 5, 6, 30),
            datetime(2026, 3, 9, 12),
            datetime(2026, 3, 10),
        ],
        [1200, 15000, 600, 2000, 700, 5000, 100],
    ),
}


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_rows(3000, seed=1).drop(columns=["served_at", "model_version", "request_id", "row_id"])


def replay(ws, reference: pd.DataFrame, name: str):
    """Land, serve and label the scenario batch by batch; monitor each batch after the first."""
    ids, moments, sizes = SCENARIOS[name]
    ws.ensure()
    state, runs = PolicyState(), []
    for k, (batch_id, moment, n) in enumerate(zip(ids, moments, sizes, strict=True)):
        rows = _served(moment, n, seed=100 + k, concept=k >= DRIFT_FROM)
        rows.drop(columns=["label", "served_at", "probability", "prediction", "model_version"]).to_parquet(
            ws.landing / f"{batch_id}.parquet"
        )
        writer = PredictionLogWriter(ws.predictions, flush_rows=100_000, flush_seconds=3600)
        writer.append(rows.drop(columns=["label"]))
        writer.close()
        rows[["row_id", "label"]].to_parquet(ws.root / f"pending-{k}.parquet")
        if k >= 1:  # the previous batch's labels arrive with this batch
            (ws.root / f"pending-{k - 1}.parquet").rename(ws.labels / f"{ids[k - 1]}.parquet")
            runs.append(monitor(ws, reference, state))
            state = runs[-1][2]
    return runs


def monitor(ws, reference: pd.DataFrame, state: PolicyState):
    """What the monitoring flow does for the latest batch, without the registry."""
    timeline = workspace_timeline(CFG, ws)
    batch = current_batch(ws, timeline)
    window = windows(CFG, timeline, batch)
    inputs = MonitoringInputs(
        timeline=timeline,
        windows=window,
        champion_version="3",
        reference=reference,
        baseline=BASELINE,
        predictions=read_window(ws, timeline, window.lookback),
        labels=read_labels(CFG, ws, timeline, window.lookback[0]),
    )
    signals, labelled = signals_of.fn(CFG, inputs)
    rows = new_labelled_rows(labelled, state, timeline)
    decision, state = decide(signals, state, CFG.drift, batch, rows, CFG.training.window_batches, timeline)
    return inputs, signals, state, decision


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_performance_sees_the_drift_one_batch_late_at_any_cadence(workspace, reference, name):
    ids, _, sizes = SCENARIOS[name]
    runs = replay(workspace, reference, name)
    batches = [inputs.windows.batch for inputs, *_ in runs]
    assert batches == ids[1:], "each prediction is monitored in the batch it was served in"
    for k, (inputs, signals, _, _) in enumerate(runs, start=1):
        # the current window is exactly this batch's traffic, whatever its size
        assert (
            signals.current_rows == sizes[k] and (signals.window_start, signals.window_end) == (ids[k],) * 2
        )
        # the look-back: 3 batches (the training window), fewer before the first batch of a list
        lookback = inputs.windows.lookback
        assert [b for b in lookback if b in ids] == ids[max(0, k - 2) : k + 1]
        assert len(lookback) == (3 if name != "uneven" else min(3, k + 1))
        perf = signals.performance
        if sizes[k - 1] >= CFG.drift.min_labelled_rows:
            # the last batch with labels is the previous one: labels are one batch late
            assert perf.evaluated and perf.labelled_rows == sizes[k - 1]
            assert [s.batch for s in perf.batches][-1] == ids[k - 1]
        else:
            assert not perf.evaluated and perf.note == f"{sizes[k - 1]} labelled rows, need 500"
        assert perf.fired == (k == DRIFT_FROM + 1), f"batch {ids[k]}: {perf}"
    _, signals, state, decision = runs[DRIFT_FROM]
    assert signals.performance.onset == ids[DRIFT_FROM]
    assert decision.action == "retrain" and decision.window_start == ids[DRIFT_FROM]
    assert state.last_retrain == ids[DRIFT_FROM + 1]
    assert [d.action for *_, d in runs[:DRIFT_FROM]] == ["none"] * DRIFT_FROM


def test_the_labelled_lookback_counts_batches_not_days(workspace, reference):
    runs = replay(workspace, reference, "monthly")
    inputs, _, _, _ = runs[-1]
    labelled = inputs.predictions.merge(inputs.labels, on="row_id")
    assert sorted(labelled[BATCH].unique()) == ["2008-05", "2008-06"]  # 2008-07's labels are not in yet
    assert (
        new_labelled_rows(
            labelled.assign(prediction=0), PolicyState(last_retrain="2008-06"), Timeline("month")
        )
        == 6000
    )


def test_a_date_or_a_time_names_the_batch_it_falls_in(workspace, reference):
    replay(workspace, reference, "monthly")
    timeline = workspace_timeline(CFG, workspace)
    assert timeline.period == "month"
    assert current_batch(workspace, timeline, "2008-03-17") == "2008-03"
    assert current_batch(workspace, timeline, "2008-03") == "2008-03"
    from ctcd.errors import UsageError

    with pytest.raises(UsageError, match="names no batch"):
        current_batch(workspace, timeline, "last-tuesday")


def test_batches_named_otherwise_take_their_time_from_the_timestamp_column(workspace):
    from ctcd.batches import file_batch, sha256_of
    from ctcd.records import ValidationOutcome

    cfg = CFG.model_copy(update={"dataset": CFG.dataset.model_copy(update={"timestamp_column": "at"})})
    workspace.ensure()
    for name, first in (("zeta", date(2026, 1, 2)), ("alpha", date(2026, 1, 9)), ("mid", date(2026, 1, 5))):
        path = workspace.landing / f"{name}.parquet"
        pd.DataFrame({"at": pd.to_datetime([first, first + timedelta(days=2)], utc=True)}).to_parquet(path)
        outcome = ValidationOutcome(
            batch_id=name,
            suite="s",
            accepted=True,
            gx_success=True,
            reason="ok",
            rows=2,
            failures=[],
            warnings=[],
        )
        file_batch(workspace, path, outcome, sha256=sha256_of(path))
    timeline = workspace_timeline(cfg, workspace)
    assert timeline.batches == ("zeta", "mid", "alpha")
    assert timeline.batch_at(datetime(2026, 1, 6)) == "mid"
    assert timeline.last("alpha", 2) == ["mid", "alpha"]


# --------------------------------------------------------------------------- the policy counts batches


def _signals(name: str):
    from tests.tasks.test_policy import signals

    return signals(name)


@pytest.mark.parametrize(
    ("timeline", "retrained", "next_batches", "until"),
    [
        (Timeline("month"), "2008-11", ["2008-12", "2009-01"], "2009-01"),
        (Timeline("week"), "2025-W52", ["2026-W01", "2026-W02"], "2026-W02"),
        (Timeline("day"), "2026-01-31", ["2026-02-01", "2026-02-02"], "2026-02-02"),
        (
            Timeline(None, ("a", "b", "c", "d"), tuple(datetime(2026, 1, d) for d in (1, 2, 9, 10))),
            "b",
            ["c", "d"],
            "d",
        ),
    ],
)
def test_the_cool_down_counts_batches(timeline, retrained, next_batches, until):
    policy = CFG.drift.model_copy(update={"retrain_on": ["prior_shift"], "cooldown_batches": 2})
    state = PolicyState(last_retrain=retrained)
    decision, pending = decide(_signals("prior_shift"), state, policy, next_batches[0], 5000, 3, timeline)
    assert decision.action == "alert" and decision.cooldown_until == until
    assert f"cool-down after retraining on {retrained} until {until}" in decision.reason
    decision, _ = decide(_signals("prior_shift"), pending, policy, next_batches[1], 5000, 3, timeline)
    assert decision.action == "retrain"


def test_covariate_persistence_counts_batches():
    policy = CFG.drift.model_copy(
        update={"retrain_on": ["covariate_shift"], "covariate_persistence_batches": 2}
    )
    monthly = Timeline("month")
    decision, state = decide(_signals("covariate_shift"), PolicyState(), policy, "2008-11", 5000, 3, monthly)
    assert decision.action == "alert" and "batch 1, since 2008-11" in decision.reason
    decision, _ = decide(_signals("covariate_shift"), state, policy, "2008-12", 5000, 3, monthly)
    assert decision.action == "retrain"
    # a month without a run is still a month: the streak is two batches long on 2009-01 as well
    decision, _ = decide(_signals("covariate_shift"), state, policy, "2009-01", 5000, 3, monthly)
    assert decision.action == "retrain"


def test_a_drift_onset_older_than_the_training_window_no_longer_restarts_it():
    policy = CFG.drift.model_copy(update={"retrain_on": ["prior_shift"]})
    state = PolicyState(window_floor="2026-W01")
    weekly = Timeline("week")
    decision, _ = decide(_signals("prior_shift"), state, policy, "2026-W03", 5000, 3, weekly)
    assert decision.window_start == "2026-W01"  # within 3 weeks
    decision, _ = decide(_signals("prior_shift"), state, policy, "2026-W04", 5000, 3, weekly)
    assert decision.window_start is None
