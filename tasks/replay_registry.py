"""The replay's in-memory registry: the champion with what monitoring reads from the registry, and one
training of a replayed policy as the training flow runs it minus MLflow (window, split, fit, evaluate, gate;
`tasks/ct_steps.py`), with the gate's numbers re-checked from the raw probabilities.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ctcd.config import CtcdConfig
from ctcd.errors import WorkFailed
from tasks import ct_steps, dataset, evaluation, model_gate, training
from tasks.evaluation import GREATER_IS_BETTER, metric_value
from tasks.model import Model, features_frame, positive_proba, target_vector
from tasks.replay_history import ReplayBatch, Scenario


@dataclass
class Champion:
    """The model serving now, with what monitoring reads from the registry: reference and holdout metrics."""

    version: str
    model: Model = field(repr=False)
    reference: pd.DataFrame = field(repr=False)
    baseline: dict[str, float]
    trained_on: int


@dataclass(frozen=True)
class TrainingRecord:
    """One training of a policy: its window, the gate's decision, the re-checked holdout numbers, cost."""

    day: int
    batch: str
    reason: str
    version: str
    window: list[str]
    window_start: str | None
    reference_kind: str
    passed: bool
    served: str | None  # what the decision put in service: candidate, baseline (first model) or None
    summary: str
    triggering: list[str]  # the drift signals that triggered it (empty: scheduled or initial)
    candidate_metric: float  # the gate's metric on the holdout, recomputed from the probabilities
    reference_metric: float
    worse: bool  # served a model below its reference by more than gates.model.max_regression
    seconds: float  # the whole training: window, fits, holdout evaluation, gate
    cost: ct_steps.TrainingCost | None
    fit_reused: bool
    decision: model_gate.GateDecision | None = field(default=None, repr=False)
    error: str | None = None
    rollout: str | None = None  # "shadow" | "canary": `served` went to a rollout, the online gate decides


class FitCache:
    """Fitted search results by training-data digest: the training flow caches its search the same way,
    so two policies training on the same window get the same model. The cost is charged every time."""

    def __init__(self) -> None:
        self._fits: dict[str, ct_steps.Fitted] = {}

    def fit(
        self, cfg: CtcdConfig, split: dataset.Split, device: training.DeviceChoice
    ) -> tuple[ct_steps.Fitted, bool]:
        """The search and baseline for this split, and whether they were reused."""
        if split.digest in self._fits:
            return self._fits[split.digest], True
        fitted = ct_steps.fit(cfg, split, device)
        self._fits[split.digest] = fitted
        return fitted, False


def training_window(
    scenario: Scenario, today: int, window_start: str | None
) -> tuple[list[ReplayBatch], dataset.Split]:
    """The validated batches whose labels arrived by `today` (`tasks.dataset.select_window`), split."""
    cfg = scenario.cfg
    delay = cfg.dataset.label_delay_batches
    usable = {d.batch_id: d for d in scenario.days[:today] if d.rejected is None}
    labelled = {d.batch_id for d in usable.values() if d.day + delay <= today}
    chosen = dataset.select_window(list(usable), labelled, cfg.training.window_batches, window_start)
    if not chosen:
        raise WorkFailed(f"no validated batch with arrived labels by batch {today}")
    inputs = [
        dataset.BatchInput(
            b, b, "replay", dataset.join_labels(usable[b].features, usable[b].labels, cfg.dataset)
        )
        for b in chosen
    ]
    return [usable[b] for b in chosen], ct_steps.training_split(inputs, cfg)


def train_and_gate(
    scenario: Scenario,
    today: int,
    window_start: str | None,
    champion: Champion | None,
    version: str,
    reason: str,
    cache: FitCache,
    device: training.DeviceChoice,
    triggering: list[str] | None = None,
) -> tuple[TrainingRecord, Champion | None]:
    """The training flow's steps minus MLflow: window, split, fit, evaluate, gate; the new champion when
    the decision puts a model in service (None otherwise)."""
    cfg = scenario.cfg
    gate_cfg = cfg.gates.model
    t0 = time.perf_counter()
    batches, split = training_window(scenario, today, window_start)
    fitted, reused = cache.fit(cfg, split, device)
    t1 = time.perf_counter()
    evaluated = ct_steps.evaluate(fitted, split, cfg)
    champion_proba = (
        None if champion is None else positive_proba(champion.model, features_frame(split.test, cfg.dataset))
    )
    metric = ct_steps.gate_metric(cfg, triggering or [])
    decision = ct_steps.gate(
        cfg,
        split,
        evaluated,
        champion_proba,
        version,
        champion.version if champion else None,
        metric,
        ct_steps.competes_with_baseline(window_start),
    )
    served = ct_steps.served_model(decision)
    t2 = time.perf_counter()
    # Re-check the verdict from the raw probabilities rather than trusting the gate's record.
    y = target_vector(split.test, cfg.dataset).to_numpy()
    reference_proba = evaluated.baseline_proba if champion_proba is None else champion_proba
    cand = safe_metric(metric, y, evaluated.proba)
    ref = safe_metric(metric, y, reference_proba)
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    served_value = {"candidate": cand, "baseline": safe_metric(metric, y, evaluated.baseline_proba)}.get(
        served or "", ref
    )
    seconds = (t2 - t1) + (fitted.cost.wall_seconds if reused else t1 - t0)
    record = TrainingRecord(
        day=today,
        batch=scenario.days[today - 1].batch_id,
        reason=reason,
        version=version,
        window=[b.batch_id for b in batches],
        window_start=window_start,
        reference_kind=decision.reference_kind,
        passed=decision.passed,
        served=served,
        summary=decision.summary(),
        triggering=list(triggering or []),
        candidate_metric=cand,
        reference_metric=ref,
        worse=champion is not None
        and served is not None
        and sign * (served_value - ref) < -gate_cfg.max_regression,
        seconds=seconds,
        cost=fitted.cost,
        fit_reused=reused,
        decision=decision,
    )
    if served is None:
        return record, None
    model = fitted.result.best.model if served == "candidate" else fitted.baseline
    report = evaluated.report if served == "candidate" else evaluated.baseline_report
    train_rows = pd.concat([split.train, split.validation], ignore_index=True)
    new = Champion(
        version=version,
        model=model,
        reference=evaluation.reference_sample(model, train_rows, cfg, cfg.training.reference_rows),
        baseline=ct_steps.numeric_metrics(report),
        trained_on=today,
    )
    return record, new


def safe_metric(name: str, y: np.ndarray, proba: np.ndarray) -> float:
    """The metric of `proba` against `y`; NaN where it is undefined (ROC AUC on one class)."""
    try:
        return float(metric_value(name, y, proba))
    except ValueError:  # one class only: ROC AUC is undefined
        return math.nan


def failed_record(
    scenario: Scenario, today: int, reason: str, version: str, window_start: str | None, error: str
) -> TrainingRecord:
    """The record of a training that failed (no window to train on): nothing served, no cost."""
    return TrainingRecord(
        day=today,
        batch=scenario.days[today - 1].batch_id,
        reason=reason,
        version=version,
        window=[],
        window_start=window_start,
        reference_kind="-",
        passed=False,
        served=None,
        summary="",
        triggering=[],
        candidate_metric=math.nan,
        reference_metric=math.nan,
        worse=False,
        seconds=0.0,
        cost=None,
        fit_reused=False,
        error=error,
    )
