"""Ingest steps: land due batches, run the data gate on each, file it as validated or quarantined, report.

Batches come from `dataset.source` (`ctcd/sources/`: files, one split file, SQL) or from the built-in
stream, and only ids <= `through` are landed and judged when it is given (ids compare as strings; the
stream's are dates). Both run under the workspace's ingest lock: a second ingest waits, then finds the
first one's batches filed and skips them.

`ingest(cfg, ws, through)` runs them (no Prefect); `flows/ingest.py:ingest_flow` runs it with each batch's
validation as a Prefect task, and publishes a table artifact of the decisions with a link to the Data Docs
site. These steps read and move the workspace's batch files (through `ctcd/batches/`); the verdict on a
validation result is `tasks/validation.py:judge`.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from ctcd.batches import (
    BatchRecord,
    BatchUnreadable,
    Release,
    batch_id_of,
    file_batch,
    find_batch,
    ingest_lock,
    landed_batches,
    read_batch,
    sha256_of,
)
from ctcd.config import CtcdConfig
from ctcd.errors import UsageError
from ctcd.workspace import Workspace, write_atomic
from tasks.validation import judge, unreadable

if TYPE_CHECKING:
    from ctcd.gx_gate import DataGate


class BatchDecision(BaseModel):
    """One line of the ingest report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    accepted: bool
    rows: int | None
    reason: str
    warnings: int
    data_docs: str | None

    @classmethod
    def of(cls, record: BatchRecord) -> BatchDecision:
        """Summarise a filed batch."""
        return cls(
            batch_id=record.batch_id,
            accepted=record.status == "validated",
            rows=record.rows,
            reason=record.reason,
            warnings=len(record.warnings),
            data_docs=record.data_docs,
        )


class IngestReport(BaseModel):
    """What one ingest run landed and decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    through: str | None
    landed: list[str] = Field(default_factory=list, description="batch ids copied into landing/ by this run")
    decisions: list[BatchDecision] = Field(default_factory=list)
    data_docs: str | None = Field(default=None, description="the Data Docs home page")

    @property
    def accepted(self) -> list[BatchDecision]:
        """Batches moved to validated/."""
        return [d for d in self.decisions if d.accepted]

    @property
    def rejected(self) -> list[BatchDecision]:
        """Batches moved to quarantine/."""
        return [d for d in self.decisions if not d.accepted]

    def summary(self) -> str:
        """One line: how many batches passed the data gate."""
        accepted, rejected = len(self.accepted), len(self.rejected)
        return f"Data gate: {accepted} validated, {rejected} quarantined (through {self.through})."

    def table(self) -> list[dict[str, object]]:
        """One row per judged batch, for the `data-gate` table artifact."""
        return [
            {
                "batch": d.batch_id,
                "decision": "validated" if d.accepted else "quarantined",
                "rows": d.rows,
                "warnings": d.warnings,
                "reason": d.reason,
                "data_docs": d.data_docs or "",
            }
            for d in self.decisions
        ]


def open_data_gate(cfg: CtcdConfig, ws: Workspace) -> DataGate:
    """The GX gate for the configured suite (imports great_expectations: seconds)."""
    from ctcd.gx_gate import open_gate

    return open_gate(ws, cfg.gates.data.suite, keep_results=cfg.gates.data.keep_results)


def judge_batch_file(cfg: CtcdConfig, ws: Workspace, path: Path, gate: DataGate) -> BatchRecord:
    """Read one batch file, run the gate, and move it to validated/ or quarantine/ with its record."""
    batch_id = batch_id_of(path)
    sha256 = sha256_of(path)
    try:
        frame = read_batch(path, cfg)
    except BatchUnreadable as exc:
        return file_batch(ws, path, unreadable(batch_id, gate.name, str(exc)), sha256=sha256)
    run = gate.validate(frame, batch_id)
    outcome = judge(run.result, batch_id, rows=len(frame))
    return file_batch(ws, path, outcome, sha256=sha256, data_docs=run.data_docs, result=run.result)


def land(cfg: CtcdConfig, ws: Workspace, through: str | None) -> list[str]:
    """Land what is new at `dataset.source` (ids <= `through`), or the built-in stream's batches due by
    `through` (a date; nothing without one); nothing without a source or a stream. Hold the ingest lock."""
    source = cfg.dataset.source
    if source is not None and source.kind != "stream":
        from ctcd.sources import pull

        return pull(cfg, ws, through).landed
    if cfg.stream is None or through is None:
        return []
    from ctcd.stream.landing import land_due

    return list(land_due(cfg, ws, _as_date(through)).features_landed)


Judge = Callable[[CtcdConfig, Workspace, Path, "DataGate"], BatchRecord]
# Judges a run's files at once (on Dask: in parallel); `run` names the ingest run for worker gates.
JudgeAll = Callable[[CtcdConfig, Workspace, list[Path], str], list[BatchRecord]]

# One attached gate per worker process and ingest run: GX objects do not pickle, so each worker opens its
# own, once, on the checkpoints the ingest process stored for this run.
_WORKER_GATE: dict[tuple[str, str, str], DataGate] = {}
_WORKER_LOCK = threading.Lock()


def judge_on_worker(cfg: CtcdConfig, ws: Workspace, path: Path, run: str) -> BatchRecord:
    """`judge_batch_file` in a parallel worker, with this process's gate attached for ingest run `run`."""
    from ctcd.gx_gate import open_gate

    key = (str(ws.gx_root), str(cfg.gates.data.suite), run)
    with _WORKER_LOCK:  # one GX context per process; a worker with several threads validates in turn
        gate = _WORKER_GATE.get(key)
        if gate is None:
            _WORKER_GATE.clear()
            # Pruning nothing: the ingest process prunes once the workers are done.
            gate = _WORKER_GATE[key] = open_gate(
                ws, cfg.gates.data.suite, keep_results=sys.maxsize, attach=True
            )
        return judge_batch_file(cfg, ws, path, gate)


def ingest(
    cfg: CtcdConfig,
    ws: Workspace,
    through: str | None = None,
    gate: DataGate | None = None,
    judge: Judge = judge_batch_file,
    judge_all: JudgeAll | None = None,
) -> IngestReport:
    """Land due batches (source or stream), then judge every landed batch with id <= `through`.

    `judge`: what validates and files one batch (the ingest flow passes `judge_batch_file` as a Prefect
    task, so each batch's validation is a task run). `judge_all`, when given, judges all the files at once
    instead (the flow's Dask path: `judge_on_worker` in parallel), after this process stored the gate's
    checkpoints; this process then prunes old results and renders the Data Docs."""
    with ingest_lock(ws):
        landed = land(cfg, ws, through)
        files = landed_batches(ws, through)
        if not files:
            return IngestReport(through=through, landed=landed)
        gate = gate or open_data_gate(cfg, ws)
        if judge_all is None:
            decisions = [BatchDecision.of(judge(cfg, ws, path, gate)) for path in files]
            docs = gate.publish_docs()
        else:
            decisions = [BatchDecision.of(r) for r in judge_all(cfg, ws, files, uuid.uuid4().hex)]
            gate.prune(cfg.gates.data.keep_results)
            docs = gate.publish_docs(every=True)
    return IngestReport(through=through, landed=landed, decisions=decisions, data_docs=docs)


def revalidate(cfg: CtcdConfig, ws: Workspace, batch_id: str, gate: DataGate | None = None) -> BatchRecord:
    """Run a quarantined batch through the gate again (e.g. after fixing the suite); it moves if it passes."""
    record = find_batch(ws, batch_id)
    if record.status != "quarantined":
        raise UsageError(f"batch {batch_id} is not in quarantine (it is {record.status})")
    path = record.path(ws)
    with ingest_lock(ws):
        gate = gate or open_data_gate(cfg, ws)
        new = judge_batch_file(cfg, ws, path, gate)
        gate.publish_docs()
    if new.status != "validated":
        return new
    release = Release(
        forced=False,
        reason="re-validated against the current suite",
        released_at=datetime.now(UTC),
        quarantine_reason=record.reason,
    )
    updated = new.model_copy(update={"release": release})
    write_atomic(ws.validated / f"{new.batch_id}.json", updated.model_dump_json(indent=2) + "\n")
    return updated


def _as_date(through: str) -> date:
    try:
        return date.fromisoformat(through)
    except ValueError as exc:
        raise UsageError(f"through={through!r} is not a date (YYYY-MM-DD)") from exc
