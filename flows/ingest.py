"""Ingest flow: land due batches, run the data gate on each, file it as validated or quarantined, report.

The steps are `tasks/ingest.py:ingest` (also run without Prefect); this flow runs them with each batch's
validation as a Prefect task run (`validate-<batch>`) and publishes a table artifact of the decisions with
a link to the Data Docs site. With `orchestration.dask: local` or a `dask_address`, the validations run in
parallel through prefect-dask's DaskTaskRunner (the `validate-batches` subflow), each worker process with
its own gate. A quarantined batch raises
the `quarantine` alert (once per batch content).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ctcd import events
from ctcd.batches import BatchRecord
from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace
from flows.task_runners import dask_task_runner
from tasks import ingest
from tasks.ingest import IngestReport

if TYPE_CHECKING:
    from ctcd.gx_gate import DataGate


@task(name="validate-batch", cache_policy=NO_CACHE, task_run_name="validate-{path.stem}")
def validate_batch(cfg: CtcdConfig, ws: Workspace, path: Path, gate: DataGate) -> BatchRecord:
    """Read one batch file, run the gate, and move it to validated/ or quarantine/ with its record."""
    record = ingest.judge_batch_file(cfg, ws, path, gate)
    if record.status == "quarantined":
        alert_quarantine(cfg, ws, record)
    return record


def alert_quarantine(cfg: CtcdConfig, ws: Workspace, record: BatchRecord) -> None:
    """The `quarantine` alert; the episode is the batch and its content (the same file quarantined again by
    a re-run alerts once; a corrected file that fails again alerts again)."""
    failed = ", ".join(f.expectation for f in record.failures[:5]) or record.reason
    events.emit_alert(
        cfg,
        "quarantine",
        f"batch {record.batch_id} quarantined by the data gate: {record.reason}"[:300],
        {
            "batch": record.batch_id,
            "file": record.file,
            "rows": record.rows,
            "reason": record.reason,
            "failed": failed,
            "data_docs": record.data_docs,
        },
        f"{record.batch_id}:{record.sha256[:16]}",
        ws=ws,
    )


@task(name="validate-batch", cache_policy=NO_CACHE, task_run_name="validate-{path.stem}")
def validate_batch_on_worker(cfg: CtcdConfig, ws: Workspace, path: Path, run: str) -> BatchRecord:
    """`validate_batch` on a Dask worker, with the worker's own gate (GX objects do not pickle)."""
    return ingest.judge_on_worker(cfg, ws, path, run)


@flow(name="validate-batches", validate_parameters=False)
def validate_batches(cfg: CtcdConfig, ws: Workspace, files: list[Path], run: str) -> list[BatchRecord]:
    """Validate and file the batches in parallel on the flow's task runner (a DaskTaskRunner)."""
    futures = [validate_batch_on_worker.submit(cfg, ws, path, run) for path in files]
    records = [f.result() for f in futures]
    for record in records:
        if record.status == "quarantined":
            alert_quarantine(cfg, ws, record)
    return records


def validate_on_dask(cfg: CtcdConfig, ws: Workspace, files: list[Path], run: str) -> list[BatchRecord]:
    """The batches' validation as a subflow on `orchestration.dask_address` or a local Dask cluster."""
    return validate_batches.with_options(task_runner=dask_task_runner(cfg))(cfg, ws, files, run)


def publish(report: IngestReport) -> None:
    """Publish the decisions as a Prefect table artifact and the Data Docs site as a link artifact."""
    create_table_artifact(key="data-gate", table=report.table(), description=report.summary())
    if report.data_docs:
        create_link_artifact(key="data-docs", link=report.data_docs, link_text="Great Expectations Data Docs")


@flow(name="ingest")
def ingest_flow(config_path: str | None = None, through: str | None = None) -> IngestReport:
    """Land due batches and validate every landed batch (only ids <= `through` when given)."""
    cfg = load_config(config_path)
    judge_all = validate_on_dask if cfg.orchestration.uses_dask else None
    report = ingest.ingest(cfg, Workspace.open(), through, judge=validate_batch, judge_all=judge_all)
    publish(report)
    get_run_logger().info(report.summary())
    return report
