"""The training frame: validated batches of a window joined with their labels, split in time order.

Rows whose label has not arrived yet are not trainable. The split never shuffles across time: the oldest
rows train, the next ones validate (early stopping, model choice), the most recent ones are the holdout.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctcd import cadence, columns
from ctcd.config import DatasetConfig, TrainingConfig
from ctcd.errors import WorkFailed

BATCH_COLUMN = columns.BATCH  # internal: never clashes with a dataset column
MIN_TRAIN_ROWS = 20


@dataclass(frozen=True)
class BatchInput:
    """One validated batch used for training: its id, content hash, source and labelled rows."""

    batch_id: str
    sha256: str
    source: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class Split:
    """Train, validation and test frames in time order, with a content digest of all three."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    digest: str

    @property
    def rows(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def select_window(
    batch_ids: Sequence[str],
    labelled: Collection[str],
    window_batches: int,
    window_start: str | None = None,
) -> list[str]:
    """The most recent `window_batches` labelled batches (in time order), none before `window_start`."""
    usable = cadence.ordered(b for b in set(batch_ids) if b in labelled)
    if window_start:
        usable = [b for b in usable if cadence.on_or_after(b, window_start)]
    return usable[-window_batches:]


def join_labels(features: pd.DataFrame, labels: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """The batch's rows that have an arrived label, with the target column joined by id."""
    checks = (
        ("batch", features, dataset.id_column),
        ("labels", labels, dataset.id_column),
        ("labels", labels, dataset.target),
    )
    for name, frame, col in checks:
        if col not in frame.columns:
            raise WorkFailed(f"the {name} frame has no column {col!r}: check dataset.id_column and target")
    found = labels[[dataset.id_column, dataset.target]].dropna()
    found = found.drop_duplicates(dataset.id_column, keep="last")
    rows = features.drop(columns=[dataset.target], errors="ignore")
    return rows.merge(found, on=dataset.id_column, how="inner", validate="many_to_one")


def training_frame(batches: Sequence[BatchInput], dataset: DatasetConfig) -> pd.DataFrame:
    """All labelled rows of the batches in time order, with the batch id in `BATCH_COLUMN`."""
    if not batches:
        raise WorkFailed("no validated batch with arrived labels is in the training window: ingest more data")
    keep = [dataset.id_column, *dataset.features, dataset.target]
    if dataset.timestamp_column:
        keep.insert(1, dataset.timestamp_column)
    parts = []
    position = {b: i for i, b in enumerate(cadence.ordered(b.batch_id for b in batches))}
    ordered = sorted(batches, key=lambda b: position[b.batch_id])
    for b in ordered:
        missing = [c for c in keep if c not in b.frame.columns]
        if missing:
            raise WorkFailed(f"batch {b.batch_id} has no column(s) {missing}: was it validated?")
        part = b.frame[keep]
        ts = dataset.timestamp_column
        if ts and not part[ts].is_monotonic_increasing:  # within a batch, by time (batches stay in order)
            part = part.sort_values(ts, kind="stable")
        parts.append(part)
    # One concatenation, and the batch column built from the parts' lengths (no per-part copy).
    frame = pd.concat(parts, ignore_index=True)
    ids = np.array([b.batch_id for b in ordered], dtype=object)
    frame[BATCH_COLUMN] = np.repeat(ids, [len(p) for p in parts])
    return frame


def frame_digest(frame: pd.DataFrame) -> str:
    """A content hash of a frame (values, index and column names), stable across processes."""
    h = hashlib.sha256()
    h.update(",".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def time_split(frame: pd.DataFrame, training: TrainingConfig) -> Split:
    """Split a time-ordered frame: oldest rows train, then validation, the most recent rows test."""
    n = len(frame)
    n_test = math.ceil(n * training.test_fraction)
    n_val = math.ceil(n * training.validation_fraction)
    n_train = n - n_val - n_test
    if n_train < MIN_TRAIN_ROWS:
        raise WorkFailed(
            f"only {n} labelled rows are in the training window ({n_train} to train on, at least "
            f"{MIN_TRAIN_ROWS} needed): wait for more labels or raise training.window_batches"
        )

    def rows(start: int, stop: int) -> pd.DataFrame:
        # Views of the frame's rows with a fresh index: no copy of a window-sized frame.
        return frame.iloc[start:stop].set_axis(pd.RangeIndex(stop - start), axis=0, copy=False)

    return Split(
        train=rows(0, n_train),
        validation=rows(n_train, n_train + n_val),
        test=rows(n_train + n_val, n),
        digest=frame_digest(frame),
    )
