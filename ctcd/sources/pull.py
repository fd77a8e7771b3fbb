"""Pulling: land every batch at the source that is new into landing/, then the labels that are due.

`pull(cfg, ws, through)` lands every batch with id <= `through` that is not yet in landing/, validated/ or
quarantine/ (so pulling again lands nothing twice), then the labels that are due. Batch ids are compared
as strings (ISO dates and months sort in time order). Callers hold `batches.ingest_lock(ws)`.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ctcd.batches import is_landed_or_filed
from ctcd.config import CtcdConfig, FileSource, FilesSource, SourceLabels, SqlSource
from ctcd.errors import ConfigError, UsageError, WorkFailed
from ctcd.sources.batch import Batch, write_parquet
from ctcd.sources.files import file_batches, read_bytes, read_file, split_file, verbatim
from ctcd.sources.labels import land_due_labels, pending_dir
from ctcd.sources.sql import sql_batches, sql_rows
from ctcd.workspace import Workspace, write_atomic


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PullReport(_Record):
    """What one pull landed."""

    through: str | None
    landed: list[str] = Field(default_factory=list, description="batch ids written into landing/")
    labels_landed: list[str] = Field(default_factory=list, description="batch ids whose labels arrived")
    already_there: int = 0
    not_yet: list[str] = Field(default_factory=list, description="batches at the source after `through`")
    labels_pending: list[str] = Field(default_factory=list)


def list_batches(cfg: CtcdConfig) -> list[Batch]:
    """Every batch the configured source holds now, by batch id (string order)."""
    src = cfg.dataset.source
    if isinstance(src, FilesSource):
        found = file_batches(src)
    elif isinstance(src, FileSource):
        found = split_file(cfg, src)
    elif isinstance(src, SqlSource):
        found = sql_batches(src)
    else:
        raise UsageError("dataset.source is not a files, file or sql source")
    ids = [b.batch_id for b in found]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"dataset.source: more than one batch has the id(s) {dup[:5]}")
    return sorted(found, key=lambda b: b.batch_id)


def read_source_batch(cfg: CtcdConfig, batch: Batch) -> pd.DataFrame:
    """The batch's rows as the source holds them (the target column still in, when it is there)."""
    src = cfg.dataset.source
    if batch.frame is not None:
        return batch.frame
    if isinstance(src, FilesSource) and batch.path is not None:
        return read_file(src, batch.path)
    if isinstance(src, SqlSource):
        return sql_rows(cfg, src, batch.values)
    raise WorkFailed(f"batch {batch.batch_id} cannot be read from dataset.source")


def _ids_of(data: bytes, name: str, src: FilesSource, id_column: str) -> pd.DataFrame:
    """Only the id column of a batch file's bytes."""
    if name.lower().endswith(".csv"):
        return pd.read_csv(io.BytesIO(data), sep=src.sep, encoding=src.encoding, usecols=[id_column])
    return pd.read_parquet(io.BytesIO(data), columns=[id_column])


def _land_one(cfg: CtcdConfig, ws: Workspace, batch: Batch) -> None:
    """Write one batch into landing/ (and its ids, or labels, into the pending labels)."""
    ds, src = cfg.dataset, cfg.dataset.source
    labels: SourceLabels | None = getattr(src, "labels", None)
    if isinstance(src, FilesSource) and batch.path is not None and verbatim(cfg, src, batch.path):
        data = read_bytes(batch.path, src.storage_options)
        if labels is not None:
            try:
                ids = _ids_of(data, batch.path, src, ds.id_column)
            except (OSError, ValueError, KeyError, UnicodeDecodeError):
                ids = None  # unreadable or without ids: the gate quarantines it, no labels will match
            if ids is not None:
                write_parquet(pending_dir(ws) / f"{batch.batch_id}.parquet", ids)
        write_atomic(ws.landing / f"{batch.batch_id}{PurePosixPath(batch.path).suffix.lower()}", data)
        return
    try:
        frame = read_source_batch(cfg, batch)
    except WorkFailed:
        if isinstance(src, FilesSource) and batch.path is not None:
            # Not a table: land the bytes as they are, so the data gate quarantines it with its reason.
            data = read_bytes(batch.path, src.storage_options)
            write_atomic(ws.landing / f"{batch.batch_id}{PurePosixPath(batch.path).suffix.lower()}", data)
            return
        raise
    if labels is not None and ds.id_column in frame.columns:
        keep = (
            [ds.id_column, ds.target] if labels.from_batch and ds.target in frame.columns else [ds.id_column]
        )
        write_parquet(pending_dir(ws) / f"{batch.batch_id}.parquet", frame[keep])
    if labels is not None and labels.from_batch:
        frame = frame.drop(columns=[ds.target], errors="ignore")
    write_parquet(ws.landing / f"{batch.batch_id}.parquet", frame)


def pull(cfg: CtcdConfig, ws: Workspace, through: str | None = None) -> PullReport:
    """Land every batch at the source with id <= `through` not yet landed or filed, then due labels."""
    ws.ensure()
    pending_dir(ws).mkdir(parents=True, exist_ok=True)
    found = list_batches(cfg)
    landed, not_yet, already = [], [], 0
    for batch in found:
        if through is not None and batch.batch_id > through:
            not_yet.append(batch.batch_id)
        elif is_landed_or_filed(ws, batch.batch_id):
            already += 1
        else:
            _land_one(cfg, ws, batch)
            landed.append(batch.batch_id)
    arrived, waiting = land_due_labels(cfg, ws, [b.batch_id for b in found])
    return PullReport(
        through=through,
        landed=landed,
        labels_landed=arrived,
        already_there=already,
        not_yet=not_yet,
        labels_pending=waiting,
    )
