"""The training run's window (`tasks/training_run.py:training_window`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctcd.config import CtcdConfig
from ctcd.ct_inputs import BatchFile
from ctcd.errors import WorkFailed
from tasks.training_run import training_window


def _file(batch_id: str) -> BatchFile:
    return BatchFile(
        batch_id=batch_id, path=f"{batch_id}.parquet", sha256="0", labels_path=f"l/{batch_id}.parquet"
    )


def test_the_window_is_the_latest_batches_from_its_start(default_config: CtcdConfig, tmp_path: Path):
    cfg = default_config.model_copy(
        update={"training": default_config.training.model_copy(update={"window_batches": 2})}
    )
    files = [_file(b) for b in ("2026-01-03", "2026-01-01", "2026-01-02", "2026-01-04")]
    assert [f.batch_id for f in training_window(cfg, files, None, tmp_path)] == ["2026-01-03", "2026-01-04"]
    assert [f.batch_id for f in training_window(cfg, files, "2026-01-04", tmp_path)] == ["2026-01-04"]
    with pytest.raises(
        WorkFailed, match=r"no validated batch with arrived labels in .* on or after 2026-02-01"
    ):
        training_window(cfg, files, "2026-02-01", tmp_path)
    with pytest.raises(WorkFailed, match="run `ctcd data land` and `ctcd validate`"):
        training_window(cfg, [], None, tmp_path)
