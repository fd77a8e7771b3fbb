"""Evaluation: overall and per-slice metrics on the holdout, latency, reference sample, plots."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from tasks import evaluation, training
from tasks.dataset import BATCH_COLUMN
from tasks.model import features_frame, positive_proba, target_vector
from tests.tasks.test_training import small_config, small_split


@pytest.fixture(scope="module")
def cfg(default_config):
    return small_config(default_config, rows_per_day=200)


@pytest.fixture(scope="module")
def fitted(cfg):
    split = small_split(cfg, range(1, 6))
    model = training.fit_candidate(cfg, split, {}, training.choose_device("cpu")).model
    return split, model


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, 400), 0, 1)
    got = evaluation.classification_metrics(y, p)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert got["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert got["rows"] == 400


def test_auc_on_one_class_is_none_not_a_number():
    got = evaluation.classification_metrics(np.ones(5, dtype=int), np.full(5, 0.7))
    assert got["roc_auc"] is None
    assert got["accuracy"] == 1.0


def test_bootstrap_weights_equal_repeated_rows():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.2, 0.7, 0.4, 0.6, 0.9])
    w = np.array([2, 0, 1, 3, 1])
    rows = np.repeat(np.arange(5), w)
    for name in evaluation.METRICS:
        assert evaluation.metric_value(name, y, p, w.astype(float)) == pytest.approx(
            evaluation.metric_value(name, y[rows], p[rows])
        )


def test_vectorized_metrics_equal_one_at_a_time_with_ties_and_one_class():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(y * 0.3 + rng.uniform(0, 0.7, 300), 0, 1), 1)  # many ties
    w = rng.multinomial(300, np.full(300, 1 / 300), size=20).astype(float)
    w[0] = 0
    w[0, np.flatnonzero(y == 1)[:5]] = 1  # a resample holding one class only
    for name in evaluation.METRICS:
        got = evaluation.metric_values(name, y, p, w)
        want = [evaluation.metric_value(name, y, p, row) for row in w]
        np.testing.assert_allclose(got, want, equal_nan=True, err_msg=name)
    assert np.isnan(evaluation.metric_values("roc_auc", y, p, w)[0])


def test_evaluate_reports_overall_slices_and_latency(cfg, fitted):
    split, model = fitted
    report, proba = evaluation.evaluate(model, split.test, cfg)
    assert report.rows == len(split.test)
    assert set(evaluation.METRICS) <= set(report.metrics)
    assert report.metrics["roc_auc"] > 0.8
    np.testing.assert_allclose(proba, positive_proba(model, features_frame(split.test, cfg.dataset)))
    (column,) = cfg.dataset.slice_columns
    slices = report.slices[column]
    assert sum(s["rows"] for s in slices.values()) == report.rows
    assert set(slices) == {str(v) for v in split.test[column].unique()}
    assert report.latency_ms_per_row > 0
    assert report.batches == sorted(split.test[BATCH_COLUMN].unique())
    json.dumps(report.model_dump(mode="json"))  # stored as evaluation.json


def test_numerical_slice_columns_are_cut_in_quartiles(cfg, fitted):
    split, model = fitted
    by_salary = cfg.model_copy(
        update={"dataset": cfg.dataset.model_copy(update={"slice_columns": ["salary"]})}
    )
    report, _ = evaluation.evaluate(model, split.test, by_salary)
    assert len(report.slices["salary"]) == 4


def test_reference_sample_has_features_target_probability_prediction(cfg, fitted):
    split, model = fitted
    ref = evaluation.reference_sample(model, split.train, cfg, max_rows=100)
    ds = cfg.dataset
    assert list(ref.columns) == [*ds.features, ds.target, "probability", "prediction"]
    assert len(ref) == 100
    assert ((ref["probability"] >= 0.5) == (ref["prediction"] == 1)).all()
    small = evaluation.reference_sample(model, split.train.head(10), cfg)
    assert len(small) == 10


def test_feature_importance_is_a_share_per_feature(cfg, fitted):
    split, model = fitted
    imp = evaluation.feature_importance(model, split.test, cfg)
    assert set(imp) == set(cfg.dataset.features)
    assert math.isclose(sum(imp.values()), 1.0)
    # Without built-in importance (a pipeline), permutation importance on the holdout is used.
    baseline = training.fit_baseline(cfg, split)
    imp = evaluation.feature_importance(baseline, split.test, cfg)
    assert set(imp) == set(cfg.dataset.features)
    assert list(imp.values()) == sorted(imp.values(), reverse=True)


def test_plots_are_figures_with_axes(cfg, fitted):
    split, model = fitted
    y = target_vector(split.test, cfg.dataset).to_numpy()
    _, proba = evaluation.evaluate(model, split.test, cfg)
    for fig in (
        evaluation.confusion_figure(y, proba),
        evaluation.calibration_figure(y, proba),
        evaluation.importance_figure(evaluation.feature_importance(model, split.test, cfg)),
    ):
        assert fig.axes


def test_flat_metrics_prefix_and_skip_undefined():
    report = evaluation.EvaluationReport(
        metrics={"roc_auc": None, "accuracy": 0.5},
        slices={},
        rows=2,
        positive_rate=0.5,
        latency_ms_per_row=0.1,
    )
    assert evaluation.flat_metrics(report) == {"test_accuracy": 0.5, "test_latency_ms_per_row": 0.1}
