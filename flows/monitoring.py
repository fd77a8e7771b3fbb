"""Monitoring flow: logged predictions (and arrived labels) vs the champion's reference -> signals ->
retraining policy -> a Prefect event that triggers the training deployment.

It also keeps the reports people look at: the Evidently HTML report in the workspace (with a retention
limit), its JSON summary logged to MLflow against the champion's version, and a Prefect markdown
artifact with the verdict table and the report's link. The policy's memory is an append-only decision
log, `audit/monitoring.jsonl`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ctcd import drift_report, events
from ctcd.batches import read_labels_file
from ctcd.config import CtcdConfig, load_config
from ctcd.errors import WorkFailed
from ctcd.workspace import Workspace
from tasks.drift import (
    DAY,
    PROBABILITY,
    MonitoringSignals,
    compute_signals,
    drift_methods,
    feature_kinds,
    feature_thresholds,
    join_labels,
    signal_metrics,
)
from tasks.policy import PolicyState, RetrainDecision, decide, record_outcome, training_outcome

if TYPE_CHECKING:
    from ctcd.registry import ModelRef


@dataclass(frozen=True)
class MonitoringInputs:
    """What one monitoring run looks at, already loaded."""

    champion_version: str
    reference: pd.DataFrame
    baseline: dict[str, float]
    predictions: pd.DataFrame
    labels: pd.DataFrame


class MonitoringOutcome(BaseModel):
    """The result of one monitoring run, as printed by `ctcd monitor --json`."""

    today: date
    model: str
    champion_version: str
    signals: MonitoringSignals
    decision: RetrainDecision
    report: str | None = None
    event_id: str | None = None
    evidently_summary: dict[str, Any] = {}

    def summary(self) -> dict[str, Any]:
        """The JSON summary logged to MLflow against the champion's version."""
        return self.model_dump(mode="json", exclude={"report"})


def windows(cfg: CtcdConfig, today: date) -> tuple[tuple[date, date], date]:
    """The current window (inclusive dates, ending today) and the first day of the labelled lookback."""
    current = (today - timedelta(days=cfg.drift.window_days - 1), today)
    lookback = max(cfg.training.window_days, cfg.drift.window_days + cfg.dataset.label_delay_days)
    return current, today - timedelta(days=lookback - 1)


def read_labels(cfg: CtcdConfig, ws: Workspace, since: date) -> pd.DataFrame:
    """Arrived labels (id, target); files named by a date before `since` are skipped."""
    ds = cfg.dataset
    frames = []
    for path in sorted(ws.labels.glob("*")):
        if path.suffix not in (".parquet", ".csv") or path.name.startswith("."):
            continue
        try:
            if date.fromisoformat(path.stem) < since:
                continue
        except ValueError:
            pass  # not a dated batch id: always read
        frames.append(read_labels_file(path, cfg))
    if not frames:
        return pd.DataFrame({ds.id_column: pd.Series(dtype="int64"), ds.target: pd.Series(dtype="int64")})
    return pd.concat(frames, ignore_index=True)


@task(name="load-monitoring-inputs", cache_policy=NO_CACHE)
def load_inputs(cfg: CtcdConfig, ws: Workspace, champ: ModelRef, today: date) -> MonitoringInputs:
    """The champion's reference and evaluation, the logged predictions and the arrived labels."""
    from ctcd import registry
    from ctcd.prediction_log import read_predictions

    evaluation = registry.load_evaluation(cfg, ws, champ)
    (start, end), since = windows(cfg, today)
    predictions = read_predictions(ws, start=since, end=end)
    if current_window(predictions, start, end).empty:
        raise WorkFailed(
            f"no predictions were logged between {start} and {end} under {ws.predictions}: "
            "serve traffic (or replay the demo) before monitoring"
        )
    return MonitoringInputs(
        champion_version=champ.version,
        reference=registry.load_reference(cfg, ws, champ),
        baseline={k: v for k, v in evaluation.get("metrics", {}).items() if isinstance(v, int | float)},
        predictions=predictions,
        labels=read_labels(cfg, ws, since - timedelta(days=cfg.dataset.label_delay_days)),
    )


@task(name="compute-signals", cache_policy=NO_CACHE)
def signals_of(
    cfg: CtcdConfig, inputs: MonitoringInputs, today: date
) -> tuple[MonitoringSignals, pd.DataFrame]:
    """The window's signals, and the labelled predictions they were computed on."""
    (start, end), _ = windows(cfg, today)
    labelled = join_labels(inputs.predictions, inputs.labels, cfg.dataset)
    signals = compute_signals(
        inputs.reference,
        current_window(inputs.predictions, start, end),
        labelled,
        inputs.baseline,
        cfg.dataset,
        cfg.drift,
        (start, end),
        model_version=inputs.champion_version,
    )
    return signals, labelled


def current_window(predictions: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    """The predictions served between `start` and `end` (UTC dates, inclusive)."""
    served = pd.to_datetime(predictions["served_at"], utc=True).dt.date
    return predictions[(served >= start) & (served <= end)]


def decision_log(ws: Workspace) -> Path:
    """The append-only log of monitoring decisions (the policy's memory)."""
    return ws.audit / "monitoring.jsonl"


def read_state(ws: Workspace, today: date) -> PolicyState:
    """The policy state after the latest logged run on or before `today` (a replay may restart earlier)."""
    path = decision_log(ws)
    if not path.exists():
        return PolicyState()
    state = PolicyState()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if date.fromisoformat(entry["today"]) <= today:
            state = PolicyState.model_validate(entry["state"])
    return state


def append_decision(ws: Workspace, outcome: MonitoringOutcome, state: PolicyState) -> None:
    """Append one run's decision and the policy's new state to the decision log."""
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "today": outcome.today.isoformat(),
        "model": outcome.model,
        "champion_version": outcome.champion_version,
        "action": outcome.decision.action,
        "reason": outcome.decision.reason,
        "fired": outcome.decision.fired,
        "window_start": outcome.decision.window_start.isoformat() if outcome.decision.window_start else None,
        "report": outcome.report,
        "event_id": outcome.event_id,
        "state": state.model_dump(mode="json"),
    }
    with decision_log(ws).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


@task(name="retrain-outcome", cache_policy=NO_CACHE)
def retrain_outcome(cfg: CtcdConfig, ws: Workspace, state: PolicyState) -> bool | None:
    """Whether the open episode's latest retraining was promoted, read from the registry (None: not known).

    Matched by the monitoring day its drift event carried (`ctcd.trigger`), not by wall-clock time: the
    demo replays simulated days with an accelerated clock.
    """
    from ctcd import registry

    episode = state.episode
    if episode is None or episode.retrained_on is None or episode.promoted is not None:
        return None
    champions = {
        e["version"]
        for e in registry.alias_history(ws)
        if e.get("model") == cfg.registered_model_name and e.get("action") != "rollback"
    }
    found = [(ref.version, ref.tags) for ref in registry.versions(cfg, ws)]
    return training_outcome(found, champions, episode.retrained_on)


def new_labelled_rows(labelled: pd.DataFrame, state: PolicyState) -> int:
    """Labelled predictions served since the last retraining (all of the lookback if there was none)."""
    if state.last_retrain is None or labelled.empty:
        return len(labelled)
    return int((labelled[DAY] >= state.last_retrain).sum())


def report_kept(cfg: CtcdConfig, decision: RetrainDecision) -> bool:
    """Whether this run renders and keeps the Evidently HTML report (the expensive part)."""
    return cfg.drift.keep_reports == "always" or (
        cfg.drift.keep_reports == "on_signal" and decision.action != "none"
    )


@task(name="evidently-report", cache_policy=NO_CACHE)
def write_report(
    cfg: CtcdConfig, ws: Workspace, inputs: MonitoringInputs, today: date
) -> tuple[Path, dict[str, Any]]:
    """Render the Evidently report of the current window into the workspace; return it and its summary."""
    (start, end), _ = windows(cfg, today)
    snapshot = drift_report.build_report(
        inputs.reference,
        current_window(inputs.predictions, start, end),
        feature_kinds(cfg.dataset),
        drift_methods(cfg.drift),
        feature_thresholds(cfg.dataset, cfg.drift),
        cfg.drift.feature_drift_share,
        extra={
            PROBABILITY: (
                "numerical",
                drift_methods(cfg.drift)["numerical"],
                cfg.drift.prediction_drift_threshold,
            )
        },
    )
    path = drift_report.save_report(snapshot, ws.reports, datetime.now(UTC), cfg.drift.report_retention)
    return path, drift_report.report_summary(snapshot)


def drift_payload(outcome: MonitoringOutcome) -> dict[str, Any]:
    """The drift event's payload: the training flow's parameters, plus the evidence."""
    s, d = outcome.signals, outcome.decision
    evidence = {
        "event": "drift",
        "today": outcome.today.isoformat(),
        "model": outcome.model,
        "champion_version": outcome.champion_version,
        "signals": d.triggering,
        "fired": d.fired,
        "drifted_columns": s.covariate_shift.drifted,
        "performance_drop": s.performance.accuracy_drop,
        "prior_shift": s.prior_shift.change,
        "episode_started": d.episode_started.isoformat() if d.episode_started else None,
        "report": Path(outcome.report).as_uri() if outcome.report else None,
    }
    return {
        "reason": f"drift: {d.reason}",
        "window_start": d.window_start.isoformat() if d.window_start else None,
        "trigger": evidence,
        **{k: v for k, v in evidence.items() if k != "event"},
    }


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


def _covariate_text(s: MonitoringSignals) -> str:
    c = s.covariate_shift
    drifted = f" ({', '.join(c.drifted)})" if c.drifted else ""
    return f"{len(c.drifted)} of {len(c.columns)} features drifted{drifted}, share threshold {c.threshold}"


def verdict_markdown(outcome: MonitoringOutcome) -> str:
    """The Prefect artifact: the verdict, a table of signals and a link to the report."""
    s, d = outcome.signals, outcome.decision
    lines = [
        f"# Monitoring {outcome.model} v{outcome.champion_version} on {outcome.today}",
        "",
        f"**Decision: {d.action}** — {d.reason}",
        "",
        "| signal | status | evidence |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {status} | {text} |" for name, status, text in verdict_rows(s)]
    lines += [
        "",
        f"Window {s.window_start} .. {s.window_end}: {s.current_rows} predictions, "
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


def monitor_window(
    cfg: CtcdConfig,
    ws: Workspace,
    inputs: MonitoringInputs,
    today: date,
    retrain_promoted: bool | None = None,
) -> MonitoringOutcome:
    """One monitoring run on loaded inputs: signals, policy, report, event, decision log, artifact.

    `retrain_promoted`: whether the open drift episode's retraining was promoted (`retrain_outcome`).
    """
    signals, labelled = signals_of(cfg, inputs, today)
    state = record_outcome(read_state(ws, today), retrain_promoted)
    decision, new_state = decide(
        signals, state, cfg.drift, today, new_labelled_rows(labelled, state), cfg.training.window_days
    )
    outcome = MonitoringOutcome(
        today=today,
        model=cfg.registered_model_name,
        champion_version=inputs.champion_version,
        signals=signals,
        decision=decision,
    )
    if report_kept(cfg, decision) and signals.current_rows > 0:
        path, summary = write_report(cfg, ws, inputs, today)
        outcome = outcome.model_copy(update={"report": str(path), "evidently_summary": summary})
    if decision.action == "retrain":
        event = task(events.emit_drift_event, name="emit-drift-event")(
            cfg, drift_payload(outcome), inputs.champion_version
        )
        outcome = outcome.model_copy(update={"event_id": str(event.id)})
    append_decision(ws, outcome, new_state)
    create_markdown_artifact(
        key=f"monitoring-{_artifact_key(cfg.registered_model_name)}",
        markdown=verdict_markdown(outcome),
        description=f"{decision.action}: {decision.reason}"[:500],
    )
    return outcome


@task(name="log-monitoring-to-mlflow", cache_policy=NO_CACHE)
def log_summary(cfg: CtcdConfig, ws: Workspace, outcome: MonitoringOutcome) -> str:
    """Log the run's numbers, verdict and JSON summary to MLflow against the champion's version."""
    from ctcd import registry

    d = outcome.decision
    tags = {
        "ctcd.monitoring.today": outcome.today.isoformat(),
        "ctcd.monitoring.action": d.action,
        "ctcd.monitoring.reason": d.reason[:4900],
        "ctcd.monitoring.fired": ",".join(d.fired) or "-",
        "ctcd.monitoring.report": outcome.report or "-",
        "ctcd.monitoring.event_id": outcome.event_id or "-",
    }
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "monitoring-summary.json"
        summary.write_text(json.dumps(outcome.summary(), indent=2, sort_keys=True), encoding="utf-8")
        return registry.log_monitoring(
            cfg,
            ws,
            signal_metrics(outcome.signals),
            model_version=outcome.champion_version,
            tags=tags,
            artifacts={"monitoring": summary},
            run_name=f"monitoring-{outcome.today.isoformat()}",
        )


def _artifact_key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "model"


@flow(name="monitoring")
def monitoring_flow(config_path: str | None = None, today: str | None = None) -> MonitoringOutcome:
    """Compare the current window with the champion's reference and act on the retraining policy."""
    from ctcd import registry

    cfg = load_config(config_path)
    ws = Workspace.open()
    day = date.fromisoformat(today) if today else datetime.now(UTC).date()
    champ = registry.require_champion(cfg, ws)
    promoted = retrain_outcome(cfg, ws, read_state(ws, day))
    outcome = monitor_window(cfg, ws, load_inputs(cfg, ws, champ, day), day, promoted)
    log_summary(cfg, ws, outcome)
    return outcome
