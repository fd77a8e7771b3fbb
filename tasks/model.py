"""The one Model contract: every trained model is a scikit-learn estimator built from the config.

A Model takes a DataFrame of the dataset's features as `features_frame` builds it (numerical float64;
categorical float64 when int-coded, text otherwise, see `ctcd.features`) and answers `predict_proba`, whose
column 1 is the probability of `dataset.positive_label` (models are fitted on "label is positive_label",
0/1). Each model is a scikit-learn Pipeline whose first step encodes the categories it saw in training
(XGBoost and HistGradientBoosting: ordinal codes, unknown or missing categories become missing values;
logistic regression: one-hot, unknown categories all zeros), so the logged model takes raw frames and
training, evaluation, the registry and serving never branch on the library behind it.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from ctcd.config import CtcdConfig, DatasetConfig
from ctcd.errors import ConfigError
from ctcd.features import model_input, positive_vector

ModelKind = Literal["xgboost", "logistic_regression", "hist_gradient_boosting", "prior"]

# Parameters that XGBoost needs as integers even when YAML or a search gives floats.
_INT_PARAMS = {"n_estimators", "max_depth", "max_leaves", "max_bin", "num_parallel_tree"}


class Model(Protocol):
    """What every trained model offers (a fitted scikit-learn classifier)."""

    classes_: np.ndarray

    def fit(self, X: pd.DataFrame, y: pd.Series, **kwargs: Any) -> Any: ...

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...


def features_frame(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """The model input: the dataset's features, in config order, typed by `ctcd.features.model_input`."""
    missing = [c for c in dataset.features if c not in frame.columns]
    if missing:
        raise ConfigError(f"the data has no column(s) {missing} that dataset.features declares")
    return model_input(frame, dataset)


def target_vector(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.Series:
    """The training target: 1 where the label is `positive_label` (however stored), else 0."""
    return positive_vector(frame[dataset.target], dataset.positive_label).rename(dataset.target)


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
        from sklearn.pipeline import Pipeline
        from xgboost import XGBClassifier

        return Pipeline(
            [
                ("columns", category_codes(cfg.dataset)),
                ("classifier", XGBClassifier(**xgboost_params(cfg, params, device))),
            ]
        )
    return _sklearn_pipeline(cfg, kind, params or {})


def category_codes(dataset: DatasetConfig) -> Any:
    """The encoding step of tree models: numerical features pass, each categorical becomes the ordinal code
    of a category seen in training (in sorted order, so int-coded categories keep their order); an unknown
    or missing category becomes NaN, which the trees treat as missing."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    step = ColumnTransformer(
        [("num", "passthrough", dataset.numerical_features), ("cat", encoder, dataset.categorical_features)],
        verbose_feature_names_out=False,
    )
    return step.set_output(transform="pandas")


def final_estimator(model: Model) -> Any:
    """The classifier at the end of a model's pipeline (the model itself when it is not a pipeline)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


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
                # A missing category is a category of its own; an unknown one is all zeros. (No imputer:
                # on text columns it holds a numpy.dtype, which the registry's skops check refuses.)
                ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ds.categorical_features),
            ]
        )
        clf: Any = LogisticRegression(max_iter=1000, random_state=seed)
    elif kind == "hist_gradient_boosting":
        columns = category_codes(ds)
        clf = HistGradientBoostingClassifier(
            categorical_features=ds.categorical_features or None, random_state=seed
        )
    else:
        raise ConfigError(
            f"unknown model kind {kind!r}: use xgboost, logistic_regression or hist_gradient_boosting"
        )
    try:
        clf.set_params(**params)
    except ValueError as exc:
        raise ConfigError(f"model.params do not fit {type(clf).__name__}: {exc}") from exc
    return Pipeline([("columns", columns), ("classifier", clf)])
