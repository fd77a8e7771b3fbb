"""Monitoring signals on windows built in memory: stable, covariate-, prior- and concept-drifted."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ctcd.config import DatasetConfig, DriftPolicyConfig
from tasks.drift import (
    BatchScore,
    batch_accuracy,
    compute_signals,
    estimate_onset,
    labelled_predictions,
    latest_batches,
    performance,
    scored_by,
)

# Deliberately not the default dataset's column names.
DATASET = DatasetConfig(
    name="toy",
    target="label",
    id_column="row_id",
    numerical_features=["x1", "x2", "noise"],
    categorical_features=["colour"],
)
POLICY = DriftPolicyConfig(min_labelled_rows=300, window_batches=1)
TODAY = date(2026, 3, 10)
BASELINE = {"accuracy": 0.95, "roc_auc": 0.99}


def make_rows(
    n: int,
    seed: int,
    day: date = TODAY,
    shift: float = 0.0,
    positive_rate: float | None = None,
    concept: bool = False,
    version: str = "3",
) -> pd.DataFrame:
    """Logged predictions with labels: the model knows `x1 + x2 > 0`; 5% label noise."""
    rng = np.random.default_rng(seed)
    pool = n * 4 if positive_rate is not None else n
    x = pd.DataFrame(
        {
            "x1": rng.normal(0, 1, pool),
            "x2": rng.normal(0, 1, pool),
            "noise": rng.normal(shift, 1, pool),
            "colour": rng.choice(
                [0, 1, 2, 3], pool, p=[0.4, 0.3, 0.2, 0.1] if not shift else [0.1, 0.2, 0.3, 0.4]
            ),
        }
    )
    score = x["x1"] + x["x2"]
    truth = (x["x2"] - x["x1"] > 0) if concept else (score > 0)
    flip = rng.random(pool) < 0.05
    x["label"] = (truth ^ flip).astype(int)
    if positive_rate is not None:
        pos = x[x["label"] == 1].head(round(n * positive_rate))
        neg = x[x["label"] == 0].head(n - len(pos))
        x = pd.concat([pos, neg]).sample(frac=1, random_state=seed).reset_index(drop=True)
        score = x["x1"] + x["x2"]
    x["probability"] = 1 / (1 + np.exp(-4 * score))
    x["prediction"] = (x["probability"] >= 0.5).astype(int)
    x["row_id"] = np.arange(len(x)) + seed * 1_000_000
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    x["served_at"] = [start + timedelta(seconds=i) for i in range(len(x))]
    x["model_version"] = version
    x["request_id"] = [f"r{seed}-{i}" for i in range(len(x))]
    return x


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_rows(3000, seed=1).drop(columns=["served_at", "model_version", "request_id", "row_id"])


def signals_for(reference: pd.DataFrame, days: list[pd.DataFrame]):
    """Signals when `days` (oldest first) were served and their labels have all arrived."""
    logged = pd.concat(days, ignore_index=True)
    labels = logged[["row_id", "label"]]
    predictions = logged.drop(columns=["label"])
    current = predictions[pd.to_datetime(predictions["served_at"]).dt.date == TODAY]
    labelled = labelled_predictions(predictions, labels, DATASET)
    return compute_signals(
        reference, current, labelled, BASELINE, DATASET, POLICY, (str(TODAY), str(TODAY)), model_version="3"
    )


def test_stable_window_fires_nothing(reference):
    s = signals_for(reference, [make_rows(2000, seed=2)])
    assert s.fired == []
    assert s.covariate_shift.drifted == []
    assert s.prior_shift.evaluated and s.performance.evaluated
    assert s.performance.metrics["accuracy"] > 0.9


def test_covariate_shift_names_the_drifted_features(reference):
    s = signals_for(reference, [make_rows(2000, seed=3, shift=1.0)])
    assert s.fired == ["covariate_shift"]
    assert s.covariate_shift.drifted == ["noise", "colour"]
    methods = {c.column: c.method for c in s.covariate_shift.columns}
    # The int-coded categorical is tested as a category, not as a number.
    assert methods == {
        "x1": "wasserstein",
        "x2": "wasserstein",
        "noise": "wasserstein",
        "colour": "jensenshannon",
    }


def test_prior_shift_fires_on_the_label_distribution(reference):
    s = signals_for(reference, [make_rows(2000, seed=4, positive_rate=0.7)])
    assert "prior_shift" in s.fired
    assert "performance" not in s.fired
    assert s.prior_shift.change == pytest.approx(0.2, abs=0.03)


def test_concept_drift_is_seen_only_by_performance(reference):
    before = [make_rows(2000, seed=10 + i, day=TODAY - timedelta(days=3 - i)) for i in range(2)]
    after = [make_rows(2000, seed=20 + i, day=TODAY - timedelta(days=1 - i), concept=True) for i in range(2)]
    s = signals_for(reference, before + after)
    assert s.covariate_shift.drifted == []
    assert s.fired == ["performance"]
    assert s.performance.accuracy_drop > 0.3
    assert s.performance.labelled_rows == 2000  # only the latest `window_batches` labelled batch is scored
    # The drop began on the first of the two drifted days: the retraining window restarts there.
    assert s.performance.onset == (TODAY - timedelta(days=1)).isoformat()


def test_labels_below_the_minimum_are_not_evaluated(reference):
    s = signals_for(reference, [make_rows(200, seed=5, concept=True)])
    assert not s.prior_shift.evaluated and not s.performance.evaluated
    assert "200 labelled rows" in s.performance.note
    assert s.fired == []


def test_performance_only_counts_the_champions_rows(reference):
    old = make_rows(2000, seed=6, concept=True, version="2")
    s = signals_for(reference, [old, make_rows(2000, seed=7)])
    assert s.performance.labelled_rows == 2000
    assert not s.performance.fired


def canary(log: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """`log` as a canary of candidate "4" against champion "3" logs it: a `fraction` of the rows answered
    by a candidate that is wrong about the concept, each row with both models' probabilities."""
    to_candidate = np.random.default_rng(seed).random(len(log)) < fraction
    candidate = 1 / (1 + np.exp(-4 * (log["x2"] - log["x1"])))
    out = log.assign(
        answered_by=np.where(to_candidate, "candidate", "champion"),
        champion_version="3",
        champion_probability=log["probability"],
        candidate_version="4",
        candidate_probability=candidate,
        probability=np.where(to_candidate, candidate, log["probability"]),
        model_version=np.where(to_candidate, "4", "3"),
    )
    return out.assign(prediction=(out["probability"] >= 0.5).astype(int))


@pytest.mark.parametrize("fraction", [0.25, 1.0])
def test_a_canary_keeps_every_row_in_the_champions_monitoring(reference, fraction):
    days = [
        make_rows(2000, seed=30, day=TODAY - timedelta(days=1)),
        make_rows(2000, seed=31, shift=0.5, concept=True),
    ]
    alone = signals_for(reference, days)
    assert alone.performance.fired and alone.prediction_drift.evaluated
    during = signals_for(reference, [canary(day, fraction, seed=i) for i, day in enumerate(days)])
    assert during.performance.labelled_rows == alone.performance.labelled_rows == 2000
    assert during.model_dump() == alone.model_dump()


def test_scored_by_leaves_out_rows_of_another_champion():
    log = pd.concat([canary(make_rows(100, seed=32), 0.5, seed=1), make_rows(50, seed=33, version="2")])
    earlier = canary(make_rows(80, seed=34), 0.5, seed=2)  # candidate "5" against champion "2"
    earlier = earlier.assign(
        champion_version="2",
        candidate_version="5",
        model_version=earlier["model_version"].map({"3": "2", "4": "5"}),
    )
    log = pd.concat([log, earlier], ignore_index=True)
    assert len(scored_by(log, "3")) == 100
    assert len(scored_by(log, "2")) == 130
    assert len(scored_by(log, "4")) == (log["model_version"] == "4").sum()
    assert len(scored_by(log.drop(columns=["champion_version"]), "3")) == (log["model_version"] == "3").sum()


def test_estimate_onset_takes_the_latest_unbroken_run():
    d = [(TODAY + timedelta(days=i)).isoformat() for i in range(5)]
    scores = [0.95, 0.5, 0.96, 0.6, 0.55]
    daily = [BatchScore(batch=day, rows=100, accuracy=a) for day, a in zip(d, scores, strict=True)]
    assert estimate_onset(daily, 0.9) == d[3]
    assert estimate_onset(daily[:3], 0.9) is None
    assert estimate_onset([], 0.9) is None


def test_batch_accuracy_and_latest_batches():
    rows = pd.concat(
        [make_rows(400, seed=8, day=TODAY - timedelta(days=1)), make_rows(400, seed=9, concept=True)]
    )
    labelled = labelled_predictions(rows.drop(columns=["label"]), rows[["row_id", "label"]], DATASET)
    daily = batch_accuracy(labelled, DATASET)  # without a batch column: the served date
    assert [s.batch for s in daily] == [(TODAY - timedelta(days=1)).isoformat(), TODAY.isoformat()]
    assert daily[0].accuracy > 0.9 > daily[1].accuracy
    assert len(latest_batches(labelled, 1)) == 400
    # Small batches: the window reaches back until it holds min_rows labelled rows (within what it has).
    assert len(latest_batches(labelled, 1, min_rows=400)) == 400
    assert len(latest_batches(labelled, 1, min_rows=401)) == 800
    assert len(latest_batches(labelled, 1, min_rows=5000)) == 800


def test_performance_without_baseline_accuracy_is_not_evaluated():
    rows = make_rows(600, seed=11)
    labelled = labelled_predictions(rows.drop(columns=["label"]), rows[["row_id", "label"]], DATASET)
    p = performance(labelled, {"roc_auc": 0.9}, DATASET, POLICY)
    assert not p.evaluated and "no accuracy" in p.note
