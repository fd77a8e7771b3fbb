"""Ingest flow: land due batches, run the data gate on each, file it as validated or quarantined, report.

The steps are `tasks/ingest.py:ingest` (also run without Prefect); this flow runs them with each batch's
validation as a Prefect task run (`validate-<batch>`) and publishes a table artifact of the decisions with
a link to the Data Docs site.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from ctcd.batches import BatchRecord
from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace
from tasks import ingest
from tasks.ingest import IngestReport

if TYPE_CHECKING:
    from ctcd.gx_gate import DataGate


@task(name="validate-batch", cache_policy=NO_CACHE, task_run_name="validate-{path.stem}")
def validate_batch(cfg: CtcdConfig, ws: Workspace, path: Path, gate: DataGate) -> BatchRecord:
    """Read one batch file, run the gate, and move it to validated/ or quarantine/ with its record."""
    return ingest.judge_batch_file(cfg, ws, path, gate)


def publish(report: IngestReport) -> None:
    """Publish the decisions as a Prefect table artifact and the Data Docs site as a link artifact."""
    create_table_artifact(key="data-gate", table=report.table(), description=report.summary())
    if report.data_docs:
        create_link_artifact(key="data-docs", link=report.data_docs, link_text="Great Expectations Data Docs")


@flow(name="ingest")
def ingest_flow(config_path: str | None = None, through: str | None = None) -> IngestReport:
    """Land due batches and validate every landed batch (only ids <= `through` when given)."""
    report = ingest.ingest(load_config(config_path), Workspace.open(), through, judge=validate_batch)
    publish(report)
    get_run_logger().info(report.summary())
    return report
