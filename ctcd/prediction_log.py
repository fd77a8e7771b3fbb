"""The prediction log: every served prediction, kept as Parquet parts in the workspace for monitoring.

Layout (ARCHITECTURE.md, "Prediction log format"):
`$CTCD_HOME/predictions/date=<YYYY-MM-DD>/part-<unix_ns>-<pid>.parquet`, one row per prediction with
`request_id`, `served_at` (UTC), the dataset's id column, every feature, `probability`, `prediction`,
`model_version` (what the client was answered) and the rollout columns `answered_by`, `champion_version`,
`champion_probability`, `candidate_version`, `candidate_probability` (None without a rollout). The server
appends records in memory on the request path; a background thread writes them in batches (every
`serving.log_flush_rows` rows or `serving.log_flush_seconds`), and `close()` writes the rest on shutdown. A
part is written under a hidden temporary name and renamed, so readers never see half a file. Records that
cannot be written as Parquet are set aside as JSON lines,
`date=<day written>/part-<unix_ns>-<pid>.failed.jsonl`, so one bad record never blocks the ones after it.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctcd.columns import (
    ANSWERED_BY,
    CANDIDATE_VERSION,
    CHAMPION_VERSION,
    LOG_COLUMNS,
    MODEL_VERSION,
    REQUEST_ID,
    ROLLOUT_COLUMNS,
)
from ctcd.workspace import write_atomic

if TYPE_CHECKING:
    import pandas as pd

    from ctcd.workspace import Workspace

logger = logging.getLogger("ctcd.prediction_log")

BASE_COLUMNS = list(LOG_COLUMNS)
PARTITION_PREFIX = "date="
FAILED_SUFFIX = ".failed.jsonl"
_INT64 = range(-(2**63), 2**63)
_TEXT_COLUMNS = (REQUEST_ID, MODEL_VERSION, ANSWERED_BY, CHAMPION_VERSION, CANDIDATE_VERSION)


class PredictionLogWriter:
    """Buffers prediction records and writes them as Parquet parts off the request path."""

    def __init__(self, directory: Path, flush_rows: int = 500, flush_seconds: float = 2.0) -> None:
        self.directory = Path(directory)
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._buffer: list[pd.DataFrame | dict[str, Any]] = []
        self._buffered_rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        # Imported now rather than at the first flush: a server freezes what it loaded at startup out of
        # the GC's reach (ctcd.serving.service), and pyarrow's Parquet modules are a large part of it.
        import pyarrow.pandas_compat
        import pyarrow.parquet  # noqa: F401

        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    def append(self, records: pd.DataFrame | dict[str, Any]) -> None:
        """Queue records (a DataFrame, or equal-length columns by name, with `served_at`); never writes."""
        if self._closed.is_set():
            raise RuntimeError("the prediction log writer is closed")
        rows = len(records) if not isinstance(records, dict) else len(records["request_id"])
        with self._lock:
            self._buffer.append(records)
            self._buffered_rows += rows
            full = self._buffered_rows >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write everything buffered now; return the number of rows written as Parquet.

        When the whole buffer cannot be written, each appended chunk is written on its own, and a chunk
        that still fails is set aside as a `.failed.jsonl` file instead of blocking later predictions.
        """
        with self._write_lock:
            with self._lock:
                chunks, self._buffer, self._buffered_rows = self._buffer, [], 0
            if not chunks:
                return 0
            try:
                return _write_parts(self.directory, chunks)
            except Exception as exc:
                if len(chunks) == 1:
                    self._set_aside(chunks[0], exc)
                    return 0
            written = 0
            for chunk in chunks:
                try:
                    written += _write_parts(self.directory, [chunk])
                except Exception as exc:
                    self._set_aside(chunk, exc)
            return written

    def _set_aside(self, chunk: pd.DataFrame | dict[str, Any], error: Exception) -> None:
        rows = _rows(chunk)
        try:
            path = _write_failed(self.directory, rows)
        except Exception:
            logger.exception(
                "could not write %d predictions to the log under %s, nor set them aside: they are lost",
                len(rows),
                self.directory,
            )
            return
        logger.exception(
            "could not write %d predictions to the log; set aside in %s", len(rows), path, exc_info=error
        )

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.flush()
            except Exception:
                logger.exception("could not write the prediction log under %s; will retry", self.directory)


def _write_parts(directory: Path, chunks: list[pd.DataFrame | dict[str, Any]]) -> int:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _one_frame(chunks)
    served = pd.to_datetime(frame["served_at"], utc=True)
    frame["served_at"] = served
    for column in frame.columns:
        if frame[column].dtype == object and column not in _TEXT_COLUMNS:
            frame[column] = _one_type(frame[column])
    # All or nothing: every part is converted and serialised before any is written, and a part that
    # cannot be written takes back the ones before it, so a failure leaves no part behind and the caller
    # can retry the same records without duplicates.
    # The UTC day of each row as numpy days: a fraction of the cost of formatting every timestamp.
    days = np.datetime_as_string(served.dt.tz_localize(None).to_numpy().astype("datetime64[D]"))
    tables = [
        (day, pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False))
        for day, part in frame.groupby(days, sort=True)
    ]
    parts: list[tuple[Path, bytes]] = []
    for day, table in tables:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        name = f"part-{time.time_ns()}-{os.getpid()}.parquet"
        parts.append((directory / f"{PARTITION_PREFIX}{day}" / name, sink.getvalue()))
    done: list[Path] = []
    try:
        for path, data in parts:
            done.append(write_atomic(path, data, durable=True))
    except BaseException:
        for path in done:  # all or nothing: take back the parts already renamed in
            path.unlink(missing_ok=True)
        raise
    return len(frame)


def _one_frame(chunks: list[pd.DataFrame | dict[str, Any]]) -> pd.DataFrame:
    # The server appends one small dict of columns per batch; a DataFrame per chunk and a concat of
    # hundreds of them cost the writer thread (and, through the GIL, the request path) far more than
    # joining the columns: arrays are concatenated, other values kept as objects, typed by pyarrow.
    import numpy as np
    import pandas as pd

    if not all(isinstance(c, dict) for c in chunks) or len({tuple(c) for c in chunks}) != 1:
        frames = [pd.DataFrame(c) if isinstance(c, dict) else c for c in chunks]
        return pd.concat(frames, ignore_index=True)
    columns: dict[str, Any] = {}
    for name in chunks[0]:
        parts = [c[name] for c in chunks]  # type: ignore[index]
        if all(isinstance(p, np.ndarray) and p.dtype != object for p in parts):
            columns[name] = np.concatenate(parts)
        else:
            count = sum(len(p) for p in parts)
            columns[name] = np.fromiter(itertools.chain.from_iterable(parts), dtype=object, count=count)
    return pd.DataFrame(columns)


def _one_type(values: pd.Series) -> pd.Series:
    # Ids may arrive as JSON ints or strings; one Parquet column holds one type, so mixed ids become str,
    # and so do ints beyond int64, which Parquet cannot hold. Missing values (None, NaN) stay missing.
    present = [v for v in values if not _missing(v)]
    kinds = {type(v) for v in present}
    too_wide = any(isinstance(v, int) and v not in _INT64 for v in present)
    if len(kinds) <= 1 and not too_wide:
        return values
    return values.map(lambda v: None if _missing(v) else str(v))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _rows(chunk: pd.DataFrame | dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(chunk, dict):
        return chunk.to_dict("records")
    columns = {name: list(values) for name, values in chunk.items()}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _write_failed(directory: Path, rows: list[dict[str, Any]]) -> Path:
    folder = directory / f"{PARTITION_PREFIX}{datetime.now(UTC).date().isoformat()}"
    path = folder / f"part-{time.time_ns()}-{os.getpid()}{FAILED_SUFFIX}"
    lines = "".join(json.dumps(row, default=_json_value) + "\n" for row in rows)
    return write_atomic(path, lines, durable=True)


def _json_value(value: Any) -> Any:
    if isinstance(value, date):  # datetime and pandas' Timestamp too
        return value.isoformat()
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return str(value)


def read_predictions(
    ws: Workspace, start: date | str | None = None, end: date | str | None = None
) -> pd.DataFrame:
    """Every logged prediction served between `start` and `end` (UTC dates, inclusive), oldest first."""
    import pandas as pd

    low = str(start) if start is not None else None
    high = str(end) if end is not None else None
    frames = []
    for folder in sorted(ws.predictions.glob(f"{PARTITION_PREFIX}*")):
        day = folder.name[len(PARTITION_PREFIX) :]
        if (low is not None and day < low) or (high is not None and day > high):
            continue
        frames.extend(pd.read_parquet(part) for part in sorted(folder.glob("part-*.parquet")))
    # Rollout columns of parts served without a rollout are all null: left out of the concat (pandas
    # deprecates typing a column from all-null parts) and filled in below.
    frames = [
        f.drop(columns=[c for c in ROLLOUT_COLUMNS if c in f and f[c].isna().all()]) for f in frames if len(f)
    ]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in BASE_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    for column in ROLLOUT_COLUMNS:  # parts logged before rollouts existed lack them
        if column not in out.columns:
            out[column] = None
    return out.sort_values("served_at", kind="stable").reset_index(drop=True)
