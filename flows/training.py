"""The training flow: window -> split -> search/train -> evaluate -> register -> gate -> promote.

Tasks hold the maths and the decisions (`tasks/ct_steps.py`; what a run logs and reports,
`tasks/training_run.py`), the registry seam talks to MLflow (`ctcd/registry.py`); this module wires them
as Prefect tasks and publishes the artifacts. The search and the baseline are cached by the content of the
data and the config, so a rerun after a crash (or on unchanged data) skips them. MLflow calls retry with
back-off.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects

import tasks.ct_steps as steps_module
import tasks.model as model_module
import tasks.training as training_module
from ctcd import batches, events, registry, tracking
from ctcd.config import CtcdConfig, load_config
from ctcd.ct_inputs import BatchFile, validated_files
from ctcd.errors import WorkFailed
from ctcd.features import model_input
from ctcd.workspace import Workspace
from flows.approval import await_approval, record_approval
from tasks import approval, ct_steps, dataset, evaluation, model_gate, training, training_run
from tasks.dataset import BatchInput, Split
from tasks.model import positive_proba
from tasks.training_run import TrainingReport

MLFLOW_RETRIES = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=2)}
_CODE_DIGEST = hashlib.sha256(
    Path(training_module.__file__).read_bytes()
    + Path(model_module.__file__).read_bytes()
    + Path(steps_module.__file__).read_bytes()
).hexdigest()


@task(name="select-window", cache_policy=NO_CACHE)
def select_window(cfg: CtcdConfig, ws: Workspace, window_start: str | None) -> list[BatchFile]:
    """The validated, labelled batches of the training window."""
    return training_run.training_window(cfg, validated_files(ws), window_start, ws.validated)


@task(name="load-training-data", cache_policy=NO_CACHE)
def load_training_data(cfg: CtcdConfig, files: list[BatchFile]) -> tuple[list[BatchInput], Split]:
    """Read the window's batches, join their labels and split them in time order."""
    inputs = []
    for f in files:
        features = batches.read_batch(Path(f.path), cfg)
        labels = batches.read_labels_file(Path(f.labels_path), cfg)
        inputs.append(
            BatchInput(f.batch_id, f.sha256, f.path, dataset.join_labels(features, labels, cfg.dataset))
        )
    return inputs, ct_steps.training_split(inputs, cfg)


def _fit_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    cfg: CtcdConfig = parameters["cfg"]
    device = parameters.get("device")
    return hash_objects(
        context.task.name,
        _CODE_DIGEST,
        parameters["split"].digest,
        cfg.dataset.model_dump_json(),
        cfg.model.model_dump_json(),
        cfg.training.model_dump_json(),
        cfg.gates.model.primary_metric,
        device.device if device else None,
    )


@task(name="search", cache_key_fn=_fit_cache_key, persist_result=True)
def run_search(cfg: CtcdConfig, split: Split, device: training.DeviceChoice) -> ct_steps.Fitted:
    """The budgeted search with early stopping and the baseline, with their cost (cached by data and
    config: a cached result keeps the cost of the run that fitted it)."""
    return ct_steps.fit(cfg, split, device)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate(fitted: ct_steps.Fitted, split: Split, cfg: CtcdConfig) -> ct_steps.Evaluated:
    """Holdout reports and positive-class probabilities of the candidate and the baseline."""
    return ct_steps.evaluate(fitted, split, cfg)


@task(name="register-candidate", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def register_candidate(cfg: CtcdConfig, ws: Workspace, run: tracking.CandidateRun) -> registry.ModelRef:
    """Log the run and register the candidate as the new `challenger` version."""
    return registry.Registry(cfg, ws).log_candidate(run)


@task(name="register-baseline", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def register_baseline(
    cfg: CtcdConfig, ws: Workspace, run: tracking.CandidateRun, candidate: registry.ModelRef
) -> registry.ModelRef:
    """Register the baseline as a model version; the `challenger` alias stays on the candidate."""
    ref = registry.Registry(cfg, ws).log_candidate(run)
    registry.Registry(cfg, ws).move_alias(
        registry.CHALLENGER, candidate, reason="the candidate stays the challenger"
    )
    return ref


@task(name="score-champion", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def score_champion(cfg: CtcdConfig, ws: Workspace, split: Split) -> tuple[registry.ModelRef | None, Any]:
    """The current champion and its probabilities on the candidate's holdout (None before the first)."""
    ref = registry.Registry(cfg, ws).champion()
    if ref is None:
        return None, None
    champion = registry.Registry(cfg, ws).load_model(ref)
    # In the form the champion was trained on (its signature), should a categorical have changed type.
    X = model_input(split.test, cfg.dataset, registry.Registry(cfg, ws).text_categories(ref))
    return ref, positive_proba(champion, X)


@task(name="gate", cache_policy=NO_CACHE)
def gate(
    cfg: CtcdConfig,
    split: Split,
    evaluated: ct_steps.Evaluated,
    champion_proba: Any,
    candidate: registry.ModelRef,
    champion_version: str | None,
    metric: str | None = None,
    baseline_competes: bool = False,
) -> model_gate.GateDecision:
    """The blessing of the candidate against the champion (or, for the first model, the first-model rule
    against the baseline), on `metric` (default: the primary metric); `baseline_competes` on a restarted
    window (`ct_steps.gate`)."""
    return ct_steps.gate(
        cfg, split, evaluated, champion_proba, candidate.version, champion_version, metric, baseline_competes
    )


@task(name="record-decision", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def record_decision(
    cfg: CtcdConfig,
    ws: Workspace,
    ref: registry.ModelRef,
    decision: model_gate.GateDecision,
    tags: dict[str, str] | None = None,
) -> None:
    """Save the decision with the version (artifact + tags: by default the candidate's)."""
    registry.Registry(cfg, ws).record_decision(
        ref, decision.model_dump(mode="json"), tags or model_gate.decision_tags(decision)
    )


@task(name="promote", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def promote(
    cfg: CtcdConfig,
    ws: Workspace,
    ref: registry.ModelRef,
    reason: str,
    extra: dict[str, Any],
    gated_against: str | None,
) -> bool:
    """Move `champion` to the blessed candidate unless another run moved it since the gate (then False)."""
    try:
        registry.Registry(cfg, ws).promote(
            ref, reason, actor="ctcd-training", extra=extra, expected_champion=gated_against
        )
    except registry.ChampionMoved as exc:
        get_run_logger().warning("%s", exc)
        return False
    return True


def alert_rejected(
    cfg: CtcdConfig, ws: Workspace, candidate: registry.ModelRef, decision: model_gate.GateDecision
) -> None:
    """The `candidate-rejected` alert: the offline gate put nothing in service (once per version)."""
    events.emit_alert(
        cfg,
        "candidate-rejected",
        f"version {candidate.version} rejected by the model gate: {decision.summary()}"[:300],
        {
            "version": candidate.version,
            "run_id": candidate.run_id,
            "champion_version": decision.reference_version,
            "metric": decision.primary_metric,
            "delta": float(decision.bootstrap.delta),
            "reasons": decision.reasons,
        },
        str(candidate.version),
        ws=ws,
    )


@task(name="name-challenger", cache_policy=NO_CACHE, **MLFLOW_RETRIES)
def name_challenger(cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, reason: str, mode: str) -> None:
    """Point `challenger` at the blessed model that goes to a rollout instead of being promoted."""
    registry.Registry(cfg, ws).move_alias(
        registry.CHALLENGER, ref, reason=f"{mode} rollout: {reason}", actor="ctcd-training"
    )


def _report_artifacts(
    cfg: CtcdConfig, ws: Workspace, report: TrainingReport, baseline: evaluation.EvaluationReport
) -> None:
    create_table_artifact(
        training_run.metrics_rows(report, baseline),
        key="training-metrics",
        description=f"Holdout metrics of version {report.version}",
    )
    create_link_artifact(
        registry.Registry(cfg, ws).run_url(report.run_id), link_text="MLflow run", key="mlflow-run"
    )
    ref = registry.ModelRef(report.model_name, report.version, report.run_id)
    create_link_artifact(
        registry.Registry(cfg, ws).model_version_url(ref),
        link_text=f"model version {report.version}",
        key="model-version",
    )
    create_markdown_artifact(
        training_run.gate_markdown(report), key="model-gate", description="The blessing of the candidate"
    )


@flow(name="training", log_prints=False)
def training_flow(
    config_path: str | None = None,
    reason: str = "manual",
    window_start: str | None = None,
    trigger: dict | None = None,
) -> TrainingReport:
    """Train on the window, register the candidate, gate it against the champion and promote if blessed."""
    started = time.perf_counter()
    logger = get_run_logger()
    cfg = load_config(config_path)
    ws = Workspace.open()

    files = select_window(cfg, ws, window_start)
    inputs, split = load_training_data(cfg, files)
    device = training.choose_device(cfg.training.device)
    logger.info("training on %s (%s), rows %s", device.device, device.reason, split.rows)

    fitted = run_search(cfg, split, device)
    result, baseline = fitted.result, fitted.baseline
    evaluated = evaluate(fitted, split, cfg)
    report, proba = evaluated.report, evaluated.proba
    baseline_report, baseline_proba = evaluated.baseline_report, evaluated.baseline_proba

    tags = training_run.run_tags(cfg, reason, trigger, window_start, device)
    run = training_run.candidate_run(
        cfg, inputs, split, result, fitted.cost, report, baseline_report, proba, tags
    )
    candidate = register_candidate(cfg, ws, run)

    champion, champion_proba = score_champion(cfg, ws, split)
    # Nothing serves yet: the better of candidate and baseline that clears the floors becomes v1.
    decision = gate(
        cfg,
        split,
        evaluated,
        champion_proba,
        candidate,
        champion.version if champion else None,
        ct_steps.gate_metric(cfg, (trigger or {}).get("signals") or []),
        ct_steps.competes_with_baseline(window_start),
    )
    record_decision(cfg, ws, candidate, decision)

    chosen, baseline_ref = candidate, None
    if decision.chosen == "baseline":
        baseline_ref = register_baseline(
            cfg,
            ws,
            training_run.baseline_run(cfg, inputs, split, baseline, baseline_report, baseline_proba, tags),
            candidate,
        )
        record_decision(cfg, ws, baseline_ref, decision, model_gate.baseline_tags(decision))
        chosen = baseline_ref
    blessed = ct_steps.served_model(decision) is not None
    if not blessed:
        alert_rejected(cfg, ws, candidate, decision)
    promotion_reason = training_run.promotion_reason(reason, decision)
    if approval.needs_approval(cfg, blessed):
        # Approval comes before a promotion or a rollout: the run shows Paused until a person decides.
        verdict = await_approval(cfg, ws, chosen, decision.summary())
        record_approval(cfg, ws, chosen, verdict)
        blessed = verdict.approved
        promotion_reason = approval.promotion_reason(promotion_reason, verdict)
    # With serving.rollout shadow or canary, a blessed model replacing a champion is not promoted here: it
    # becomes the challenger, the delivery starts its rollout and the online gate (monitoring) decides.
    rollout = (
        training_run.rollout_mode(cfg, champion.version if champion else None, decision) if blessed else None
    )
    if rollout:
        name_challenger(cfg, ws, chosen, promotion_reason, rollout)
    promoted = (
        blessed
        and not rollout
        and promote(
            cfg,
            ws,
            chosen,
            promotion_reason,
            {"run_id": chosen.run_id, "trigger_reason": reason},
            champion.version if champion else None,
        )
    )
    out = TrainingReport(
        model_name=cfg.registered_model_name,
        version=candidate.version,
        run_id=candidate.run_id or "",
        promoted=promoted,
        champion_version=chosen.version if promoted else (champion.version if champion else None),
        previous_champion=champion.version if champion else None,
        baseline_version=baseline_ref.version if baseline_ref else None,
        decision=decision,
        metrics=report.metrics,
        device=device.device,
        batches=[f.batch_id for f in files],
        rows=split.rows,
        reason=reason,
        seconds=time.perf_counter() - started,
        cost=fitted.cost.metrics(),
        rollout=rollout,
        rollout_version=chosen.version if rollout else None,
    )
    if rollout:
        logger.info(
            "version %s goes to a %s rollout; the online gate decides its promotion", chosen.version, rollout
        )
    _report_artifacts(cfg, ws, out, baseline_report)
    logger.info(out.summary())
    if champion is None and decision.chosen is None:
        raise WorkFailed(model_gate.no_first_model(decision))
    return out
