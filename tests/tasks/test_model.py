"""The Model contract, checked for every kind of model ctcd trains."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from ctcd.errors import ConfigError
from tasks import model as m
from tests.tasks.test_training import small_config, small_split

KINDS = ["xgboost", "logistic_regression", "hist_gradient_boosting", "prior"]


@pytest.fixture(scope="module")
def cfg(default_config):
    return small_config(default_config, rows_per_day=150)


@pytest.fixture(scope="module")
def split(cfg):
    return small_split(cfg, range(1, 5))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_honours_the_contract(cfg, split, kind):
    ds = cfg.dataset
    model = m.build_model(cfg, kind)
    X, y = m.features_frame(split.train, ds), m.target_vector(split.train, ds)
    model.fit(X, y)
    X_test = m.features_frame(split.test, ds)
    proba = model.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    assert list(model.classes_) == [0, 1]
    p = m.positive_proba(model, X_test)
    assert p.dtype == np.float64
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p, proba[:, 1])
    # A model survives serialization unchanged (the registry stores it).
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X_test), proba)


def test_features_are_float64_in_config_order(cfg, split):
    X = m.features_frame(split.test, cfg.dataset)
    assert list(X.columns) == cfg.dataset.features
    assert set(X.dtypes) == {np.dtype("float64")}


def test_missing_feature_is_a_config_error(cfg, split):
    with pytest.raises(ConfigError, match=cfg.dataset.features[0]):
        m.features_frame(split.test.drop(columns=cfg.dataset.features[0]), cfg.dataset)


def test_target_is_one_for_the_positive_label(cfg):
    ds = cfg.dataset.model_copy(update={"positive_label": 0})
    frame = pd.DataFrame({ds.target: [0, 1, 0]})
    assert m.target_vector(frame, ds).tolist() == [1, 0, 1]


def test_xgboost_params_merge_config_search_and_fixed_values(cfg):
    params = m.xgboost_params(cfg, {"max_depth": 4.0, "learning_rate": 0.2}, device="cuda")
    assert params["max_depth"] == 4 and isinstance(params["max_depth"], int)
    assert params["learning_rate"] == 0.2
    assert params["n_estimators"] == cfg.model.params["n_estimators"]
    assert params["device"] == "cuda"
    assert params["random_state"] == cfg.training.seed
    assert "early_stopping_rounds" not in params  # set only while training, with a validation set


def test_kinds_follow_the_flavor(cfg):
    assert (m.candidate_kind(cfg), m.baseline_kind(cfg)) == ("xgboost", "logistic_regression")
    sk = cfg.model_copy(update={"model": cfg.model.model_copy(update={"flavor": "sklearn"})})
    assert (m.candidate_kind(sk), m.baseline_kind(sk)) == ("logistic_regression", "prior")


def test_params_that_do_not_fit_the_classifier_are_a_config_error(cfg):
    with pytest.raises(ConfigError, match=r"model\.params"):
        m.build_model(cfg, "logistic_regression", {"max_depth": 3})


def test_a_model_fitted_on_one_class_never_says_positive(cfg, split):
    ds = cfg.dataset
    X = m.features_frame(split.train, ds)
    model = m.build_model(cfg, "prior").fit(X, pd.Series(np.zeros(len(X), dtype=int)))
    assert (m.positive_proba(model, X) == 0).all()
