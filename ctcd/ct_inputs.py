"""What the CT flows read from the workspace: the training window's labelled batch files, the logged
predictions by batch, and the arrived labels.

Batches follow the project's cadence (`ctcd/cadence.py`): each logged prediction belongs to the batch its
`served_at` falls in (a replay sets the date with `as_of`).
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from ctcd import batches
from ctcd.cadence import Timeline, workspace_timeline
from ctcd.columns import BATCH, SERVED_AT
from ctcd.config import CtcdConfig
from ctcd.errors import UsageError, WorkFailed
from ctcd.prediction_log import PARTITION_PREFIX, read_predictions
from ctcd.workspace import Workspace

# --------------------------------------------------------------------------- training


class BatchFile(BaseModel):
    """A validated batch on disk with its content hash and its labels file."""

    batch_id: str
    path: str
    sha256: str
    labels_path: str


def validated_files(ws: Workspace) -> list[BatchFile]:
    """Every validated batch in the workspace whose labels have arrived, oldest first."""
    found = []
    for record in batches.validated_batches(ws):
        labels = batches.labels_file(ws, record.batch_id)
        if labels is not None:
            found.append(
                BatchFile(
                    batch_id=record.batch_id,
                    path=str(record.path(ws)),
                    sha256=record.sha256,
                    labels_path=str(labels),
                )
            )
    return found


# --------------------------------------------------------------------------- monitoring


def with_batches(predictions: pd.DataFrame, timeline: Timeline) -> pd.DataFrame:
    """The predictions with the batch each was served in (`BATCH`); rows before the first batch dropped."""
    if predictions.empty:
        return predictions.assign(**{BATCH: pd.Series(dtype="object")})
    out = predictions.assign(**{BATCH: timeline.keys(predictions[SERVED_AT])})
    return out[out[BATCH].notna()].reset_index(drop=True)


def read_window(ws: Workspace, timeline: Timeline, window: list[str]) -> pd.DataFrame:
    """The logged predictions served in the batches `window` (oldest first), with their batch in `BATCH`."""
    first, last = timeline.days(window[0], window[-1])
    predictions = with_batches(read_predictions(ws, start=first, end=last), timeline)
    return predictions[predictions[BATCH].isin(window)].reset_index(drop=True)


def current_batch(ws: Workspace, timeline: Timeline, batch: str | None = None) -> str:
    """The batch to monitor: the one `batch` names (a batch id, or a date or time inside it), or else the
    latest batch with logged predictions."""
    if batch:
        found = timeline.resolve(batch)
        if found is None:
            raise UsageError(
                f"{batch!r} names no batch: give a batch id (2026-01-08, 2026-W03, 2008-05) or a date in one"
            )
        return found
    days = sorted(p.name[len(PARTITION_PREFIX) :] for p in ws.predictions.glob(f"{PARTITION_PREFIX}*"))
    for day in reversed(days):
        served = read_predictions(ws, start=day, end=day)
        if not served.empty:
            latest = pd.to_datetime(served[SERVED_AT], utc=True).max().tz_convert(None).to_pydatetime()
            found = timeline.batch_at(latest)
            if found is not None:
                return found
    raise WorkFailed(
        f"no predictions were logged under {ws.predictions}: "
        "serve traffic (or replay the demo) before monitoring"
    )


def monitored_batch(cfg: CtcdConfig, ws: Workspace, batch: str | None = None) -> str | None:
    """The batch a monitoring run of `batch` would look at, when it holds predictions (None: nothing to
    monitor)."""
    timeline = workspace_timeline(cfg, ws)
    try:
        current = current_batch(ws, timeline, batch)
    except (UsageError, WorkFailed):
        return None
    return None if read_window(ws, timeline, [current]).empty else current


def read_labels(cfg: CtcdConfig, ws: Workspace, timeline: Timeline, since: str | None = None) -> pd.DataFrame:
    """Arrived labels (id, target); files of batches before `since` are skipped (ids that are not times are
    always read)."""
    ds = cfg.dataset
    first = timeline.position(since) if since else None
    frames = []
    for path in sorted(ws.labels.glob("*")):
        if path.suffix not in (".parquet", ".csv") or path.name.startswith("."):
            continue
        position = timeline.position(path.stem)
        if first is not None and position is not None and position < first:
            continue
        frames.append(batches.read_labels_file(path, cfg))
    if not frames:
        return pd.DataFrame({ds.id_column: pd.Series(dtype="int64"), ds.target: pd.Series(dtype="int64")})
    return pd.concat(frames, ignore_index=True)
