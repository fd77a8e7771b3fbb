"""The CT loop's decisions as plain functions with typed records: one library for the flows and the replay.

`flows/training.py` and `flows/monitoring.py` call these steps and add orchestration (Prefect tasks,
caching, retries), tracking (MLflow) and serving around them; `tasks/replay.py` (`ctcd backtest`) calls the
same steps with a simulated clock and an in-memory registry. A change to how ctcd windows, trains, gates or
decides is made here once and is what both run.

Training: `training_split` (labelled batches -> time split) -> `fit` (search + baseline, with its
`TrainingCost`) -> `evaluate` (holdout reports) -> `gate` (against the champion, or the first-model rule
against the baseline when nothing serves yet).
Monitoring: `windows` (current window and labelled look-back) -> `signals` (drift signals on logged
predictions joined with arrived labels) -> `policy_decision` (the retraining policy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ctcd.cadence import Timeline
from ctcd.config import CtcdConfig
from tasks import dataset, evaluation, model_gate, training
from tasks.dataset import BatchInput, Split
from tasks.drift import BATCH, MonitoringSignals, compute_signals, labelled_predictions
from tasks.model import Model
from tasks.policy import PolicyState, RetrainDecision, decide

# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingCost:
    """What one training cost: CPU seconds (process time), GPU seconds (wall time of the fit on cuda), the
    rows it fitted on, and money at `training.cost_per_cpu_hour` / `training.cost_per_gpu_hour`."""

    cpu_seconds: float
    gpu_seconds: float
    wall_seconds: float
    rows: int
    money: float

    def metrics(self) -> dict[str, float]:
        """As MLflow metrics."""
        return {
            "cost_cpu_seconds": self.cpu_seconds,
            "cost_gpu_seconds": self.gpu_seconds,
            "cost_wall_seconds": self.wall_seconds,
            "cost_rows": float(self.rows),
            "cost_money": self.money,
        }


def training_cost(
    cfg: CtcdConfig, cpu_seconds: float, wall_seconds: float, device: str, rows: int
) -> TrainingCost:
    """The cost record of a fit that used `cpu_seconds` of process time and `wall_seconds` on `device`."""
    gpu_seconds = wall_seconds if device == "cuda" else 0.0
    money = (
        cpu_seconds / 3600 * cfg.training.cost_per_cpu_hour
        + gpu_seconds / 3600 * cfg.training.cost_per_gpu_hour
    )
    return TrainingCost(cpu_seconds, gpu_seconds, wall_seconds, rows, money)


@dataclass(frozen=True)
class Fitted:
    """The search's result and the baseline fitted on one split, with what fitting them cost."""

    result: training.SearchResult
    baseline: Model = field(repr=False)
    cost: TrainingCost


@dataclass(frozen=True)
class Evaluated:
    """Holdout reports and positive-class probabilities of the search's best model and the baseline."""

    report: evaluation.EvaluationReport
    proba: np.ndarray = field(repr=False)
    baseline_report: evaluation.EvaluationReport
    baseline_proba: np.ndarray = field(repr=False)


def training_split(inputs: Sequence[BatchInput], cfg: CtcdConfig) -> Split:
    """The window's labelled batches as one frame, split in time order (train, validation, holdout)."""
    return dataset.time_split(dataset.training_frame(inputs, cfg.dataset), cfg.training)


def fit(cfg: CtcdConfig, split: Split, device: training.DeviceChoice) -> Fitted:
    """The budgeted search (on Dask when `orchestration.dask`/`dask_address` ask for it) and the baseline on
    the split, and their cost (on Dask: this process's CPU only)."""
    cpu, wall = time.process_time(), time.perf_counter()
    if cfg.orchestration.uses_dask:
        from tasks.distributed_training import search_on_dask

        result = search_on_dask(cfg, split, device)
    else:
        result = training.search(cfg, split, device)
    baseline = training.fit_baseline(cfg, split)
    rows = len(split.train) + len(split.validation)
    cost = training_cost(
        cfg, time.process_time() - cpu, time.perf_counter() - wall, result.device.device, rows
    )
    return Fitted(result, baseline, cost)


def evaluate(fitted: Fitted, split: Split, cfg: CtcdConfig) -> Evaluated:
    """Both models on the holdout."""
    report, proba = evaluation.evaluate(fitted.result.best.model, split.test, cfg)
    baseline_report, baseline_proba = evaluation.evaluate(fitted.baseline, split.test, cfg)
    return Evaluated(report, proba, baseline_report, baseline_proba)


def gate_metric(cfg: CtcdConfig, triggering: Sequence[str] = ()) -> str:
    """The metric the gate judges a candidate on: `gates.model.primary_metric`, except for a retraining
    the performance signal triggered, which is judged on accuracy, the metric whose drop the policy
    watched. A drift that keeps the ranking but moves the decision boundary (a new threshold, a new
    prior) costs accuracy while ROC AUC barely moves, so a candidate that fixes it would not be blessed
    on ROC AUC."""
    return "accuracy" if "performance" in triggering else cfg.gates.model.primary_metric


def gate(
    cfg: CtcdConfig,
    split: Split,
    evaluated: Evaluated,
    champion_proba: np.ndarray | None,
    candidate_version: str | None = None,
    champion_version: str | None = None,
    metric: str | None = None,
    baseline_competes: bool = False,
) -> model_gate.GateDecision:
    """The model gate: the candidate against the champion's probabilities on the same holdout; with no
    champion (`champion_proba` None), against the baseline, with the first-model rule (`chosen`: the
    better of candidate and baseline that clears the floors, None when neither does). `metric`: judge on
    this metric instead of the primary one (`gate_metric`); the floors stay as configured.

    `baseline_competes` (on a window restarted at a drift's onset, `competes_with_baseline`): the baseline
    is judged against the champion by the same gate and served instead of the candidate when it passes
    and scores better (`model_gate.choose_contender`, `chosen` "baseline"). A restarted window holds only
    the rows since the onset, where a simple model often learns the new concept better than the search's."""
    if metric is not None and metric != cfg.gates.model.primary_metric:
        judged = cfg.gates.model.model_copy(update={"primary_metric": metric})
        cfg = cfg.model_copy(update={"gates": cfg.gates.model_copy(update={"model": judged})})
    if champion_proba is None:
        decision = model_gate.decide_on_holdout(
            cfg,
            split.test,
            evaluated.proba,
            evaluated.baseline_proba,
            evaluated.report,
            "baseline",
            candidate_version,
            None,
        )
        return model_gate.choose_first(decision)
    decision = model_gate.decide_on_holdout(
        cfg,
        split.test,
        evaluated.proba,
        champion_proba,
        evaluated.report,
        "champion",
        candidate_version,
        champion_version,
    )
    if not baseline_competes:
        return decision
    rival = model_gate.decide_on_holdout(
        cfg,
        split.test,
        evaluated.baseline_proba,
        champion_proba,
        evaluated.baseline_report,
        "champion",
        None,
        champion_version,
    )
    return model_gate.choose_contender(decision, rival)


def competes_with_baseline(window_start: str | None) -> bool:
    """Whether the baseline competes with the candidate at the gate: on a window restarted at an onset."""
    return window_start is not None


def served_model(decision: model_gate.GateDecision) -> str | None:
    """Which model the decision puts in service: "candidate", "baseline" (the first model, or the baseline
    that won on a restarted window) or None."""
    if decision.chosen == "baseline":
        return "baseline"
    if decision.passed:
        return "candidate"
    return decision.chosen if decision.reference_kind == "baseline" else None


def served_note(decision: model_gate.GateDecision) -> str:
    """Why the decision serves what it serves, in one line (the promotion's reason)."""
    if decision.reference_kind == "champion" and decision.chosen == "baseline":
        return f"the baseline won on the restarted window, {decision.summary()}"
    if decision.passed:
        return f"gate passed, {decision.summary()}"
    return f"first model ({decision.chosen}, clears the floors), {decision.summary()}"


# --------------------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class Windows:
    """The batches one monitoring run looks at, oldest first, both ending with the current batch."""

    current: list[str]
    lookback: list[str] = field(default_factory=list)

    @property
    def batch(self) -> str:
        """The current (monitored) batch."""
        return self.current[-1]


def windows(cfg: CtcdConfig, timeline: Timeline, batch: str) -> Windows:
    """The current window (the last `drift.window_batches` batches) and the labelled look-back (as many as
    a training window, and at least the current window plus the label delay), both ending with `batch`."""
    lookback = max(cfg.training.window_batches, cfg.drift.window_batches + cfg.dataset.label_delay_batches)
    return Windows(timeline.last(batch, cfg.drift.window_batches), timeline.last(batch, lookback))


def current_window(predictions: pd.DataFrame, batches: list[str]) -> pd.DataFrame:
    """The predictions served in `batches` (by their `BATCH`)."""
    return predictions[predictions[BATCH].isin(batches)]


def signals(
    cfg: CtcdConfig,
    window: Windows,
    champion_version: str,
    reference: pd.DataFrame,
    baseline: dict[str, float],
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
) -> tuple[MonitoringSignals, pd.DataFrame]:
    """The current window's drift signals against the champion's reference, and the labelled predictions
    of the look-back they were computed on (`predictions` carry their batch in `BATCH`)."""
    labelled = labelled_predictions(predictions, labels, cfg.dataset)
    found = compute_signals(
        reference,
        current_window(predictions, window.current),
        labelled,
        baseline,
        cfg.dataset,
        cfg.drift,
        (window.current[0], window.current[-1]),
        model_version=champion_version,
    )
    return found, labelled


def new_labelled_rows(labelled: pd.DataFrame, state: PolicyState, timeline: Timeline | None = None) -> int:
    """Labelled predictions served in the batch of the last retraining or later (all of the lookback if
    there was none)."""
    timeline = timeline or Timeline()
    if state.last_retrain is None or labelled.empty:
        return len(labelled)
    since = timeline.position(state.last_retrain)
    if since is None:
        return len(labelled)
    batches = labelled[BATCH].astype(str)
    positions = {b: timeline.position(b) for b in batches.unique()}
    return int(batches.map(lambda b: (positions[b] if positions[b] is not None else since) >= since).sum())


def policy_decision(
    cfg: CtcdConfig,
    found: MonitoringSignals,
    labelled: pd.DataFrame,
    state: PolicyState,
    batch: str,
    timeline: Timeline,
) -> tuple[RetrainDecision, PolicyState]:
    """The retraining policy's decision on the signals (`state`: after `record_outcome` of the open
    episode's retraining)."""
    return decide(
        found,
        state,
        cfg.drift,
        batch,
        new_labelled_rows(labelled, state, timeline),
        cfg.training.window_batches,
        timeline,
    )


def numeric_metrics(report: evaluation.EvaluationReport) -> dict[str, float]:
    """The report's numeric metrics (what monitoring reads back as the champion's level at promotion)."""
    return {k: float(v) for k, v in report.metrics.items() if isinstance(v, int | float)}
