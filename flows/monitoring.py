"""Monitoring flow: logged predictions (and arrived labels) vs the champion's reference -> signals ->
retraining policy -> a Prefect event that triggers the training deployment.

Monitoring looks at batches, whatever their cadence (ctcd/cadence.py): each logged prediction belongs to
the batch its `served_at` falls in (a replay sets the date with `as_of`); the current window is the last
`drift.window_batches` batches, ending with the current batch (by default the latest one with predictions),
and the labelled look-back reaches back far enough for labels `dataset.label_delay_batches` late.

It also keeps the reports people look at: the Evidently HTML report in the workspace (with a retention
limit), its JSON summary logged to MLflow against the champion's version, and a Prefect markdown
artifact with the verdict table and the report's link. The policy's memory is an append-only decision
log, `audit/monitoring.jsonl`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from ctcd import drift_report, events
from ctcd.batches import read_labels_file
from ctcd.cadence import Timeline, workspace_timeline
from ctcd.config import CtcdConfig, load_config
from ctcd.errors import UsageError, WorkFailed
from ctcd.workspace import Workspace
from tasks.ct_steps import (
    Windows,
    current_window,
    policy_decision,
    windows,
    with_batches,
)
from tasks.ct_steps import new_labelled_rows as new_labelled_rows  # re-exported
from tasks.ct_steps import signals as window_signals
from tasks.drift import (
    BATCH,
    PROBABILITY,
    SERVED_AT,
    MonitoringSignals,
    drift_methods,
    feature_kinds,
    feature_thresholds,
    signal_metrics,
)
from tasks.policy import PolicyState, RetrainDecision, record_outcome, training_outcome

if TYPE_CHECKING:
    from ctcd.registry import ModelRef


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

    def summary(self) -> dict[str, Any]:
        """The JSON summary logged to MLflow against the champion's version."""
        return self.model_dump(mode="json", exclude={"report"})


def read_window(ws: Workspace, timeline: Timeline, batches: list[str]) -> pd.DataFrame:
    """The logged predictions served in `batches` (oldest first), with their batch in `BATCH`."""
    from ctcd.prediction_log import read_predictions

    first, last = timeline.days(batches[0], batches[-1])
    predictions = with_batches(read_predictions(ws, start=first, end=last), timeline)
    return predictions[predictions[BATCH].isin(batches)].reset_index(drop=True)


def current_batch(ws: Workspace, timeline: Timeline, batch: str | None = None) -> str:
    """The batch to monitor: the one `batch` names (a batch id, or a date or time inside it), or else the
    latest batch with logged predictions."""
    from ctcd.prediction_log import PARTITION_PREFIX, read_predictions

    if batch:
        found = timeline.resolve(batch)
        if found is None:
            raise UsageError(
                f"{batch!r} names no batch: give a batch id (2026-01-08, 2026-W03, 2008-05) or a date in one"
            )
        return found
    days = sorted(p.name[len(PARTITION_PREFIX) :] for p in ws.predictions.glob(f"{PARTITION_PREFIX}*"))
    for day in reversed(days):
        served = read_predictions(ws, start=day, end=day)
        if not served.empty:
            latest = pd.to_datetime(served[SERVED_AT], utc=True).max().tz_convert(None).to_pydatetime()
            found = timeline.batch_at(latest)
            if found is not None:
                return found
    raise WorkFailed(
        f"no predictions were logged under {ws.predictions}: "
        "serve traffic (or replay the demo) before monitoring"
    )


def monitored_batch(cfg: CtcdConfig, ws: Workspace, batch: str | None = None) -> str | None:
    """The batch a monitoring run of `batch` would look at, when it holds predictions (None: nothing to
    monitor)."""
    timeline = workspace_timeline(cfg, ws)
    try:
        current = current_batch(ws, timeline, batch)
    except (UsageError, WorkFailed):
        return None
    return None if read_window(ws, timeline, [current]).empty else current


def read_labels(cfg: CtcdConfig, ws: Workspace, timeline: Timeline, since: str | None = None) -> pd.DataFrame:
    """Arrived labels (id, target); files of batches before `since` are skipped (ids that are not times are
    always read)."""
    ds = cfg.dataset
    first = timeline.position(since) if since else None
    frames = []
    for path in sorted(ws.labels.glob("*")):
        if path.suffix not in (".parquet", ".csv") or path.name.startswith("."):
            continue
        position = timeline.position(path.stem)
        if first is not None and position is not None and position < first:
            continue
        frames.append(read_labels_file(path, cfg))
    if not frames:
        return pd.DataFrame({ds.id_column: pd.Series(dtype="int64"), ds.target: pd.Series(dtype="int64")})
    return pd.concat(frames, ignore_index=True)


@task(name="load-monitoring-inputs", cache_policy=NO_CACHE)
def load_inputs(
    cfg: CtcdConfig, ws: Workspace, champ: ModelRef, timeline: Timeline, batch: str
) -> MonitoringInputs:
    """The champion's reference and evaluation, the logged predictions and the arrived labels."""
    from ctcd import registry

    evaluation = registry.Registry(cfg, ws).load_evaluation(champ)
    window = windows(cfg, timeline, batch)
    predictions = read_window(ws, timeline, window.lookback)
    if current_window(predictions, window.current).empty:
        span = window.current[0] if len(window.current) == 1 else f"{window.current[0]} .. {batch}"
        raise WorkFailed(
            f"no predictions were logged in batch {span} under {ws.predictions}: "
            "serve traffic (or replay the demo) before monitoring"
        )
    return MonitoringInputs(
        timeline=timeline,
        windows=window,
        champion_version=champ.version,
        reference=registry.Registry(cfg, ws).load_reference(champ),
        baseline={k: v for k, v in evaluation.get("metrics", {}).items() if isinstance(v, int | float)},
        predictions=predictions,
        labels=read_labels(cfg, ws, timeline, window.lookback[0]),
    )


@task(name="compute-signals", cache_policy=NO_CACHE)
def signals_of(cfg: CtcdConfig, inputs: MonitoringInputs) -> tuple[MonitoringSignals, pd.DataFrame]:
    """The window's signals, and the labelled predictions they were computed on."""
    return window_signals(
        cfg,
        inputs.windows,
        inputs.champion_version,
        inputs.reference,
        inputs.baseline,
        inputs.predictions,
        inputs.labels,
    )


def decision_log(ws: Workspace) -> Path:
    """The append-only log of monitoring decisions (the policy's memory)."""
    return ws.audit / "monitoring.jsonl"


def read_state(ws: Workspace, timeline: Timeline, batch: str) -> PolicyState:
    """The policy state after the latest logged run of `batch` or before (a replay may restart earlier)."""
    path = decision_log(ws)
    if not path.exists():
        return PolicyState()
    state = PolicyState()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        logged = str(entry.get("batch", entry.get("today")))  # `today`: logs written before batches
        if (timeline.batches_between(logged, batch) or 0) >= 0:
            state = PolicyState.model_validate(entry["state"])
    return state


def append_decision(ws: Workspace, outcome: MonitoringOutcome, state: PolicyState) -> None:
    """Append one run's decision and the policy's new state to the decision log."""
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
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
    with decision_log(ws).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


@task(name="retrain-outcome", cache_policy=NO_CACHE)
def retrain_outcome(cfg: CtcdConfig, ws: Workspace, state: PolicyState) -> bool | None:
    """Whether the open episode's latest retraining was promoted, read from the registry (None: not known).

    Matched by the monitored batch its drift event carried (`ctcd.trigger`), not by wall-clock time: the
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
    found = [(ref.version, ref.tags) for ref in registry.Registry(cfg, ws).versions()]
    return training_outcome(found, champions, episode.retrained_on)


def report_kept(cfg: CtcdConfig, decision: RetrainDecision) -> bool:
    """Whether this run renders and keeps the Evidently HTML report (the expensive part)."""
    return cfg.drift.keep_reports == "always" or (
        cfg.drift.keep_reports == "on_signal" and decision.action != "none"
    )


@task(name="evidently-report", cache_policy=NO_CACHE)
def write_report(cfg: CtcdConfig, ws: Workspace, inputs: MonitoringInputs) -> tuple[Path, dict[str, Any]]:
    """Render the Evidently report of the current window into the workspace; return it and its summary."""
    snapshot = drift_report.build_report(
        inputs.reference,
        current_window(inputs.predictions, inputs.windows.current).drop(columns=[BATCH]),
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
    return {
        "reason": f"drift: {d.reason}",
        "window_start": d.window_start,
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
    retrain_promoted: bool | None = None,
) -> MonitoringOutcome:
    """One monitoring run on loaded inputs: signals, policy, report, event, decision log, artifact.

    `retrain_promoted`: whether the open drift episode's retraining was promoted (`retrain_outcome`).
    """
    timeline, batch = inputs.timeline, inputs.windows.batch
    signals, labelled = signals_of(cfg, inputs)
    state = record_outcome(read_state(ws, timeline, batch), retrain_promoted)
    decision, new_state = policy_decision(cfg, signals, labelled, state, batch, timeline)
    outcome = MonitoringOutcome(
        batch=batch,
        model=cfg.registered_model_name,
        champion_version=inputs.champion_version,
        signals=signals,
        decision=decision,
    )
    if report_kept(cfg, decision) and signals.current_rows > 0:
        path, summary = write_report(cfg, ws, inputs)
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
        "ctcd.monitoring.batch": outcome.batch,
        "ctcd.monitoring.action": d.action,
        "ctcd.monitoring.reason": d.reason[:4900],
        "ctcd.monitoring.fired": ",".join(d.fired) or "-",
        "ctcd.monitoring.report": outcome.report or "-",
        "ctcd.monitoring.event_id": outcome.event_id or "-",
    }
    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "monitoring-summary.json"
        summary.write_text(json.dumps(outcome.summary(), indent=2, sort_keys=True), encoding="utf-8")
        return registry.Registry(cfg, ws).log_monitoring(
            signal_metrics(outcome.signals),
            model_version=outcome.champion_version,
            tags=tags,
            artifacts={"monitoring": summary},
            run_name=f"monitoring-{outcome.batch}",
        )


def _artifact_key(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "model"


@flow(name="monitoring")
def monitoring_flow(config_path: str | None = None, batch: str | None = None) -> MonitoringOutcome:
    """Compare the current window with the champion's reference and act on the retraining policy.

    `batch`: the batch to monitor, by id or by a date or time inside it (default: the latest batch with
    logged predictions)."""
    from ctcd import registry

    cfg = load_config(config_path)
    ws = Workspace.open()
    timeline = workspace_timeline(cfg, ws)
    # The first thing a new workspace lacks: say it first.
    champ = registry.Registry(cfg, ws).require_champion()
    current = current_batch(ws, timeline, batch)
    promoted = retrain_outcome(cfg, ws, read_state(ws, timeline, current))
    outcome = monitor_window(cfg, ws, load_inputs(cfg, ws, champ, timeline, current), promoted)
    log_summary(cfg, ws, outcome)
    return outcome
