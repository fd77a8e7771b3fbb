"""The batch catalog: filing judged batches as validated or quarantined, and listing them.

A batch is `<batch_id>.parquet|csv` (id = file stem) landing in `ws.landing`. After the data gate it moves,
never deleted, to `ws.validated/` or `ws.quarantine/`, next to a sidecar `<batch_id>.json`: a
`BatchRecord` with the sha256 of its bytes (lineage), the decision and its one-line reason; a quarantined
batch's sidecar also holds the full GX validation result. Only validated batches may reach training or be
used as a reference: read them with `validated_batches(ws)` and `read_batch(path, cfg)`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ctcd.batches.reading import (
    BATCH_SUFFIXES,
    batch_id_of,
    first_line,
    landed_batches,
    sha256_of,
)
from ctcd.errors import UsageError, WorkFailed
from ctcd.records import ExpectationFailure, ValidationOutcome
from ctcd.workspace import Workspace, file_lock, write_json_atomic

INGEST_LOCK_TIMEOUT = 1800.0  # seconds a second ingest waits for the one landing and judging batches


class Release(BaseModel):
    """How a quarantined batch left quarantine: re-validated against the suite, or force-admitted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    forced: bool
    reason: str
    released_at: datetime
    quarantine_reason: str = Field(description="the reason it had been quarantined")


class BatchRecord(BaseModel):
    """The sidecar JSON of a validated or quarantined batch (the contract other parts read)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: str
    status: Literal["validated", "quarantined"]
    file: str = Field(description="the data file's name in its area, e.g. 2026-01-08.parquet")
    sha256: str
    bytes: int
    rows: int | None
    suite: str
    reason: str
    validated_at: datetime | None = None
    quarantined_at: datetime | None = None
    warnings: list[ExpectationFailure] = Field(default_factory=list)
    failures: list[ExpectationFailure] = Field(default_factory=list)
    data_docs: str | None = None
    release: Release | None = None
    result: dict[str, Any] | None = Field(default=None, description="the full GX result (quarantine only)")

    def path(self, ws: Workspace) -> Path:
        """Where the data file is now."""
        return (ws.validated if self.status == "validated" else ws.quarantine) / self.file


def _file_name(batch_id: str, source: Path) -> str:
    suffix = source.suffix.lower()
    return f"{batch_id}{suffix}" if suffix in BATCH_SUFFIXES else batch_id


# --------------------------------------------------------------------------- landing state


def is_landed_or_filed(ws: Workspace, batch_id: str) -> bool:
    """Whether a batch id is already in landing/, validated/ or quarantine/ (data file or sidecar)."""
    return any(_taken(area, batch_id) for area in (ws.landing, ws.validated, ws.quarantine))


def ingest_lock(
    ws: Workspace, timeout: float = INGEST_LOCK_TIMEOUT
) -> contextlib.AbstractContextManager[None]:
    """Hold the workspace's ingest lock: one process at a time lands, judges and files batches.

    A second `ctcd run` (or ingest) waits here, then finds the batches the first one filed and skips them.
    """
    return file_lock(ws.run / "ingest.lock", timeout, "another ingest")


# --------------------------------------------------------------------------- filing


def file_batch(
    ws: Workspace,
    source: Path,
    outcome: ValidationOutcome,
    *,
    sha256: str,
    data_docs: str | None = None,
    result: dict[str, Any] | None = None,
    release: Release | None = None,
) -> BatchRecord:
    """Move a judged batch into validated/ or quarantine/ with its sidecar; never overwrite, never delete."""
    ws.ensure()
    now = datetime.now(UTC)
    accepted = outcome.accepted
    area = ws.validated if accepted else ws.quarantine
    batch_id = outcome.batch_id
    target = area / _file_name(batch_id, source)
    if not _same_path(source, target) and _taken(area, batch_id):
        if accepted:
            raise WorkFailed(f"batch {batch_id} is already in {area}: batch ids must be unique")
        batch_id = _free_id(area, batch_id)
        target = area / _file_name(batch_id, source)
    record = BatchRecord(
        batch_id=batch_id,
        status="validated" if accepted else "quarantined",
        file=target.name,
        sha256=sha256,
        bytes=source.lstat().st_size,
        rows=outcome.rows,
        suite=outcome.suite,
        reason=outcome.reason,
        validated_at=now if accepted else None,
        quarantined_at=None if accepted else now,
        warnings=outcome.warnings,
        failures=outcome.failures,
        data_docs=data_docs,
        release=release,
        result=None if accepted else result,
    )
    # The sidecar lands first: a reader that sees the data file always finds its record.
    write_json_atomic(area / f"{batch_id}.json", record.model_dump(mode="json"))
    if not _same_path(source, target):
        _move(source, target)
    old_sidecar = source.with_name(f"{batch_id_of(source)}.json")
    if accepted and source.parent.resolve() == ws.quarantine.resolve() and old_sidecar.is_file():
        # Kept for the audit trail under a name the catalog does not list.
        os.replace(old_sidecar, old_sidecar.with_name(f"{batch_id_of(source)}.released.json"))
    return record


def force_release(ws: Workspace, batch_id: str, reason: str) -> BatchRecord:
    """Admit a quarantined batch without re-validation, recording who-knows-why in `release`."""
    if not reason.strip():
        raise UsageError("force-admitting a batch needs a reason: pass --reason TEXT")
    record = find_batch(ws, batch_id)
    if record.status != "quarantined":
        raise UsageError(f"batch {batch_id} is not in quarantine (it is {record.status})")
    source = record.path(ws)
    if source.is_symlink():
        raise UsageError(f"{record.file} is a symbolic link, not a batch file: it cannot be admitted")
    if source.suffix.lower() not in BATCH_SUFFIXES:
        raise UsageError(f"{record.file} is not a .parquet or .csv batch: it cannot be admitted")
    outcome = ValidationOutcome(
        batch_id=batch_id,
        suite=record.suite,
        accepted=True,
        gx_success=False,
        reason=f"force-admitted: {reason.strip()}",
        rows=record.rows,
        failures=[],
        warnings=[*record.failures, *record.warnings],
    )
    release = Release(
        forced=True, reason=reason.strip(), released_at=datetime.now(UTC), quarantine_reason=record.reason
    )
    return file_batch(
        ws, source, outcome, sha256=sha256_of(source), data_docs=record.data_docs, release=release
    )


# --------------------------------------------------------------------------- the catalog


def validated_batches(ws: Workspace) -> list[BatchRecord]:
    """Every validated batch whose data file and sidecar are both present, by batch id."""
    return _records(ws.validated)


def quarantined_batches(ws: Workspace) -> list[BatchRecord]:
    """Every quarantined batch, by batch id."""
    return _records(ws.quarantine)


def find_batch(ws: Workspace, batch_id: str) -> BatchRecord:
    """The record of one batch in validated/ or quarantine/; UsageError if there is none."""
    if not batch_id or batch_id in (".", "..") or "/" in batch_id or "\\" in batch_id:
        raise UsageError(f"{batch_id!r} is not a batch id: give the file name without its extension")
    for area in (ws.quarantine, ws.validated):
        sidecar = area / f"{batch_id}.json"
        if sidecar.is_file():
            record = _load_record(sidecar)
            if _present(area / record.file):
                return record
    landed = [p for p in landed_batches(ws) if batch_id_of(p) == batch_id]
    where = " (it is still in landing/: run `ctcd validate` or the ingest flow)" if landed else ""
    raise UsageError(f"no validated or quarantined batch {batch_id!r}{where}; see `ctcd batch list`")


def _records(area: Path) -> list[BatchRecord]:
    if not area.is_dir():
        return []
    out = []
    for sidecar in sorted(area.glob("*.json")):
        if sidecar.with_name(f"{sidecar.name}.json").is_file():
            continue  # a quarantined `.json` landing (not a batch) next to its own sidecar
        record = _load_record(sidecar)
        if _present(area / record.file):
            out.append(record)
    return out


def _load_record(sidecar: Path) -> BatchRecord:
    try:
        return BatchRecord.model_validate_json(sidecar.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WorkFailed(f"{sidecar} is not a batch record: {first_line(exc)}") from exc


def _present(path: Path) -> bool:
    return path.is_symlink() or path.is_file()


def _same_path(a: Path, b: Path) -> bool:
    # Folders resolved, the last part not: a link must be compared as itself, not as its target.
    return a.parent.resolve() / a.name == b.parent.resolve() / b.name


def _taken(area: Path, batch_id: str) -> bool:
    names = (area / f"{batch_id}{ext}" for ext in ("", *BATCH_SUFFIXES, ".json"))
    return any(p.exists() or p.is_symlink() for p in names)


def _free_id(area: Path, batch_id: str) -> str:
    n = 2
    while _taken(area, f"{batch_id}__{n}"):
        n += 1
    return f"{batch_id}__{n}"


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError:  # another filesystem: copy, then remove the original once the copy is complete
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copy2(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)
        source.unlink()
