"""Monitoring's records, decisions and renderings: what `flows/monitoring.py` orchestrates.

The inputs of one run (`MonitoringInputs`) and its result (`MonitoringOutcome`); whether the open drift
episode's retraining was promoted; whether to keep the Evidently report; the decision log's entries; the
drift event's payload; the verdict as table rows, markdown and MLflow tags. No I/O and no Prefect: the
workspace reads are `ctcd/ct_inputs.py` and `ctcd/policy_state.py`, the signals and the policy are
`tasks/ct_steps.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from ctcd import drift_report, events
from ctcd.cadence import Timeline
from ctcd.config import CtcdConfig
from ctcd.errors import WorkFailed
from tasks.ct_steps import Windows, current_window
from tasks.drift import (
    BATCH,
    PROBABILITY,
    MonitoringSignals,
    drift_methods,
    feature_kinds,
    feature_thresholds,
)
from tasks.online_gate import OnlineVerdict
from tasks.policy import PolicyState, RetrainDecision, training_outcome

if TYPE_CHECKING:
    from evidently.core.report import Snapshot


@dataclass(frozen=True)
class MonitoringInputs:
    """What one monitoring run looks at, already loaded (predictions carry their batch in `BATCH`)."""

    timeline: Timeline
    windows: Windows
    champion_version: str
    reference: pd.DataFrame
    baseline: dict[str, float]
    predictions: pd.DataFrame
    labels: pd.DataFrame


class MonitoringOutcome(BaseModel):
    """The result of one monitoring run, as printed by `ctcd monitor --json`."""

    batch: str
    model: str
    champion_version: str
    signals: MonitoringSignals
    decision: RetrainDecision
    report: str | None = None
    event_id: str | None = None
    evidently_summary: dict[str, Any] = {}
    online: OnlineVerdict | None = None
    """The online gate's verdict on the rollout in progress (None: no rollout)."""

    def summary(self) -> str:
        """One line: the monitored batch, which signals fired (with accuracy on arrived labels) and the
        policy's action, e.g. `monitoring batch 2026-01-08 (bank v1): no drift (accuracy 0.912); policy:
        none (...)`: the monitoring flow run's outcome in its logs."""
        s, d = self.signals, self.decision
        seen = f"drift: {', '.join(s.fired)}" if s.fired else "no drift"
        if s.performance.evaluated and "accuracy" in s.performance.metrics:
            seen += f" (accuracy {s.performance.metrics['accuracy']:.3f})"
        head = f"monitoring batch {self.batch} ({self.model} v{self.champion_version})"
        line = f"{head}: {seen}; policy: {d.action} ({d.reason})"
        if self.online is not None:
            line += f"; online gate: {self.online.action} v{self.online.candidate_version}"
        return line

    def as_payload(self) -> dict[str, Any]:
        """The JSON summary logged to MLflow against the champion's version."""
        return self.model_dump(mode="json", exclude={"report"})


def baseline_metrics(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """The champion's numeric holdout metrics at promotion, from its logged evaluation."""
    return {k: v for k, v in evaluation.get("metrics", {}).items() if isinstance(v, int | float)}


def require_served(predictions: pd.DataFrame, window: Windows, where: Path) -> None:
    """Fail when nothing was served in the current window (`where`: the prediction log, for the message)."""
    if current_window(predictions, window.current).empty:
        span = window.current[0] if len(window.current) == 1 else f"{window.current[0]} .. {window.batch}"
        raise WorkFailed(
            f"no predictions were logged in batch {span} under {where}: "
            "serve traffic (or replay the demo) before monitoring"
        )


def policy_state(logged: Mapping[str, Any] | None) -> PolicyState:
    """The policy state as read back from the decision log (the initial state before the first run)."""
    return PolicyState() if logged is None else PolicyState.model_validate(logged)


def awaits_retrain_outcome(state: PolicyState) -> bool:
    """Whether the open episode's latest retraining has no known outcome yet (then read the registry)."""
    episode = state.episode
    return episode is not None and episode.retrained_on is not None and episode.promoted is None


def retrain_outcome(
    state: PolicyState,
    model_name: str,
    alias_history: Iterable[Mapping[str, Any]],
    versions: Iterable[tuple[str, Mapping[str, str]]],
) -> bool | None:
    """Whether the open episode's latest retraining was promoted (None: not known), from the registry's
    alias history and (version, tags) of its versions, newest first.

    Matched by the monitored batch its drift event carried (`ctcd.trigger`), not by wall-clock time: the
    demo replays simulated days with an accelerated clock.
    """
    if not awaits_retrain_outcome(state):
        return None
    assert state.episode is not None and state.episode.retrained_on is not None
    champions = {
        e["version"] for e in alias_history if e.get("model") == model_name and e.get("action") != "rollback"
    }
    return training_outcome(list(versions), champions, state.episode.retrained_on)


def report_kept(cfg: CtcdConfig, decision: RetrainDecision) -> bool:
    """Whether this run renders and keeps the Evidently HTML report (the expensive part)."""
    return cfg.drift.keep_reports == "always" or (
        cfg.drift.keep_reports == "on_signal" and decision.action != "none"
    )


def evidently_report(cfg: CtcdConfig, inputs: MonitoringInputs) -> Snapshot:
    """The Evidently report of the current window against the champion's reference (not saved yet)."""
    numerical = drift_methods(cfg.drift)["numerical"]
    return drift_report.build_report(
        inputs.reference,
        current_window(inputs.predictions, inputs.windows.current).drop(columns=[BATCH]),
        feature_kinds(cfg.dataset),
        drift_methods(cfg.drift),
        feature_thresholds(cfg.dataset, cfg.drift),
        cfg.drift.feature_drift_share,
        extra={PROBABILITY: ("numerical", numerical, cfg.drift.prediction_drift_threshold)},
    )


def decision_entry(outcome: MonitoringOutcome, state: PolicyState, at: datetime) -> dict[str, Any]:
    """The decision log's entry for one run: its decision and the policy's new state."""
    return {
        "at": at.isoformat(timespec="seconds"),
        "batch": outcome.batch,
        "model": outcome.model,
        "champion_version": outcome.champion_version,
        "action": outcome.decision.action,
        "reason": outcome.decision.reason,
        "fired": outcome.decision.fired,
        "window_start": outcome.decision.window_start,
        "report": outcome.report,
        "event_id": outcome.event_id,
        "state": state.model_dump(mode="json"),
    }


def drift_payload(outcome: MonitoringOutcome) -> dict[str, Any]:
    """The drift event's payload: the training flow's parameters, plus the evidence."""
    s, d = outcome.signals, outcome.decision
    evidence = {
        "batch": outcome.batch,
        "model": outcome.model,
        "champion_version": outcome.champion_version,
        "signals": d.triggering,
        "fired": d.fired,
        "drifted_columns": s.covariate_shift.drifted,
        "performance_drop": s.performance.accuracy_drop,
        "prior_shift": s.prior_shift.change,
        "episode_started": d.episode_started,
        "report": Path(outcome.report).as_uri() if outcome.report else None,
    }
    return events.drift_payload(f"drift: {d.reason}", d.window_start, evidence)


def mlflow_tags(outcome: MonitoringOutcome) -> dict[str, str]:
    """The verdict as tags of the MLflow monitoring run."""
    d = outcome.decision
    return {
        "ctcd.monitoring.batch": outcome.batch,
        "ctcd.monitoring.action": d.action,
        "ctcd.monitoring.reason": d.reason[:4900],
        "ctcd.monitoring.fired": ",".join(d.fired) or "-",
        "ctcd.monitoring.report": outcome.report or "-",
        "ctcd.monitoring.event_id": outcome.event_id or "-",
    }


def artifact_key(name: str) -> str:
    """A Prefect artifact key from a model name (lowercase letters, digits and dashes)."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "model"


# --------------------------------------------------------------------------- the verdict, for people


def verdict_rows(s: MonitoringSignals) -> list[tuple[str, str, str]]:
    """One (signal, status, evidence) row per signal; status is FIRED, ok or not evaluated."""
    rows = [
        ("covariate shift", s.covariate_shift.fired, bool(s.covariate_shift.columns), _covariate_text(s)),
        ("prediction drift", s.prediction_drift.fired, s.prediction_drift.evaluated, _prediction_text(s)),
        ("prior shift", s.prior_shift.fired, s.prior_shift.evaluated, _prior_text(s)),
        ("performance", s.performance.fired, s.performance.evaluated, _performance_text(s)),
    ]
    return [
        (name, "FIRED" if fired else ("ok" if evaluated else "not evaluated"), text)
        for name, fired, evaluated, text in rows
    ]


def verdict_markdown(outcome: MonitoringOutcome) -> str:
    """The Prefect artifact: the verdict, a table of signals and a link to the report."""
    s, d = outcome.signals, outcome.decision
    lines = [
        f"# Monitoring {outcome.model} v{outcome.champion_version} on batch {outcome.batch}",
        "",
        f"**Decision: {d.action}** — {d.reason}",
        "",
        "| signal | status | evidence |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {status} | {text} |" for name, status, text in verdict_rows(s)]
    lines += [
        "",
        f"Batches {s.window_start} .. {s.window_end}: {s.current_rows} predictions, "
        f"{s.reference_rows} reference rows.",
    ]
    if d.window_start:
        lines.append(f"Retrain on data from {d.window_start} on.")
    if outcome.report:
        lines.append(f"[Evidently report]({Path(outcome.report).as_uri()})")
    if outcome.event_id:
        lines.append(
            f"Emitted drift event `{outcome.event_id}`: the training deployment's trigger starts a run."
        )
    return "\n".join(lines)


def _covariate_text(s: MonitoringSignals) -> str:
    c = s.covariate_shift
    drifted = f" ({', '.join(c.drifted)})" if c.drifted else ""
    return f"{len(c.drifted)} of {len(c.columns)} features drifted{drifted}, share threshold {c.threshold}"


def _prediction_text(s: MonitoringSignals) -> str:
    p = s.prediction_drift
    return f"{p.method} {p.score:.3f} (threshold {p.threshold})" if p.evaluated else "no probabilities"


def _prior_text(s: MonitoringSignals) -> str:
    p = s.prior_shift
    if not p.evaluated:
        return f"{p.labelled_rows} labelled rows"
    return f"positive rate {p.current_rate:.3f} vs {p.reference_rate:.3f} (threshold ±{p.threshold})"


def _performance_text(s: MonitoringSignals) -> str:
    p = s.performance
    if not p.evaluated:
        return p.note or "not evaluated"
    auc = f", ROC AUC {p.metrics['roc_auc']:.3f}" if "roc_auc" in p.metrics else ""
    return (
        f"accuracy {p.metrics['accuracy']:.3f} vs {p.baseline['accuracy']:.3f} at promotion{auc} "
        f"({p.labelled_rows} labelled rows)" + (f", dropped since {p.onset}" if p.onset else "")
    )
