"""The CT/CD pipeline: one cycle of ingest -> (train -> gate -> promote -> deliver) -> monitor.

The demo, the schedules and the drift trigger all run this flow (deployments/prefect.yaml), so what the
demo shows is what production runs:
- the daily schedule runs it plainly: ingest and validate the day's batches, then monitor (the monitor
  emits the drift event when the retraining policy says so);
- the drift trigger and the weekly schedule run it with a `reason` (and the policy's `window_start`):
  ingest, train, and deliver when the candidate is promoted; they skip monitoring so a retrain cannot
  trigger itself.
A project without a champion trains as soon as labelled data exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from ctcd import registry
from ctcd.config import load_config
from ctcd.ct_inputs import monitored_batch, validated_files
from ctcd.workspace import Workspace
from flows.delivery import delivery_flow
from flows.ingest import ingest_flow
from flows.monitoring import monitoring_flow
from flows.training import training_flow
from tasks.pipeline import PipelineReport

INITIAL_REASON = "initial: no champion yet"


@flow(name="ctcd-pipeline")
def ctcd_pipeline(
    config_path: str | None = None,
    today: str | None = None,
    reason: str | None = None,
    window_start: str | None = None,
    trigger: dict[str, Any] | None = None,
    monitor: bool = True,
) -> PipelineReport:
    """One CT/CD cycle for `today` (ISO date; default: now). `reason` asks for a retrain."""
    logger = get_run_logger()
    cfg = load_config(config_path)
    ws = Workspace.open()
    with subflows_without_heartbeats():
        report = PipelineReport(today=today, ingest=ingest_flow(config_path, through=today))

        initial = reason is None and registry.Registry(cfg, ws).champion() is None
        if initial and not validated_files(ws):
            report.notes.append("no first model yet: waiting for a validated batch whose labels have arrived")
        elif reason is not None or initial:
            report.training = training_flow(
                config_path, reason=reason or INITIAL_REASON, window_start=window_start, trigger=trigger
            )
            if report.training.promoted:
                report.delivery = delivery_flow(config_path, start_if_down=True)
            elif report.training.rollout:
                report.delivery = delivery_flow(
                    config_path,
                    version=report.training.rollout_version,
                    start_if_down=True,
                    rollout=report.training.rollout,
                )

        if monitor and reason is None and registry.Registry(cfg, ws).champion() is not None:
            if monitored_batch(cfg, ws, today) is None:
                served = f"in the batch of {today}" if today else "yet"
                report.notes.append(f"monitoring skipped: no prediction was served {served}")
            else:
                report.monitoring = monitoring_flow(config_path, batch=today)

    logger.info(report.summary())
    create_markdown_artifact(
        key="ctcd-pipeline",
        markdown=f"## CT/CD cycle {today or ''}\n\n{report.summary()}\n",
        description=report.summary()[:500],
    )
    return report


@contextmanager
def subflows_without_heartbeats() -> Iterator[None]:
    """Run the subflows without heartbeats of their own: they live in this run's process, whose heartbeat
    covers them, and Prefect joins each run's heartbeat thread at its end (up to 1 s per subflow)."""
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
