"""The prediction log: every served prediction, kept as Parquet parts in the workspace for monitoring.

Layout (ARCHITECTURE.md, "Prediction log format"):
`$CTCD_HOME/predictions/date=<YYYY-MM-DD>/part-<unix_ns>-<pid>.parquet`, one row per prediction with
`request_id`, `served_at` (UTC), the dataset's id column, every feature, `probability`, `prediction` and
`model_version`. The server appends records in memory on the request path; a background thread writes them
in batches (every `serving.log_flush_rows` rows or `serving.log_flush_seconds`), and `close()` writes the
rest on shutdown. A part is written under a hidden temporary name and renamed, so readers never see half a
file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ctcd.workspace import Workspace

logger = logging.getLogger("ctcd.prediction_log")

BASE_COLUMNS = ["request_id", "served_at", "probability", "prediction", "model_version"]
PARTITION_PREFIX = "date="


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
        """Write everything buffered now; return the number of rows written."""
        with self._write_lock:
            with self._lock:
                chunks, self._buffer, self._buffered_rows = self._buffer, [], 0
            if not chunks:
                return 0
            try:
                return _write_parts(self.directory, chunks)
            except Exception:
                # Keep the records for the next attempt rather than lose them.
                with self._lock:
                    self._buffer[:0] = chunks
                    self._buffered_rows += sum(len(c["request_id"]) for c in chunks)
                raise

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
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.concat([pd.DataFrame(c) if isinstance(c, dict) else c for c in chunks], ignore_index=True)
    served = pd.to_datetime(frame["served_at"], utc=True)
    frame["served_at"] = served
    for column in frame.columns:
        if frame[column].dtype == object and column not in ("request_id", "model_version"):
            frame[column] = _one_type(frame[column])
    for day, part in frame.groupby(served.dt.strftime("%Y-%m-%d"), sort=True):
        folder = directory / f"{PARTITION_PREFIX}{day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{os.getpid()}.parquet"
        tmp = folder / f".{name}.tmp"
        table = pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False)
        with tmp.open("wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)
    return len(frame)


def _one_type(values: pd.Series) -> pd.Series:
    # Ids may arrive as JSON ints or strings; one Parquet column holds one type, so mixed ids become str.
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) <= 1:
        return values
    return values.map(lambda v: None if v is None else str(v))


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
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in BASE_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("served_at", kind="stable").reset_index(drop=True)
