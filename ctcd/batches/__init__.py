"""Batches: reading landed files robustly (`reading`), and filing them as validated or quarantined, with
the catalog of filed batches (`catalog`). Import any of them from `ctcd.batches`."""

from ctcd.batches.catalog import (
    INGEST_LOCK_TIMEOUT,
    BatchRecord,
    Release,
    file_batch,
    find_batch,
    force_release,
    ingest_lock,
    is_landed_or_filed,
    quarantined_batches,
    validated_batches,
)
from ctcd.batches.reading import (
    BATCH_SUFFIXES,
    MIN_COLUMN_LIMIT,
    PARTIAL_SUFFIXES,
    BatchUnreadable,
    batch_id_of,
    column_limit,
    is_landed_file,
    labels_file,
    landed_batches,
    read_batch,
    read_labels_file,
    sha256_of,
)

__all__ = [
    "BATCH_SUFFIXES",
    "INGEST_LOCK_TIMEOUT",
    "MIN_COLUMN_LIMIT",
    "PARTIAL_SUFFIXES",
    "BatchRecord",
    "BatchUnreadable",
    "Release",
    "batch_id_of",
    "column_limit",
    "file_batch",
    "find_batch",
    "force_release",
    "ingest_lock",
    "is_landed_file",
    "is_landed_or_filed",
    "labels_file",
    "landed_batches",
    "quarantined_batches",
    "read_batch",
    "read_labels_file",
    "sha256_of",
    "validated_batches",
]
