"""Monitoring flow: logged predictions (and arrived labels) vs the champion's reference -> signals ->
retraining policy -> a Prefect event that triggers the training deployment.

Monitoring looks at batches, whatever their cadence (ctcd/cadence.py): each logged prediction belongs to
the batch its `served_at` falls in (a replay sets the date with `as_of`); the current window is the last
`drift.window_batches` batches, ending with the current batch (by default the latest one with predictions),
and the labelled look-back reaches back far enough for labels `dataset.label_delay_batches` late.

It also keeps the reports people look at: the Evidently HTML report in the workspace (with a retention
limit), its JSON summary logged to MLflow against the champion's version, and a Prefect markdown
artifact with the verdict table and the report's link. The policy's memory is an append-only decision
log, `audit/monitoring.jsonl` (`ctcd/policy_state.py`).

Wiring only: the workspace reads are `ctcd/ct_inputs.py`, the signals and the policy `tasks/ct_steps.py`,
the records, decisions and renderings `tasks/monitoring.py`.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from ctcd import drift_report, events, policy_state
from ctcd.cadence import Timeline, workspace_timeline
from ctcd.config import CtcdConfig, load_config
from ctcd.ct_inputs import current_batch, read_labels, read_window
from ctcd.rollout import read_rollout
from ctcd.workspace import Workspace
from tasks import ct_steps, monitoring, online_gate
from tasks.drift import MonitoringSignals, signal_metrics
from tasks.monitoring import MonitoringInputs, MonitoringOutcome
from tasks.online_gate import OnlineVerdict, RolloutStep
from tasks.policy import PolicyState, record_outcome

if TYPE_CHECKING:
    from prefect.events import Event

    from ctcd.registry import ModelRef
    from ctcd.rollout import RolloutState


@task(name="load-monitoring-inputs", cache_policy=NO_CACHE)
def load_inputs(
    cfg: CtcdConfig, ws: Workspace, champ: ModelRef, timeline: Timeline, batch: str
) -> MonitoringInputs:
    """The champion's reference and evaluation, the logged predictions and the arrived labels."""
    from ctcd import registry

    evaluation = registry.Registry(cfg, ws).load_evaluation(champ)
    window = ct_steps.windows(cfg, timeline, batch)
    predictions = read_window(ws, timeline, window.lookback)
    monitoring.require_served(predictions, window, ws.predictions)
    return MonitoringInputs(
        timeline=timeline,
        windows=window,
        champion_version=champ.version,
        reference=registry.Registry(cfg, ws).load_reference(champ),
        baseline=monitoring.baseline_metrics(evaluation),
        predictions=predictions,
        labels=read_labels(cfg, ws, timeline, window.lookback[0]),
    )


@task(name="compute-signals", cache_policy=NO_CACHE)
def signals_of(cfg: CtcdConfig, inputs: MonitoringInputs) -> tuple[MonitoringSignals, pd.DataFrame]:
    """The window's signals, and the labelled predictions they were computed on."""
    return ct_steps.signals(
        cfg,
        inputs.windows,
        inputs.champion_version,
        inputs.reference,
        inputs.baseline,
        inputs.predictions,
        inputs.labels,
    )


@task(name="retrain-outcome", cache_policy=NO_CACHE)
def retrain_outcome(cfg: CtcdConfig, ws: Workspace, state: PolicyState) -> bool | None:
    """Whether the open episode's latest retraining was promoted, read from the registry (None: not known)."""
    from ctcd import audit, registry

    if not monitoring.awaits_retrain_outcome(state):
        return None
    found = [(ref.version, ref.tags) for ref in registry.Registry(cfg, ws).versions()]
    return monitoring.retrain_outcome(state, cfg.registered_model_name, audit.alias_history(ws), found)


@task(name="evidently-report", cache_policy=NO_CACHE)
def write_report(cfg: CtcdConfig, ws: Workspace, inputs: MonitoringInputs) -> tuple[Path, dict[str, Any]]:
    """Render the Evidently report of the current window into the workspace; return it and its summary."""
    snapshot = monitoring.evidently_report(cfg, inputs)
    path = drift_report.save_report(snapshot, ws.reports, datetime.now(UTC), cfg.drift.report_retention)
    return path, drift_report.report_summary(snapshot)


@task(name="emit-drift-event", cache_policy=NO_CACHE)
def emit_drift_event(cfg: CtcdConfig, outcome: MonitoringOutcome) -> Event:
    """Emit the drift event that triggers the training deployment."""
    return events.emit_drift_event(cfg, monitoring.drift_payload(outcome), outcome.champion_version)


def alert_drift(cfg: CtcdConfig, ws: Workspace, outcome: MonitoringOutcome) -> None:
    """The `drift` alert, once per drift episode (the batch it began in; a signal the policy only alerts
    on, outside an episode: once per batch). It goes beside the drift event, which starts the retraining."""
    decision = outcome.decision
    started = decision.episode_started or outcome.batch
    payload = {
        "batch": outcome.batch,
        "episode_started": started,
        "action": decision.action,
        "champion_version": outcome.champion_version,
        "reason": decision.reason,
        "drift_event_id": outcome.event_id,
    }
    doing = "retraining" if decision.action == "retrain" else "no retraining"
    summary = f"drift on batch {outcome.batch} ({doing}): {decision.reason}"[:300]
    events.emit_alert(cfg, "drift", summary, payload, f"drift:{started}", ws=ws)


@task(name="log-monitoring-to-mlflow", cache_policy=NO_CACHE)
def log_summary(cfg: CtcdConfig, ws: Workspace, outcome: MonitoringOutcome) -> str:
    """Log the run's numbers, verdict and JSON summary to MLflow against the champion's version."""
    from ctcd import registry

    with tempfile.TemporaryDirectory() as tmp:
        summary = Path(tmp) / "monitoring-summary.json"
        summary.write_text(json.dumps(outcome.as_payload(), indent=2, sort_keys=True), encoding="utf-8")
        return registry.Registry(cfg, ws).log_monitoring(
            signal_metrics(outcome.signals),
            model_version=outcome.champion_version,
            tags=monitoring.mlflow_tags(outcome),
            artifacts={"monitoring": summary},
            run_name=f"monitoring-{outcome.batch}",
        )


@task(name="online-gate", cache_policy=NO_CACHE)
def judge_rollout(
    cfg: CtcdConfig, ws: Workspace, rollout: RolloutState, timeline: Timeline, batch: str
) -> OnlineVerdict:
    """The online gate on the rows both models scored during the rollout, joined to their arrived labels."""
    window = online_gate.rollout_window(cfg, timeline, batch)
    predictions = read_window(ws, timeline, window)
    labels = read_labels(cfg, ws, timeline, window[0])
    return online_gate.judge_rollout(cfg, rollout, predictions, labels)


@task(name="record-online-verdict", cache_policy=NO_CACHE)
def record_verdict(cfg: CtcdConfig, ws: Workspace, verdict: OnlineVerdict, batch: str) -> None:
    """Keep the verdict with the candidate's version in MLflow (artifact + tags)."""
    from ctcd import registry

    reg = registry.Registry(cfg, ws)
    reg.record_decision(
        reg.version(verdict.candidate_version),
        verdict.model_dump(mode="json"),
        verdict.tags(),
        artifact=online_gate.verdict_artifact(batch),
    )


@task(name="act-on-online-verdict", cache_policy=NO_CACHE)
def act_on_verdict(
    cfg: CtcdConfig, ws: Workspace, rollout: RolloutState, verdict: OnlineVerdict, step: RolloutStep
) -> str:
    """Carry out the rollout's next step (`online_gate.next_step`): promote (alias, then the live server
    serves the candidate alone), reject (the champion alone), step a canary up, or hold; return what was
    done, in a few words."""
    from ctcd import registry
    from ctcd.serving import deploy
    from ctcd.serving.server import live_server_url

    url = live_server_url(cfg)
    reg = registry.Registry(cfg, ws)
    if step.action == "promote":
        try:
            reg.promote(
                reg.version(verdict.candidate_version),
                f"online gate: {verdict.summary()}",
                actor="ctcd-online-gate",
                extra={"rollout": rollout.mode, "labelled_rows": verdict.labelled_rows},
                expected_champion=verdict.champion_version,
            )
        except registry.ChampionMoved as exc:
            get_run_logger().warning("%s", exc)
            deploy.end_rollout(cfg, ws, url, promoted=False)
            return "not promoted: the champion moved during the rollout; rollout ended"
        deploy.end_rollout(cfg, ws, url, promoted=True)
        return f"promoted v{verdict.candidate_version}; it now answers every request"
    if step.action == "reject":
        deploy.end_rollout(cfg, ws, url, promoted=False)
        return f"rolled v{verdict.candidate_version} out; the champion answers every request"
    if step.action == "step_up":
        state = deploy.advance_canary(cfg, ws, url)
        return f"canary stepped up to {state.fraction:.0%} of requests ({step.reason})"
    return step.summary()


def online_step(
    cfg: CtcdConfig, ws: Workspace, rollout: RolloutState, timeline: Timeline, batch: str
) -> OnlineVerdict:
    """The online gate of the rollout in progress: judge, record in MLflow, decide the step, carry it out,
    show the artifact."""
    verdict = judge_rollout(cfg, ws, rollout, timeline, batch)
    record_verdict(cfg, ws, verdict, batch)
    step = online_gate.next_step(cfg, verdict, rollout)
    done = act_on_verdict(cfg, ws, rollout, verdict, step)
    create_markdown_artifact(
        key=f"online-gate-{monitoring.artifact_key(cfg.registered_model_name)}",
        markdown=f"{verdict.markdown()}\n{done}\n",
        description=verdict.summary()[:500],
    )
    get_run_logger().info("%s; %s", verdict.summary(), done)
    if verdict.action != "wait":
        events.emit_alert(
            cfg,
            "online-gate",
            f"{verdict.summary()}; {done}"[:300],
            verdict.model_dump(mode="json"),
            f"online-v{verdict.candidate_version}",
            ws=ws,
        )
    return verdict


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
    state = record_outcome(
        monitoring.policy_state(policy_state.read_state(ws, timeline, batch)), retrain_promoted
    )
    decision, new_state = ct_steps.policy_decision(cfg, signals, labelled, state, batch, timeline)
    outcome = MonitoringOutcome(
        batch=batch,
        model=cfg.registered_model_name,
        champion_version=inputs.champion_version,
        signals=signals,
        decision=decision,
    )
    if monitoring.report_kept(cfg, decision) and signals.current_rows > 0:
        path, summary = write_report(cfg, ws, inputs)
        outcome = outcome.model_copy(update={"report": str(path), "evidently_summary": summary})
    if decision.action == "retrain":
        event = emit_drift_event(cfg, outcome)
        outcome = outcome.model_copy(update={"event_id": str(event.id)})
    if decision.action != "none":
        alert_drift(cfg, ws, outcome)
    policy_state.append_decision(ws, monitoring.decision_entry(outcome, new_state, datetime.now(UTC)))
    create_markdown_artifact(
        key=f"monitoring-{monitoring.artifact_key(cfg.registered_model_name)}",
        markdown=monitoring.verdict_markdown(outcome),
        description=f"{decision.action}: {decision.reason}"[:500],
    )
    get_run_logger().info(outcome.summary())
    return outcome


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
    state = monitoring.policy_state(policy_state.read_state(ws, timeline, current))
    promoted = retrain_outcome(cfg, ws, state)
    outcome = monitor_window(cfg, ws, load_inputs(cfg, ws, champ, timeline, current), promoted)
    log_summary(cfg, ws, outcome)
    rollout = read_rollout(ws)
    if rollout is not None:
        outcome = outcome.model_copy(update={"online": online_step(cfg, ws, rollout, timeline, current)})
    return outcome
