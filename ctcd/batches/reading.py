"""Reading landed batch files robustly: finding them in landing/, reading a batch or a labels file.

Landed files are untrusted. A symbolic link is never followed (its target may lie outside the workspace):
it is refused as the link it is. A batch with far more columns than the dataset declares is refused
before it is parsed, because the data gate's cost grows with the column count (100k columns: minutes).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
from pathlib import Path

import pandas as pd

from ctcd.config import CtcdConfig
from ctcd.errors import BatchRejected, UsageError, WorkFailed
from ctcd.workspace import Workspace

BATCH_SUFFIXES = (".parquet", ".csv")
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
# A batch may carry this many columns more than the dataset declares (ids, stamps, extras the suite
# rejects by name) before it is refused unread.
MIN_COLUMN_LIMIT = 1000


class BatchUnreadable(BatchRejected):
    """A landed file cannot be read as a table (empty, truncated, wrong format or encoding...)."""


# --------------------------------------------------------------------------- finding and reading


def batch_id_of(path: Path) -> str:
    """The batch id of a file: its name without the .parquet/.csv extension (other files: the whole name)."""
    return path.stem if path.suffix.lower() in BATCH_SUFFIXES else path.name


def is_landed_file(path: Path) -> bool:
    """Whether a file in landing/ is a batch to judge (not hidden, not a partial download).

    A symbolic link counts (whatever it points at, even nothing), so the gate quarantines it with a reason.
    """
    return (
        (path.is_symlink() or path.is_file())
        and not path.name.startswith(".")
        and not path.name.endswith(PARTIAL_SUFFIXES)
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
        raise BatchUnreadable(f"{path.name}: not a readable Parquet file ({first_line(exc)})") from exc
    names = table.column_names
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise BatchUnreadable(f"{path.name}: duplicated column names {duplicated}")
    try:
        return table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError, KeyError, IndexError) as exc:
        # KeyError/IndexError: pandas metadata in the schema that names columns or indexes the file lacks.
        raise BatchUnreadable(
            f"{path.name}: Parquet columns cannot be converted ({first_line(exc)})"
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
        raise BatchUnreadable(f"{path.name}: malformed CSV ({first_line(exc)})") from exc
    ts = cfg.dataset.timestamp_column
    if ts and ts in frame.columns and frame[ts].dtype == object:
        # Unparseable stamps stay text: the suite's type expectation then rejects them, naming the column.
        with contextlib.suppress(ValueError, TypeError):
            frame[ts] = pd.to_datetime(frame[ts], format="ISO8601")
    return frame


def first_line(exc: BaseException) -> str:
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
        raise WorkFailed(f"labels file {path} cannot be read: {first_line(exc)}") from exc
    missing = [c for c in (ds.id_column, ds.target) if c not in frame.columns]
    if missing:
        raise WorkFailed(f"labels file {path} has no column(s) {missing}: it needs id_column and target")
    return frame[[ds.id_column, ds.target]]
