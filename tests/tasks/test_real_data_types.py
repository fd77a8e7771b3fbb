"""Real data's types through training, evaluation, the gate and monitoring: a yes/no target, text
categories, an int-coded category, and a feature named `day` (a name ctcd once used internally).

`shop_config` and `shop_day` are a small synthetic dataset of our own, shared with the serving test
(tests/integration/test_real_data_serving.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ctcd.config import CtcdConfig
from ctcd.errors import WorkFailed
from ctcd.tracking import trusted_types
from tasks import dataset, drift, evaluation, model_gate, training
from tasks.model import build_model, features_frame, positive_proba, target_vector

COLORS = ("red", "green", "blue")
STORES = ("north", "south", "east", "west")
CHANNELS = (1, 2, 3)
START = date(2026, 2, 1)


def shop_config(base: CtcdConfig, suite: str = "suite.json", **dataset_overrides: object) -> CtcdConfig:
    """The default config on the shop dataset: no stream, small and fast."""
    ds = {
        "name": "shop",
        "target": "bought",
        "id_column": "visit_id",
        "timestamp_column": "visited_at",
        "numerical_features": ["price", "day"],
        "categorical_features": ["color", "store", "channel"],
        "positive_label": "yes",
        "label_delay_batches": 1,
        "slice_columns": ["color"],
        **dataset_overrides,
    }
    raw = base.model_dump(mode="json", exclude={"source"})
    raw |= {"dataset": ds, "stream": None}
    raw["model"]["params"] = {**raw["model"]["params"], "n_estimators": 60, "n_jobs": 1}
    raw["model"]["early_stopping_rounds"] = 5
    raw["model"]["search"]["budget"] = 1
    raw["training"] |= {"device": "cpu", "window_batches": 4, "reference_rows": 500}
    raw["gates"]["data"]["suite"] = suite
    raw["gates"]["model"] |= {"bootstrap_samples": 100, "min_slice_rows": 30}
    return CtcdConfig.model_validate(raw)


def shop_day(n: int, day: int, seed: int = 0, labels: tuple[str, str] = ("yes", "no")) -> pd.DataFrame:
    """One day of visits with their label: bought when red XOR expensive (not linear), 5% noise."""
    rng = np.random.default_rng(seed * 1000 + day)
    when = datetime.combine(START + timedelta(days=day - 1), datetime.min.time(), UTC)
    frame = pd.DataFrame(
        {
            "visit_id": [f"v-{day}-{i}" for i in range(n)],
            "visited_at": [when + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 86_400, n))],
            "price": rng.uniform(0, 100, n).round(2),
            "day": np.full(n, (START + timedelta(days=day - 1)).day),
            "color": rng.choice(COLORS, n),
            "store": rng.choice(STORES, n),
            "channel": rng.choice(CHANNELS, n),
        }
    )
    truth = (frame["color"] == "red") ^ (frame["price"] > 50)
    flip = rng.random(n) < 0.05
    frame["bought"] = np.where(truth ^ flip, *labels)
    return frame


def shop_split(cfg: CtcdConfig, days: range = range(1, 5), n: int = 300) -> dataset.Split:
    batches = [
        dataset.BatchInput(f"2026-02-{d:02d}", f"{d:064d}", f"memory:{d}", shop_day(n, d)) for d in days
    ]
    return dataset.time_split(dataset.training_frame(batches, cfg.dataset), cfg.training)


@pytest.fixture(scope="module")
def cfg(default_config: CtcdConfig) -> CtcdConfig:
    return shop_config(default_config)


@pytest.fixture(scope="module")
def split(cfg: CtcdConfig) -> dataset.Split:
    return shop_split(cfg)


@pytest.mark.parametrize(
    ("labels", "positive"),
    [(("yes", "no"), "yes"), (("UP", "DOWN"), "UP"), ((True, False), True), ((1, 0), 1), ((0, 1), 0)],
)
def test_target_vector_marks_the_positive_label_of_any_type(cfg, labels, positive):
    frame = shop_day(200, 1, labels=labels)
    ds = cfg.dataset.model_copy(update={"positive_label": positive})
    y = target_vector(frame, ds)
    assert y.dtype == "int64" and set(y) == {0, 1}
    assert y.tolist() == (frame["bought"] == positive).astype(int).tolist()


def test_labels_read_back_from_csv_still_match(cfg, tmp_path):
    frame = shop_day(100, 1, labels=(True, False))
    frame.to_csv(tmp_path / "b.csv", index=False)
    back = pd.read_csv(tmp_path / "b.csv")
    ds = cfg.dataset.model_copy(update={"positive_label": True})
    assert target_vector(back, ds).tolist() == target_vector(frame, ds).tolist()
    as_text = back.assign(bought=back["bought"].astype(str))
    assert target_vector(as_text, ds).tolist() == target_vector(frame, ds).tolist()


@pytest.mark.parametrize("kind", ["xgboost", "logistic_regression", "hist_gradient_boosting", "prior"])
def test_every_kind_takes_text_categories_and_unknown_ones(cfg, split, kind):
    ds = cfg.dataset
    X = features_frame(split.train, ds)
    assert X["color"].dtype == object and X["channel"].dtype == "float64"
    model = build_model(cfg, kind).fit(X, target_vector(split.train, ds))
    odd = features_frame(split.test.head(4), ds)
    odd.loc[odd.index[0], "color"] = "purple"  # never seen in training
    odd.loc[odd.index[1], "store"] = np.nan
    odd.loc[odd.index[2], "channel"] = 9.0
    proba = positive_proba(model, odd)
    assert proba.shape == (4,) and np.isfinite(proba).all()
    # Only XGBoost and scikit-learn types: the registry can log it with skops.
    assert all(t.startswith(("xgboost.", "sklearn.", "functools.", "numpy.")) for t in trusted_types(model))


def test_training_search_beats_the_linear_baseline_on_text_categories(cfg, split):
    result = training.search(cfg, split, training.choose_device("cpu"))
    best = result.best
    report, proba = evaluation.evaluate(best.model, split.test, cfg)
    assert report.metrics["roc_auc"] > 0.9, report.metrics
    baseline = training.fit_baseline(cfg, split)
    base_report, base_proba = evaluation.evaluate(baseline, split.test, cfg)
    assert base_report.metrics["roc_auc"] < report.metrics["roc_auc"]
    assert set(report.slices["color"]) == set(COLORS)
    assert abs(report.positive_rate - (split.test["bought"] == "yes").mean()) < 1e-9

    decision = model_gate.decide_on_holdout(cfg, split.test, proba, base_proba, report, "baseline")
    assert decision.passed, decision.summary if hasattr(decision, "summary") else decision

    importance = evaluation.feature_importance(best.model, split.test, cfg)
    assert set(importance) == set(cfg.dataset.features)
    assert max(importance, key=importance.get) in ("color", "price")

    reference = evaluation.reference_sample(best.model, split.train, cfg, 200)
    assert set(reference["bought"]) == {"yes", "no"} and set(reference["prediction"]) <= {0, 1}


def _logged(reference: pd.DataFrame, cfg: CtcdConfig, day: date, version: str = "1") -> pd.DataFrame:
    """The prediction log of a day: the rows with their id, features, model output and serving time."""
    served = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    frame = reference.drop(columns=["bought"]).copy()
    frame["visit_id"] = [f"id-{day}-{i}" for i in range(len(frame))]
    frame["request_id"] = frame["visit_id"]
    frame["served_at"] = served
    frame["model_version"] = version
    return frame


def test_monitoring_joins_text_labels_and_a_feature_named_day(cfg, split):
    ds = cfg.dataset
    policy = cfg.drift.model_copy(update={"min_labelled_rows": 100, "window_batches": 1})
    model = training.search(cfg, split, training.choose_device("cpu")).best.model
    reference = evaluation.reference_sample(model, split.train, cfg, 500)
    today = date(2026, 3, 1)
    logged = _logged(reference, cfg, today)
    labels = pd.DataFrame({"visit_id": logged["visit_id"], "bought": reference["bought"]})

    labelled = drift.labelled_predictions(logged, labels, ds)
    assert "day" in labelled and labelled["day"].tolist() == logged["day"].tolist()  # the user's day kept
    truth = (reference["bought"] == "yes").astype(int)
    expected = float((reference["prediction"] == truth).mean())
    assert [s.accuracy for s in drift.batch_accuracy(labelled, ds)] == pytest.approx([expected])

    baseline = {"accuracy": expected, "roc_auc": 0.99}
    signals = drift.compute_signals(
        reference, logged, labelled, baseline, ds, policy, (str(today), str(today)), "1"
    )
    assert signals.performance.evaluated and signals.performance.metrics["accuracy"] == pytest.approx(
        expected
    )
    assert not signals.performance.fired
    assert signals.prior_shift.evaluated and signals.prior_shift.change == pytest.approx(0.0)
    assert {c.column for c in signals.covariate_shift.columns} == set(ds.features)
    assert "color" not in signals.covariate_shift.drifted

    # Only red visits in the window: the colour shift is seen on the text column.
    shifted = logged.assign(color="red")
    moved = drift.covariate_shift(reference, shifted, ds, policy)
    assert "color" in moved.drifted


def test_a_positive_label_no_row_has_is_a_one_line_error_naming_the_labels(cfg, split):
    wrong = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"positive_label": 1})})
    with pytest.raises(WorkFailed) as err:
        training.fit_candidate(wrong, split, {}, training.choose_device("cpu"))
    message = str(err.value)
    assert "\n" not in message and "positive_label 1" in message and "'yes'" in message


def test_the_signature_types_a_text_column_whose_example_values_are_all_missing(cfg, split):
    from ctcd.tracking import input_schema

    example = features_frame(split.test.head(5), cfg.dataset)
    example["store"] = np.nan
    example["store"] = example["store"].astype(object)
    types = {c.name: c.type.name for c in input_schema(example).inputs}
    assert types == {
        "price": "double",
        "day": "double",
        "color": "string",
        "store": "string",
        "channel": "double",
    }
