"""A training run's window and records: which batches it trains on (`training_window`), what it logs to
MLflow (`candidate_run`, `baseline_run`, `run_tags`), what it reports (`TrainingReport`), and how the
report reads in Prefect artifacts and promotion reasons.

Plain functions and records, no I/O and no Prefect: `flows/training.py` wires them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel

from ctcd.config import CtcdConfig
from ctcd.ct_inputs import BatchFile
from ctcd.errors import WorkFailed
from ctcd.tracking import CandidateRun, ChildRun, LoggedBatch
from tasks import ct_steps, dataset, evaluation, model_gate, training
from tasks.ct_steps import TrainingCost
from tasks.dataset import BatchInput, Split
from tasks.model import Model, baseline_kind, candidate_kind, features_frame, target_vector, xgboost_params


class TrainingReport(BaseModel):
    """What one training run produced and decided."""

    model_name: str
    version: str
    run_id: str
    promoted: bool
    champion_version: str | None
    previous_champion: str | None
    baseline_version: str | None = None
    decision: model_gate.GateDecision
    metrics: dict[str, float | None]
    device: str
    batches: list[str]
    rows: dict[str, int]
    reason: str
    seconds: float
    cost: dict[str, float] = {}
    rollout: str | None = None
    """"shadow" or "canary" when the blessed model goes to a rollout instead of being promoted (the online
    gate promotes it later); None when it was promoted at once, or not blessed."""
    rollout_version: str | None = None
    """The version in rollout (the candidate, or the baseline that won on a restarted window)."""

    def summary(self) -> str:
        """One line: the version, why it was trained, the gate's verdict and what serves now (the training
        flow run's outcome in its logs)."""
        if self.promoted:
            served = f"promoted: champion v{self.champion_version}"
        else:
            served = f"not promoted; champion stays v{self.champion_version or '-'}"
        return f"training v{self.version} ({self.reason}): gate {self.decision.summary()}; {served}"


def training_window(
    cfg: CtcdConfig, files: list[BatchFile], window_start: str | None, where: Path
) -> list[BatchFile]:
    """The training window: the latest `training.window_batches` of the validated, labelled batch files
    (none before `window_start`); fails when there is none (`where`: the validated area, for the message)."""
    by_id = {f.batch_id: f for f in files}
    chosen = dataset.select_window(list(by_id), set(by_id), cfg.training.window_batches, window_start)
    if not chosen:
        raise WorkFailed(
            f"no validated batch with arrived labels in {where}"
            + (f" on or after {window_start}" if window_start else "")
            + ": run `ctcd data land` and `ctcd validate` (or `ctcd run`) first"
        )
    return [by_id[b] for b in chosen]


def run_tags(
    cfg: CtcdConfig,
    reason: str,
    trigger: dict[str, Any] | None,
    window_start: str | None,
    device: training.DeviceChoice,
) -> dict[str, str]:
    """The run's tags: why it trained (reason, the batch whose monitoring triggered it and the event's
    evidence, window start) and on what. The version gets reason and trigger (`tracking.VERSION_TAGS`)."""
    return {
        "ctcd.reason": reason,
        "ctcd.trigger": str((trigger or {}).get("batch") or "-"),
        "ctcd.trigger.event": json.dumps(trigger or {}, sort_keys=True, default=str)[:4900],
        "ctcd.window_start": window_start or "-",
        "ctcd.device": device.device,
        "ctcd.device_reason": device.reason,
        "ctcd.model_kind": candidate_kind(cfg),
    }


def candidate_run(
    cfg: CtcdConfig,
    inputs: list[BatchInput],
    split: Split,
    result: training.SearchResult,
    cost: TrainingCost,
    report: evaluation.EvaluationReport,
    baseline_report: evaluation.EvaluationReport,
    proba: Any,
    tags: dict[str, str],
) -> CandidateRun:
    """What the candidate's run logs: the best model of the search, its parameters, holdout metrics (and
    the baseline's), the search's candidates as child runs, lineage, figures and the reference sample."""
    best = result.best
    y_test = target_vector(split.test, cfg.dataset).to_numpy()
    importance = evaluation.feature_importance(best.model, split.test, cfg)
    is_xgb = candidate_kind(cfg) == "xgboost"
    params: dict[str, Any] = {
        "model.kind": candidate_kind(cfg),
        **(xgboost_params(cfg, best.params, result.device.device) if is_xgb else best.params),
        "device": result.device.device,
        "early_stopping_rounds": cfg.model.early_stopping_rounds if is_xgb else None,
        "training.window_batches": cfg.training.window_batches,
        "training.seed": cfg.training.seed,
        "search.budget": len(result.candidates),
        "best_iteration": best.best_iteration,
        **{f"rows.{k}": v for k, v in split.rows.items()},
    }
    metrics = {
        **evaluation.flat_metrics(report),
        **evaluation.flat_metrics(baseline_report, prefix="baseline_test_"),
        f"validation_{result.metric}": best.validation_score,
        "fit_seconds": sum(c.fit_seconds for c in result.candidates),
        **cost.metrics(),
    }
    children = [
        ChildRun(
            name=f"candidate-{i}",
            params={**c.params, "best_iteration": c.best_iteration},
            metrics={f"validation_{result.metric}": c.validation_score, "fit_seconds": c.fit_seconds},
        )
        for i, c in enumerate(result.candidates)
    ]
    train_rows = pd.concat([split.train, split.validation], ignore_index=True)
    return CandidateRun(
        model=best.model,
        params=params,
        metrics=metrics,
        evaluation=report.model_dump(mode="json"),
        reference=evaluation.reference_sample(best.model, train_rows, cfg, cfg.training.reference_rows),
        input_example=features_frame(split.test.head(5), cfg.dataset),
        batches=_lineage(inputs),
        config_yaml=_config_yaml(cfg),
        tags=tags,
        figures={
            "confusion_matrix": evaluation.confusion_figure(y_test, proba),
            "calibration": evaluation.calibration_figure(y_test, proba),
            "feature_importance": evaluation.importance_figure(importance),
        },
        json_artifacts={
            "feature_importance.json": importance,
            "search.json": {
                "metric": result.metric,
                "best_index": result.best_index,
                "candidates": [
                    {
                        "params": c.params,
                        "validation_score": c.validation_score,
                        "best_iteration": c.best_iteration,
                    }
                    for c in result.candidates
                ],
            },
            "baseline_evaluation.json": baseline_report.model_dump(mode="json"),
        },
        children=children,
        run_name=f"train-{inputs[-1].batch_id}",
    )


def baseline_run(
    cfg: CtcdConfig,
    inputs: list[BatchInput],
    split: Split,
    baseline: Model,
    baseline_report: evaluation.EvaluationReport,
    baseline_proba: Any,
    tags: dict[str, str],
) -> CandidateRun:
    """The baseline logged like a candidate (same model contract, lineage and artifacts): with no champion
    and a candidate no better than it, the baseline is the first model served."""
    y_test = target_vector(split.test, cfg.dataset).to_numpy()
    train_rows = pd.concat([split.train, split.validation], ignore_index=True)
    kind = baseline_kind(cfg)
    return CandidateRun(
        model=baseline,
        params={
            "model.kind": kind,
            "training.window_batches": cfg.training.window_batches,
            "training.seed": cfg.training.seed,
            **{f"rows.{k}": v for k, v in split.rows.items()},
        },
        metrics=evaluation.flat_metrics(baseline_report),
        evaluation=baseline_report.model_dump(mode="json"),
        reference=evaluation.reference_sample(baseline, train_rows, cfg, cfg.training.reference_rows),
        input_example=features_frame(split.test.head(5), cfg.dataset),
        batches=_lineage(inputs),
        config_yaml=_config_yaml(cfg),
        tags={**tags, "ctcd.model_kind": kind, "ctcd.role": "baseline"},
        figures={
            "confusion_matrix": evaluation.confusion_figure(y_test, baseline_proba),
            "calibration": evaluation.calibration_figure(y_test, baseline_proba),
        },
        run_name=f"baseline-{inputs[-1].batch_id}",
    )


def _lineage(inputs: list[BatchInput]) -> list[LoggedBatch]:
    return [LoggedBatch(b.batch_id, b.sha256, b.source, b.frame) for b in inputs]


def _config_yaml(cfg: CtcdConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def rollout_mode(
    cfg: CtcdConfig, champion_version: str | None, decision: model_gate.GateDecision
) -> str | None:
    """The rollout the blessed model starts ("shadow" or "canary") instead of its promotion: with
    `serving.rollout` other than direct and a champion to compare it with live; None otherwise (promote at
    once, or nothing blessed)."""
    mode = cfg.serving.rollout
    if mode == "direct" or champion_version is None or ct_steps.served_model(decision) is None:
        return None
    return mode


def promotion_reason(reason: str, decision: model_gate.GateDecision) -> str:
    """Why `champion` moves: the run's reason and why the gate serves what it does (ct_steps.served_note)."""
    return f"{reason}: {ct_steps.served_note(decision)}"


def metrics_rows(report: TrainingReport, baseline: evaluation.EvaluationReport) -> list[dict[str, Any]]:
    """The holdout metrics table: the candidate against the gate's reference, and the baseline's primary."""
    d = report.decision
    rows: list[dict[str, Any]] = [
        {"metric": k, "candidate": report.metrics.get(k), d.reference_kind: d.reference_metrics.get(k)}
        for k in evaluation.METRICS
    ]
    rows.append(
        {"metric": "baseline " + d.primary_metric, "candidate": baseline.metrics.get(d.primary_metric)}
    )
    return rows


def gate_markdown(report: TrainingReport) -> str:
    """The model gate's verdict and checks, as markdown."""
    d = report.decision
    checks = "\n".join(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.detail} |" for c in d.checks)
    verdict = "promoted" if report.promoted else "not promoted"
    if report.rollout:
        verdict = f"{report.rollout} rollout of version {report.rollout_version} (the online gate decides)"
    return (
        f"## Model gate: {verdict}\n\n{d.summary()}\n\n| check | result | rule |\n|---|---|---|\n{checks}\n"
    )
