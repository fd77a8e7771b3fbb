"""The batch catalog: reading landed files robustly, and filing them as validated or quarantined.

A batch is `<batch_id>.parquet|csv` (id = file stem) landing in `ws.landing`. After the data gate it moves,
never deleted, to `ws.validated/` or `ws.quarantine/`, next to a sidecar `<batch_id>.json`: a
`BatchRecord` with the sha256 of its bytes (lineage), the decision and its one-line reason; a quarantined
batch's sidecar also holds the full GX validation result. Only validated batches may reach training or be
used as a reference: read them with `validated_batches(ws)` and `read_batch(path, cfg)`.

Landed files are untrusted. A symbolic link is never followed (its target may lie outside the workspace):
it is quarantined as the link it is. A batch with far more columns than the dataset declares is refused
before it is parsed, because the data gate's cost grows with the column count (100k columns: minutes).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ctcd.config import CtcdConfig
from ctcd.errors import BatchRejected, UsageError, WorkFailed
from ctcd.records import ExpectationFailure, ValidationOutcome
from ctcd.workspace import Workspace, file_lock

BATCH_SUFFIXES = (".parquet", ".csv")
_PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
# A batch may carry this many columns more than the dataset declares (ids, stamps, extras the suite
# rejects by name) before it is refused unread.
MIN_COLUMN_LIMIT = 1000
INGEST_LOCK_TIMEOUT = 1800.0  # seconds a second ingest waits for the one landing and judging batches


class BatchUnreadable(BatchRejected):
    """A landed file cannot be read as a table (empty, truncated, wrong format or encoding...)."""


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


# --------------------------------------------------------------------------- finding and reading


def batch_id_of(path: Path) -> str:
    """The batch id of a file: its name without the .parquet/.csv extension (other files: the whole name)."""
    return path.stem if path.suffix.lower() in BATCH_SUFFIXES else path.name


def _file_name(batch_id: str, source: Path) -> str:
    suffix = source.suffix.lower()
    return f"{batch_id}{suffix}" if suffix in BATCH_SUFFIXES else batch_id


def is_landed_file(path: Path) -> bool:
    """Whether a file in landing/ is a batch to judge (not hidden, not a partial download).

    A symbolic link counts (whatever it points at, even nothing), so the gate quarantines it with a reason.
    """
    return (
        (path.is_symlink() or path.is_file())
        and not path.name.startswith(".")
        and not path.name.endswith(_PARTIAL_SUFFIXES)
    )


def landed_batches(ws: Workspace, through: str | None = None) -> list[Path]:
    """Files waiting in landing/, by batch id; only ids <= `through` when given (ids compare as strings)."""
    if not ws.landing.is_dir():
        return []
    files = [p for p in ws.landing.iterdir() if is_landed_file(p)]
    if through is not None:
        files = [p for p in files if batch_id_of(p) <= through]
    return sorted(files, key=lambda p: (batch_id_of(p), p.name))


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file's bytes (of a symbolic link's target path: links are not followed)."""
    if path.is_symlink():
        return hashlib.sha256(os.fsencode(os.readlink(path))).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def column_limit(cfg: CtcdConfig) -> int:
    """The most columns a batch may have before it is refused unread (see MIN_COLUMN_LIMIT)."""
    ds = cfg.dataset
    declared = len(ds.features) + len(ds.other_columns) + 1 + (1 if ds.timestamp_column else 0)
    return max(MIN_COLUMN_LIMIT, 2 * declared)


def read_batch(path: Path, cfg: CtcdConfig) -> pd.DataFrame:
    """Read a batch file as a DataFrame; BatchUnreadable with a one-line reason if it is not a table."""
    path = Path(path)
    if path.is_symlink():
        raise BatchUnreadable(
            f"{path.name}: is a symbolic link (to {os.readlink(path)}), not a file: links are not "
            "followed; land the file itself"
        )
    suffix = path.suffix.lower()
    if suffix not in BATCH_SUFFIXES:
        raise BatchUnreadable(
            f"{path.name}: unsupported file type {suffix or '(none)'!r}: expected .parquet or .csv"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WorkFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not data:
        raise BatchUnreadable(f"{path.name}: the file is empty (0 bytes)")
    reader = _read_parquet if suffix == ".parquet" else _read_csv
    frame = reader(path, data, cfg)
    duplicated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if duplicated:
        raise BatchUnreadable(f"{path.name}: duplicated column names {duplicated}")
    return frame


def _check_width(path: Path, columns: int, cfg: CtcdConfig) -> None:
    limit = column_limit(cfg)
    if columns > limit:
        raise BatchUnreadable(
            f"{path.name}: {columns} columns, more than the {limit} a batch of dataset "
            f"{cfg.dataset.name!r} may have: refused unread"
        )


def _read_parquet(path: Path, data: bytes, cfg: CtcdConfig) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        _check_width(path, pq.ParquetFile(io.BytesIO(data)).metadata.num_columns, cfg)
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BatchUnreadable(f"{path.name}: not a readable Parquet file ({_first_line(exc)})") from exc
    names = table.column_names
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise BatchUnreadable(f"{path.name}: duplicated column names {duplicated}")
    try:
        return table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError, KeyError, IndexError) as exc:
        # KeyError/IndexError: pandas metadata in the schema that names columns or indexes the file lacks.
        raise BatchUnreadable(
            f"{path.name}: Parquet columns cannot be converted ({_first_line(exc)})"
        ) from exc


def _read_csv(path: Path, data: bytes, cfg: CtcdConfig) -> pd.DataFrame:
    encoding = cfg.gates.data.csv_encoding
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise BatchUnreadable(
            f"{path.name}: not {encoding} text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc
    except LookupError as exc:
        raise UsageError(f"gates.data.csv_encoding {encoding!r} is not an encoding Python knows") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise BatchUnreadable(f"{path.name}: the file holds only whitespace")
    try:
        header = next(csv.reader([lines[0]]))
        last = next(csv.reader([lines[-1]])) if len(lines) > 1 else header
    except csv.Error as exc:
        raise BatchUnreadable(f"{path.name}: malformed CSV ({exc})") from exc
    _check_width(path, len(header), cfg)
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise BatchUnreadable(f"{path.name}: duplicated column names {duplicated} in the header")
    if len(last) < len(header):
        raise BatchUnreadable(
            f"{path.name}: the last line has {len(last)} of {len(header)} fields: the file looks truncated"
        )
    try:
        frame = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise BatchUnreadable(f"{path.name}: malformed CSV ({_first_line(exc)})") from exc
    ts = cfg.dataset.timestamp_column
    if ts and ts in frame.columns and frame[ts].dtype == object:
        # Unparseable stamps stay text: the suite's type expectation then rejects them, naming the column.
        with contextlib.suppress(ValueError, TypeError):
            frame[ts] = pd.to_datetime(frame[ts], format="ISO8601")
    return frame


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


# --------------------------------------------------------------------------- labels


def labels_file(ws: Workspace, batch_id: str) -> Path | None:
    """The arrived labels of a batch, `labels/<batch_id>.parquet` or `.csv`, or None."""
    for suffix in BATCH_SUFFIXES:
        path = ws.labels / f"{batch_id}{suffix}"
        if path.is_file():
            return path
    return None


def read_labels_file(path: Path, cfg: CtcdConfig) -> pd.DataFrame:
    """A labels file (Parquet or CSV) as its `id_column` and `target` columns; WorkFailed if it is not one."""
    ds = cfg.dataset
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, encoding=cfg.gates.data.csv_encoding)
        else:
            frame = pd.read_parquet(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise WorkFailed(f"labels file {path} cannot be read: {_first_line(exc)}") from exc
    missing = [c for c in (ds.id_column, ds.target) if c not in frame.columns]
    if missing:
        raise WorkFailed(f"labels file {path} has no column(s) {missing}: it needs id_column and target")
    return frame[[ds.id_column, ds.target]]


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
    _write_json(area / f"{batch_id}.json", record.model_dump(mode="json"))
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
        raise WorkFailed(f"{sidecar} is not a batch record: {_first_line(exc)}") from exc


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


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError:  # another filesystem: copy, then remove the original once the copy is complete
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copy2(source, tmp, follow_symlinks=False)
        os.replace(tmp, target)
        source.unlink()
