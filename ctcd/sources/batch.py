"""One batch at a source (`Batch`), the rule for its id, and the one way a pulled frame is written."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ctcd.batches import BATCH_SUFFIXES, PARTIAL_SUFFIXES
from ctcd.errors import ConfigError
from ctcd.workspace import write_atomic

_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+=-]*$")


@dataclass(frozen=True)
class Batch:
    """One batch at the source: its id and how to read it."""

    batch_id: str
    path: str | None = None  # a file of a `files` source
    frame: pd.DataFrame | None = None  # a slice of a `file` source
    values: tuple[Any, ...] = ()  # the batch_column values of a `sql` source


def check_id(batch_id: str, where: str) -> str:
    """A batch id usable as a file name, or a one-line ConfigError naming where it came from."""
    if not _SAFE_ID.match(batch_id) or batch_id.endswith(BATCH_SUFFIXES + PARTIAL_SUFFIXES + (".json",)):
        raise ConfigError(
            f"{where}: {batch_id!r} cannot be a batch id (letters, digits and _ . : + = - only, "
            "not starting with '.' or '-')"
        )
    return batch_id


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a frame as Parquet with the atomic writer (no reader sees half a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    write_atomic(path, sink.getvalue())
