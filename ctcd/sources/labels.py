"""Labels at the source (`source.labels`): from the batch's own target column, label files, or a SQL table
or query, keyed by `dataset.id_column`. They are written to `labels/<batch_id>.parquet` when batch
k + `dataset.label_delay_batches` has landed; until then the batch's ids (and its labels, when they came
with it) wait in `$CTCD_HOME/source/pending-labels/`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ctcd.batches import is_landed_or_filed, labels_file
from ctcd.config import CtcdConfig, SourceLabels
from ctcd.errors import WorkFailed
from ctcd.sources.batch import write_parquet
from ctcd.sources.files import label_frames
from ctcd.sources.sql import sql_label_frames
from ctcd.workspace import Workspace


def pending_dir(ws: Workspace) -> Path:
    """Ids (and labels that came with their batch) of landed batches whose labels are not due yet."""
    return ws.root / "source" / "pending-labels"


def source_labels(cfg: CtcdConfig, labels: SourceLabels, batch_id: str, ids: pd.Series) -> pd.DataFrame:
    """The labels of a batch's ids held by a separate labels path, table or query (maybe none yet)."""
    ds = cfg.dataset
    src = cfg.dataset.source
    if labels.path is not None:
        frames = label_frames(src, labels.path, batch_id)
    else:
        frames = sql_label_frames(src.url, labels, ds.id_column, ids.tolist())  # type: ignore[union-attr]
    out = []
    for frame in frames:
        missing = [c for c in (ds.id_column, ds.target) if c not in frame.columns]
        if missing:
            raise WorkFailed(f"the labels at dataset.source.labels have no column(s) {missing}")
        out.append(frame[[ds.id_column, ds.target]])
    if not out:
        return pd.DataFrame(columns=[ds.id_column, ds.target])
    found = pd.concat(out, ignore_index=True)
    return found[found[ds.id_column].isin(ids)].dropna().drop_duplicates(ds.id_column, keep="last")


def land_due_labels(cfg: CtcdConfig, ws: Workspace, order: list[str]) -> tuple[list[str], list[str]]:
    """Write the labels that are due into labels/; return (arrived, still pending) batch ids.

    Labels of batch k are due once batch k + dataset.label_delay_batches (in batch id order) is landed
    or filed.
    """
    labels: SourceLabels | None = getattr(cfg.dataset.source, "labels", None)
    pending = sorted(pending_dir(ws).glob("*.parquet"))
    if labels is None or not pending:
        return [], []
    ids = sorted(set(order) | {p.stem for p in pending})
    position = {b: i for i, b in enumerate(ids)}
    arrived, waiting = [], []
    for path in pending:
        batch_id = path.stem
        if labels_file(ws, batch_id) is not None:  # already there (landed by hand, or by an earlier pull)
            path.unlink()
            continue
        k = position[batch_id] + cfg.dataset.label_delay_batches
        if k >= len(ids) or not is_landed_or_filed(ws, ids[k]):
            waiting.append(batch_id)
            continue
        stash = pd.read_parquet(path)
        if labels.from_batch:
            found = stash.dropna()
        else:
            found = source_labels(cfg, labels, batch_id, stash[cfg.dataset.id_column])
        if found.empty and len(stash):
            waiting.append(batch_id)  # not at the source yet
            continue
        write_parquet(ws.labels / f"{batch_id}.parquet", found)
        path.unlink()
        arrived.append(batch_id)
    return arrived, waiting
