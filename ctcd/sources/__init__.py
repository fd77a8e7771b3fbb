"""Data sources: where batches come from (`dataset.source`), and pulling what is new into landing/.

Kinds (the built-in `stream` is landed by `ctcd.stream.landing.land_due`, not here):
- `files`: `<batch_id>.parquet|csv` files in a directory or matching a glob, local or any fsspec URL;
- `file`: one time-ordered file cut into batches (`split`: fixed row counts, or runs of a period column);
- `sql`: a table or query through SQLAlchemy, one batch per value (or day, or month) of `batch_column`.

Modules: `pull` (list, read and land batches), `files` (fsspec: files and the split file), `sql`
(SQLAlchemy), `labels` (labels at the source, landed when due), `status` (`ctcd data status`), `batch`
(one source batch, its id rule, the Parquet writer).
"""

from ctcd.sources.batch import Batch, check_id
from ctcd.sources.labels import source_labels
from ctcd.sources.pull import PullReport, list_batches, pull, read_source_batch
from ctcd.sources.status import SourceBatch, SourceStatus, describe, source_status

__all__ = [
    "Batch",
    "PullReport",
    "SourceBatch",
    "SourceStatus",
    "check_id",
    "describe",
    "list_batches",
    "pull",
    "read_source_batch",
    "source_labels",
    "source_status",
]
