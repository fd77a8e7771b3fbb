"""Evaluation on the held-out, most recent rows: overall metrics, the same per slice, and latency."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ctcd.config import CtcdConfig
from tasks.dataset import BATCH_COLUMN
from tasks.model import Model, features_frame, final_estimator, positive_proba, target_vector

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = ("roc_auc", "log_loss", "accuracy", "f1", "brier")
GREATER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "log_loss": False, "brier": False}
THRESHOLD = 0.5
_EPS = 1e-15


class EvaluationReport(BaseModel):
    """Holdout metrics of one model: overall, per slice value, and predict latency."""

    metrics: dict[str, float | None]
    slices: dict[str, dict[str, dict[str, float | None]]]
    rows: int
    positive_rate: float
    threshold: float = THRESHOLD
    latency_ms_per_row: float
    batches: list[str] = []


def metric_value(name: str, y_true: np.ndarray, proba: np.ndarray, weight: np.ndarray | None = None) -> float:
    """One metric of positive-class probabilities; NaN where undefined (e.g. AUC on one class)."""
    from sklearn import metrics as skm

    y = np.asarray(y_true)
    p = np.clip(np.asarray(proba, dtype="float64"), _EPS, 1 - _EPS)
    if name == "roc_auc":
        if len(np.unique(y)) < 2:
            return float("nan")
        return float(skm.roc_auc_score(y, p, sample_weight=weight))
    if name == "log_loss":
        return float(skm.log_loss(y, p, labels=[0, 1], sample_weight=weight))
    if name == "brier":
        return float(np.average((p - y) ** 2, weights=weight))
    pred = (p >= THRESHOLD).astype("int64")
    if name == "accuracy":
        return float(np.average(pred == y, weights=weight))
    if name == "f1":
        return float(skm.f1_score(y, pred, zero_division=0.0, sample_weight=weight))
    raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")


def metric_values(name: str, y_true: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One metric per row of `weights` (e.g. bootstrap counts), vectorized; NaN where undefined.

    Equal to `metric_value(name, y_true, proba, w)` for each row w, without a Python loop over rows.
    """
    y = np.asarray(y_true, dtype="float64")
    p = np.clip(np.asarray(proba, dtype="float64"), _EPS, 1 - _EPS)
    W = np.atleast_2d(np.asarray(weights, dtype="float64"))
    total = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if name == "roc_auc":
            # Mann-Whitney with ties counted half: sort once, sum the weights per distinct score.
            order = np.argsort(p, kind="mergesort")
            ps, ys, Ws = p[order], y[order], W[:, order]
            starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
            pos = np.add.reduceat(Ws * ys, starts, axis=1)
            neg = np.add.reduceat(Ws * (1 - ys), starts, axis=1)
            below = np.cumsum(neg, axis=1) - neg
            den = pos.sum(axis=1) * neg.sum(axis=1)
            return np.where(den > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / den, np.nan)
        if name == "log_loss":
            return W @ -(y * np.log(p) + (1 - y) * np.log(1 - p)) / total
        if name == "brier":
            return W @ (p - y) ** 2 / total
        pred = (p >= THRESHOLD).astype("float64")
        if name == "accuracy":
            return W @ (pred == y).astype("float64") / total
        if name == "f1":
            tp, fp, fn = W @ (pred * y), W @ (pred * (1 - y)), W @ ((1 - pred) * y)
            den = 2 * tp + fp + fn
            return np.where(den > 0, 2 * tp / den, 0.0)
    raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float | None]:
    """Every metric in METRICS plus the row count; undefined values are None."""
    out: dict[str, float | None] = {}
    for name in METRICS:
        v = metric_value(name, y_true, proba)
        out[name] = None if math.isnan(v) else v
    out["rows"] = float(len(y_true))
    return out


def slice_keys(frame: pd.DataFrame, column: str, cfg: CtcdConfig) -> pd.Series:
    """The slice each row falls in: the value of a categorical column, a quartile of a numerical one."""
    values = frame[column]
    if column in cfg.dataset.numerical_features and values.nunique() > 10:
        return pd.qcut(values, q=4, duplicates="drop").astype(str)
    return values.map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v))


def slice_metrics(
    frame: pd.DataFrame, y_true: np.ndarray, proba: np.ndarray, cfg: CtcdConfig
) -> dict[str, dict[str, dict[str, float | None]]]:
    """`classification_metrics` for each value of each `dataset.slice_columns` column."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for column in cfg.dataset.slice_columns:
        keys = slice_keys(frame, column, cfg).to_numpy()
        out[column] = {
            str(k): classification_metrics(y_true[keys == k], proba[keys == k]) for k in sorted(set(keys))
        }
    return out


def predict_latency_ms(model: Model, X: pd.DataFrame, max_rows: int = 2000, repeats: int = 3) -> float:
    """Median milliseconds per row of `predict_proba` on up to `max_rows` rows."""
    sample = X.iloc[:max_rows]
    if sample.empty:
        return 0.0
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict_proba(sample)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000 / len(sample))


def evaluate(model: Model, test: pd.DataFrame, cfg: CtcdConfig) -> tuple[EvaluationReport, np.ndarray]:
    """Score a model on the holdout: the report and its positive-class probabilities."""
    X = features_frame(test, cfg.dataset)
    y = target_vector(test, cfg.dataset).to_numpy()
    proba = positive_proba(model, X)
    batches = sorted(test[BATCH_COLUMN].unique().tolist()) if BATCH_COLUMN in test else []
    report = EvaluationReport(
        metrics=classification_metrics(y, proba),
        slices=slice_metrics(test, y, proba, cfg),
        rows=len(test),
        positive_rate=float(y.mean()) if len(y) else 0.0,
        latency_ms_per_row=predict_latency_ms(model, X),
        batches=batches,
    )
    return report, proba


def reference_sample(
    model: Model, frame: pd.DataFrame, cfg: CtcdConfig, max_rows: int = 5000
) -> pd.DataFrame:
    """Up to `max_rows` training rows (features, target) with the model's `probability` and `prediction`."""
    ds = cfg.dataset
    sample = frame if len(frame) <= max_rows else frame.sample(max_rows, random_state=cfg.training.seed)
    sample = sample.sort_index()
    out = sample[[*ds.features, ds.target]].reset_index(drop=True)
    proba = positive_proba(model, features_frame(out, ds))
    out["probability"] = proba
    out["prediction"] = (proba >= THRESHOLD).astype("int64")
    return out


def feature_importance(model: Model, test: pd.DataFrame, cfg: CtcdConfig) -> dict[str, float]:
    """Importance per feature: the model's own when it has one, else permutation importance on the holdout."""
    features = cfg.dataset.features
    own = getattr(final_estimator(model), "feature_importances_", None)
    if own is not None and len(own) == len(features):
        values = np.asarray(own, dtype="float64")
    else:
        from sklearn.inspection import permutation_importance

        X = features_frame(test, cfg.dataset).iloc[:2000]
        y = target_vector(test, cfg.dataset).iloc[:2000]
        if y.nunique() < 2:
            return dict.fromkeys(features, 0.0)
        result = permutation_importance(
            model, X, y, scoring="roc_auc", n_repeats=3, random_state=cfg.training.seed
        )
        values = np.clip(result.importances_mean, 0, None)
    total = values.sum()
    if total > 0:
        values = values / total
    return {f: float(v) for f, v in sorted(zip(features, values, strict=True), key=lambda kv: -kv[1])}


# Fixed margins that fit these plots' labels: `tight_layout` would measure them with an extra draw of each
# figure, most of the cost of a plot (the figures are drawn once more when saved).
_MARGINS = {"left": 0.16, "right": 0.95, "bottom": 0.13, "top": 0.91}


def confusion_figure(y_true: np.ndarray, proba: np.ndarray) -> Figure:
    """A confusion-matrix plot at the 0.5 threshold."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true, (proba >= THRESHOLD).astype("int64"), labels=[0, 1], ax=ax, colorbar=False
    )
    ax.set_title("Holdout confusion matrix")
    fig.subplots_adjust(**_MARGINS)
    return fig


def calibration_figure(y_true: np.ndarray, proba: np.ndarray, bins: int = 10) -> Figure:
    """A reliability diagram: mean predicted probability against the observed positive rate."""
    from matplotlib.figure import Figure

    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    pred, seen = [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            pred.append(float(proba[mask].mean()))
            seen.append(float(np.asarray(y_true)[mask].mean()))
    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    ax.plot(pred, seen, marker="o", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate", title="Calibration")
    ax.legend(loc="upper left")
    fig.subplots_adjust(**_MARGINS)
    return fig


def importance_figure(importance: dict[str, float]) -> Figure:
    """A horizontal bar chart of feature importance."""
    from matplotlib.figure import Figure

    names = list(importance)[::-1]
    height = 0.35 * len(names) + 1
    fig = Figure(figsize=(5, height))
    ax = fig.subplots()
    ax.barh(names, [importance[n] for n in names])
    ax.set(xlabel="share of importance", title="Feature importance")
    # Room for the longest name at the left (under 0.085 in a character at 10 pt), 60 % of the width at most.
    longest = max((len(str(n)) for n in names), default=0)
    fig.subplots_adjust(
        left=min(0.6, (0.085 * longest + 0.25) / 5), right=0.95, bottom=0.55 / height, top=1 - 0.35 / height
    )
    return fig


def flat_metrics(report: EvaluationReport, prefix: str = "test_") -> dict[str, float]:
    """The report's defined metrics as one flat dict (for MLflow and tables)."""
    out: dict[str, Any] = {f"{prefix}{k}": v for k, v in report.metrics.items() if v is not None}
    out[f"{prefix}latency_ms_per_row"] = report.latency_ms_per_row
    return {k: float(v) for k, v in out.items()}
