"""The one Model contract: every trained model is a scikit-learn estimator built from the config.

A Model takes a DataFrame of the dataset's features as float64 and answers `predict_proba`, whose column 1
is the probability of `dataset.positive_label` (models are fitted on `target == positive_label`). Training,
evaluation, the registry and serving never branch on the library behind it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from ctcd.config import CtcdConfig, DatasetConfig
from ctcd.errors import ConfigError

ModelKind = Literal["xgboost", "logistic_regression", "hist_gradient_boosting", "prior"]

# Parameters that XGBoost needs as integers even when YAML or a search gives floats.
_INT_PARAMS = {"n_estimators", "max_depth", "max_leaves", "max_bin", "num_parallel_tree"}


class Model(Protocol):
    """What every trained model offers (a fitted scikit-learn classifier)."""

    classes_: np.ndarray

    def fit(self, X: pd.DataFrame, y: pd.Series, **kwargs: Any) -> Any: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...


def features_frame(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """The model input: the dataset's features, in config order, as float64."""
    missing = [c for c in dataset.features if c not in frame.columns]
    if missing:
        raise ConfigError(f"the data has no column(s) {missing} that dataset.features declares")
    return frame[dataset.features].astype("float64")


def target_vector(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.Series:
    """The training target: 1 where the label is `positive_label`, else 0."""
    return (frame[dataset.target] == dataset.positive_label).astype("int64").rename(dataset.target)


def positive_proba(model: Model, X: pd.DataFrame) -> np.ndarray:
    """The probability of the positive label for each row of X."""
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    if 1 not in classes:  # fitted on one class only: it can never say positive
        return np.zeros(len(X), dtype="float64")
    return np.asarray(proba[:, classes.index(1)], dtype="float64")


def xgboost_params(
    cfg: CtcdConfig, params: dict[str, Any] | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """The full XGBClassifier parameters: config params, then `params`, then the fixed ones.

    Early stopping is set only while training (it needs a validation set), so the fitted model keeps
    the plain scikit-learn contract; predictions use the best iteration found.
    """
    merged: dict[str, Any] = {**cfg.model.params, **(params or {})}
    for name in _INT_PARAMS & merged.keys():
        merged[name] = round(float(merged[name]))
    merged.update(
        tree_method="hist",
        device=device,
        random_state=cfg.training.seed,
        eval_metric="logloss",
    )
    return merged


def build_model(
    cfg: CtcdConfig, kind: ModelKind, params: dict[str, Any] | None = None, device: str = "cpu"
) -> Model:
    """An unfitted estimator of `kind` for this dataset (`params` go to the classifier itself)."""
    if kind == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(**xgboost_params(cfg, params, device))
    return _sklearn_pipeline(cfg, kind, params or {})


def candidate_kind(cfg: CtcdConfig) -> ModelKind:
    """The kind of model a training run produces (`model.flavor`)."""
    return "xgboost" if cfg.model.flavor == "xgboost" else cfg.model.baseline


def baseline_kind(cfg: CtcdConfig) -> ModelKind:
    """The kind the first champion must beat: `model.baseline`, or the prior when that is the candidate."""
    return cfg.model.baseline if cfg.model.flavor == "xgboost" else "prior"


def _sklearn_pipeline(cfg: CtcdConfig, kind: ModelKind, params: dict[str, Any]) -> Model:
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    ds = cfg.dataset
    seed = cfg.training.seed
    if kind == "prior":
        return DummyClassifier(strategy="prior")
    if kind == "logistic_regression":
        columns = ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                    ds.numerical_features,
                ),
                (
                    "cat",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                    ),
                    ds.categorical_features,
                ),
            ]
        )
        clf: Any = LogisticRegression(max_iter=1000, random_state=seed)
    elif kind == "hist_gradient_boosting":
        columns = ColumnTransformer([("all", "passthrough", ds.features)], verbose_feature_names_out=False)
        clf = HistGradientBoostingClassifier(
            categorical_features=ds.categorical_features or None, random_state=seed
        )
    else:
        raise ConfigError(
            f"unknown model kind {kind!r}: use xgboost, logistic_regression or hist_gradient_boosting"
        )
    if kind == "hist_gradient_boosting":
        columns.set_output(transform="pandas")
    try:
        clf.set_params(**params)
    except ValueError as exc:
        raise ConfigError(f"model.params do not fit {type(clf).__name__}: {exc}") from exc
    return Pipeline([("columns", columns), ("classifier", clf)])
