"""Monitoring signals: what changed between the champion's reference data and the live window.

Four signals, each a small typed record that says whether it fired and on what evidence:
covariate shift (per-feature Evidently drift tests), prediction drift (the model's probabilities),
prior shift (the positive rate of arrived labels) and performance (accuracy on arrived labels against
the champion's evaluation at promotion). Feature drift alone cannot see concept drift: only performance
on arriving labels does, so the performance signal also estimates when the drop began.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ctcd import cadence, columns
from ctcd.config import DatasetConfig, DriftPolicyConfig
from ctcd.drift_report import ColumnDrift, ColumnKind, column_drift
from ctcd.features import is_positive
from tasks.dataset import join_labels
from tasks.evaluation import THRESHOLD

PROBABILITY = columns.PROBABILITY
PREDICTION = columns.PREDICTION  # 1 when the model predicted positive_label, else 0
SERVED_AT = columns.SERVED_AT
MODEL_VERSION = columns.MODEL_VERSION
CHAMPION_VERSION = columns.CHAMPION_VERSION
CHAMPION_PROBABILITY = columns.CHAMPION_PROBABILITY
BATCH = columns.BATCH  # the batch a prediction was served in (ctcd/cadence.py), added by monitoring
SIGNALS = ("covariate_shift", "prediction_drift", "prior_shift", "performance")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class CovariateShift(_Record):
    """Per-feature drift; fires when the share of drifted features reaches the configured share."""

    columns: list[ColumnDrift]
    drifted: list[str]
    share: float
    threshold: float
    fired: bool


class PredictionDrift(_Record):
    """Drift of the model's output probabilities between reference and live traffic."""

    evaluated: bool
    method: str | None = None
    score: float | None = None
    threshold: float | None = None
    fired: bool = False


class PriorShift(_Record):
    """Change of the positive-label rate, once enough labels have arrived."""

    evaluated: bool
    labelled_rows: int
    reference_rate: float | None = None
    current_rate: float | None = None
    change: float | None = None
    threshold: float
    fired: bool = False


class BatchScore(_Record):
    """Accuracy of the served predictions of one batch, on the rows whose labels have arrived."""

    batch: str
    rows: int
    accuracy: float


class Performance(_Record):
    """Accuracy (and ROC AUC) on arrived labels against the champion's evaluation at promotion."""

    evaluated: bool
    labelled_rows: int
    metrics: dict[str, float] = Field(default_factory=dict)
    baseline: dict[str, float] = Field(default_factory=dict)
    accuracy_drop: float | None = None
    threshold: float
    fired: bool = False
    onset: str | None = Field(default=None, description="the first batch of the accuracy drop")
    batches: list[BatchScore] = Field(default_factory=list)
    note: str | None = None


class MonitoringSignals(_Record):
    """Everything the retraining policy needs to know about one monitored window."""

    window_start: str = Field(description="the first batch of the monitored window")
    window_end: str = Field(description="its last batch (the current one)")
    reference_rows: int
    current_rows: int
    covariate_shift: CovariateShift
    prediction_drift: PredictionDrift
    prior_shift: PriorShift
    performance: Performance

    @property
    def fired(self) -> list[str]:
        """Names of the signals that fired, in a fixed order."""
        return [name for name in SIGNALS if getattr(self, name).fired]


def feature_kinds(dataset: DatasetConfig) -> dict[str, ColumnKind]:
    """Each feature's drift kind: int-coded categoricals are declared categorical, not numerical."""
    kinds: dict[str, ColumnKind] = dict.fromkeys(dataset.numerical_features, "numerical")
    kinds.update(dict.fromkeys(dataset.categorical_features, "categorical"))
    return kinds


def drift_methods(drift: DriftPolicyConfig) -> dict[ColumnKind, str | None]:
    """The Evidently method per column kind ("auto" lets Evidently choose by reference size)."""

    def method(name: str) -> str | None:
        return None if name == "auto" else name

    return {"numerical": method(drift.numerical_method), "categorical": method(drift.categorical_method)}


def feature_thresholds(dataset: DatasetConfig, drift: DriftPolicyConfig) -> dict[str, float | None]:
    """The drift threshold of each feature (per-column overrides first)."""
    return {c: drift.column_thresholds.get(c, drift.feature_threshold) for c in dataset.features}


def covariate_shift(
    reference: pd.DataFrame, current: pd.DataFrame, dataset: DatasetConfig, drift: DriftPolicyConfig
) -> CovariateShift:
    """Test every feature for drift; fire when the share of drifted features reaches `feature_drift_share`."""
    columns = column_drift(
        reference, current, feature_kinds(dataset), drift_methods(drift), feature_thresholds(dataset, drift)
    )
    drifted = [c.column for c in columns if c.drifted]
    share = len(drifted) / len(columns) if columns else 0.0
    return CovariateShift(
        columns=columns,
        drifted=drifted,
        share=share,
        threshold=drift.feature_drift_share,
        fired=bool(columns) and share >= drift.feature_drift_share,
    )


def prediction_drift(
    reference: pd.DataFrame, current: pd.DataFrame, drift: DriftPolicyConfig
) -> PredictionDrift:
    """Test the distribution of the model's probabilities for drift (numerical method)."""
    if PROBABILITY not in reference or PROBABILITY not in current:
        return PredictionDrift(evaluated=False)
    tests = column_drift(
        reference,
        current,
        {PROBABILITY: "numerical"},
        drift_methods(drift),
        {PROBABILITY: drift.prediction_drift_threshold},
    )
    if not tests:
        return PredictionDrift(evaluated=False)
    test = tests[0]
    return PredictionDrift(
        evaluated=True, method=test.method, score=test.score, threshold=test.threshold, fired=test.drifted
    )


def prior_shift(
    reference: pd.DataFrame, labelled: pd.DataFrame, dataset: DatasetConfig, drift: DriftPolicyConfig
) -> PriorShift:
    """Compare the positive rate of arrived labels with the reference's; needs `min_labelled_rows`."""
    rows = len(labelled)
    if rows < drift.min_labelled_rows or dataset.target not in reference:
        return PriorShift(evaluated=False, labelled_rows=rows, threshold=drift.prior_shift_threshold)
    ref_rate = float(is_positive(reference[dataset.target], dataset.positive_label).mean())
    cur_rate = float(is_positive(labelled[dataset.target], dataset.positive_label).mean())
    change = cur_rate - ref_rate
    return PriorShift(
        evaluated=True,
        labelled_rows=rows,
        reference_rate=ref_rate,
        current_rate=cur_rate,
        change=change,
        threshold=drift.prior_shift_threshold,
        fired=abs(change) >= drift.prior_shift_threshold,
    )


def labelled_predictions(
    predictions: pd.DataFrame, labels: pd.DataFrame, dataset: DatasetConfig
) -> pd.DataFrame:
    """The served predictions whose labels have arrived (`tasks.dataset.join_labels`), with their batch in
    `BATCH` (the served date when the predictions carry no batch)."""
    joined = join_labels(predictions, labels, dataset)
    if BATCH not in joined:
        joined[BATCH] = pd.to_datetime(joined[SERVED_AT], utc=True).dt.strftime("%Y-%m-%d")
    return joined


def batch_accuracy(labelled: pd.DataFrame, dataset: DatasetConfig) -> list[BatchScore]:
    """Accuracy of each batch of the labelled predictions, oldest first."""
    if labelled.empty:
        return []
    correct = labelled[PREDICTION].astype(int) == is_positive(
        labelled[dataset.target], dataset.positive_label
    )
    by_batch = correct.groupby(labelled[BATCH].astype(str)).agg(["size", "mean"])
    return [
        BatchScore(
            batch=batch, rows=int(by_batch.loc[batch, "size"]), accuracy=float(by_batch.loc[batch, "mean"])
        )
        for batch in cadence.ordered(by_batch.index)
    ]


def latest_batches(labelled: pd.DataFrame, batches: int, min_rows: int = 0) -> pd.DataFrame:
    """The labelled rows of the latest `batches` batches that have labels, reaching further back (within
    what `labelled` holds) while those hold fewer than `min_rows` rows: a signal on small batches is
    judged on enough of the latest labels rather than not at all."""
    if labelled.empty:
        return labelled
    keys = labelled[BATCH].astype(str)
    ordered = cadence.ordered(keys.unique())
    sizes = keys.value_counts()
    first = max(0, len(ordered) - batches)
    while first > 0 and int(sizes[ordered[first:]].sum()) < min_rows:
        first -= 1
    return labelled[keys.isin(ordered[first:])]


def estimate_onset(scores: list[BatchScore], floor: float) -> str | None:
    """The first batch of the latest unbroken run of batches whose accuracy is below `floor` (None if the
    last batch is above it): where a retraining window should restart after a concept drift."""
    onset: str | None = None
    for score in scores:
        onset = (onset or score.batch) if score.accuracy < floor else None
    return onset


def performance(
    labelled: pd.DataFrame, baseline: dict[str, float], dataset: DatasetConfig, drift: DriftPolicyConfig
) -> Performance:
    """Score the latest `window_batches` labelled batches against the champion's evaluation; fire on an
    accuracy drop of at least `accuracy_drop`, and estimate the drop's onset from the batches' accuracies."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    scores = batch_accuracy(labelled, dataset)
    base = {k: float(v) for k, v in baseline.items() if isinstance(v, int | float)}
    recent = latest_batches(labelled, drift.window_batches, drift.min_labelled_rows)
    rows = len(recent)
    common = {"labelled_rows": rows, "baseline": base, "threshold": drift.accuracy_drop, "batches": scores}
    if rows < drift.min_labelled_rows:
        return Performance(
            evaluated=False, note=f"{rows} labelled rows, need {drift.min_labelled_rows}", **common
        )
    if "accuracy" not in base:
        return Performance(evaluated=False, note="the champion's evaluation has no accuracy", **common)
    y_true = is_positive(recent[dataset.target], dataset.positive_label).astype(int)
    metrics = {"accuracy": float(accuracy_score(y_true, recent[PREDICTION].astype(int)))}
    if y_true.nunique() == 2 and PROBABILITY in recent:
        metrics["roc_auc"] = float(roc_auc_score(y_true, recent[PROBABILITY]))
    drop = base["accuracy"] - metrics["accuracy"]
    fired = drop >= drift.accuracy_drop
    floor = base["accuracy"] - drift.accuracy_drop
    return Performance(
        evaluated=True,
        metrics=metrics,
        accuracy_drop=drop,
        fired=fired,
        onset=estimate_onset(scores, floor) if fired else None,
        **common,
    )


def scored_by(predictions: pd.DataFrame, version: str) -> pd.DataFrame:
    """The logged rows `version` scored, as it scored them: the rows it answered, and the rows of a rollout
    (shadow or canary) another version answered while `version` was the champion, with the champion's
    probability (`CHAMPION_PROBABILITY`) and the prediction it gives (at `THRESHOLD`) in place of the
    answer's. During a canary the champion's monitoring so keeps the rows the candidate answered."""
    answered = predictions[MODEL_VERSION].astype(str) == version
    if CHAMPION_VERSION not in predictions or CHAMPION_PROBABILITY not in predictions:
        return predictions[answered]
    champion = predictions[CHAMPION_VERSION].astype(str) == version
    other = ~answered & champion & predictions[CHAMPION_PROBABILITY].notna()
    if not other.any():
        return predictions[answered]
    out = predictions[answered | other].copy()
    rescored = other[answered | other]
    proba = out.loc[rescored, CHAMPION_PROBABILITY].astype("float64")
    out[PROBABILITY] = out[PROBABILITY].astype("float64")
    out.loc[rescored, PROBABILITY] = proba
    # The label the champion would have answered (serving takes the likelier class: the same but at 0.5).
    out.loc[rescored, PREDICTION] = (proba >= THRESHOLD).astype(out[PREDICTION].dtype)
    return out


def compute_signals(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    labelled: pd.DataFrame,
    baseline: dict[str, float],
    dataset: DatasetConfig,
    drift: DriftPolicyConfig,
    window: tuple[str, str],
    model_version: str | None = None,
) -> MonitoringSignals:
    """All four signals of one window.

    `current`: the logged predictions of the window (features, probability, prediction);
    `labelled`: logged predictions joined with arrived labels (`labelled_predictions`), over the lookback
    used to date a performance drop; `window`: the first and last batch of `current`; `baseline`: the
    champion's evaluation metrics at promotion. With `model_version`, prediction drift and performance only
    look at the rows that version scored, with its own probabilities (`scored_by`).
    """
    if model_version is not None:
        current_model = scored_by(current, model_version)
        labelled = scored_by(labelled, model_version)
    else:
        current_model = current
    recent = latest_batches(labelled, drift.window_batches, drift.min_labelled_rows)
    return MonitoringSignals(
        window_start=window[0],
        window_end=window[1],
        reference_rows=len(reference),
        current_rows=len(current),
        covariate_shift=covariate_shift(reference, current, dataset, drift),
        prediction_drift=prediction_drift(reference, current_model, drift),
        prior_shift=prior_shift(reference, recent, dataset, drift),
        performance=performance(labelled, baseline, dataset, drift),
    )


def signal_metrics(signals: MonitoringSignals) -> dict[str, float]:
    """The signals' numbers, flat, for a metrics store (only those that were evaluated)."""
    out: dict[str, float] = {
        "feature_drift_share": signals.covariate_shift.share,
        "drifted_features": float(len(signals.covariate_shift.drifted)),
        "current_rows": float(signals.current_rows),
    }
    out |= {f"drift_{c.column}": c.score for c in signals.covariate_shift.columns}
    if signals.prediction_drift.score is not None:
        out["prediction_drift"] = signals.prediction_drift.score
    if signals.prior_shift.change is not None:
        out["prior_shift"] = signals.prior_shift.change
    perf = signals.performance
    out["labelled_rows"] = float(perf.labelled_rows)
    out |= {f"live_{name}": value for name, value in perf.metrics.items()}
    if perf.accuracy_drop is not None:
        out["accuracy_drop"] = perf.accuracy_drop
    return out
