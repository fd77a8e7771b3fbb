"""The prediction log: batched Parquet parts per day, flushed on close, read back by date."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from ctcd.prediction_log import BASE_COLUMNS, FAILED_SUFFIX, PredictionLogWriter, read_predictions
from ctcd.workspace import Workspace


def _records(cfg, day: str, n: int, start: int = 0, ids: list | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({c: [float(i) for i in range(start, start + n)] for c in cfg.dataset.features})
    frame.insert(0, cfg.dataset.id_column, ids if ids is not None else list(range(start, start + n)))
    frame.insert(0, "served_at", [datetime.fromisoformat(f"{day}T12:00:00+00:00")] * n)
    frame.insert(0, "request_id", [f"r{i}" for i in range(start, start + n)])
    frame["probability"] = 0.25
    frame["prediction"] = 0
    frame["model_version"] = "3"
    return frame


def test_close_writes_everything_partitioned_by_day(default_config, workspace):
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 5))
    writer.append(_records(default_config, "2026-01-09", 3, start=5).to_dict("list"))  # columns by name
    assert read_predictions(workspace).empty  # nothing written before a flush
    writer.close()

    days = sorted(p.name for p in workspace.predictions.iterdir())
    assert days == ["date=2026-01-08", "date=2026-01-09"]
    log = read_predictions(workspace)
    assert list(log["request_id"]) == [f"r{i}" for i in range(8)]
    assert set(BASE_COLUMNS + default_config.dataset.features) <= set(log.columns)
    assert str(log["served_at"].dt.tz) == "UTC"
    assert list(read_predictions(workspace, start="2026-01-09")["request_id"]) == ["r5", "r6", "r7"]
    assert len(read_predictions(workspace, end="2026-01-08")) == 5
    with pytest.raises(RuntimeError, match="closed"):
        writer.append(_records(default_config, "2026-01-08", 1))


def test_background_thread_flushes_full_buffers_without_close(default_config, workspace):
    writer = PredictionLogWriter(workspace.predictions, flush_rows=4, flush_seconds=3600)
    try:
        writer.append(_records(default_config, "2026-01-08", 6))
        deadline = time.monotonic() + 30
        while read_predictions(workspace).empty and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(read_predictions(workspace)) == 6
    finally:
        writer.close()


def test_mixed_id_types_are_kept_as_text(default_config, workspace):
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 2, ids=[7, "b"]))
    writer.append(_records(default_config, "2026-01-08", 1, start=2, ids=[None]))
    writer.close()
    ids = read_predictions(workspace)[default_config.dataset.id_column].tolist()
    assert ids == ["7", "b", None]


def test_reader_ignores_unfinished_parts_and_handles_an_empty_log(default_config, workspace):
    assert list(read_predictions(workspace).columns) == BASE_COLUMNS
    folder = workspace.predictions / "date=2026-01-08"
    folder.mkdir()
    (folder / ".part-1-1.parquet.tmp").write_bytes(b"half a file")
    assert read_predictions(workspace).empty
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 1))
    writer.close()
    writer.close()  # closing twice is harmless
    assert read_predictions(workspace).loc[0, "served_at"] == datetime(2026, 1, 8, 12, tzinfo=UTC)


def _failed_rows(workspace) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(workspace.predictions.glob(f"date=*/*{FAILED_SUFFIX}"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def test_a_chunk_that_cannot_be_written_is_set_aside_and_later_ones_are_logged(
    default_config, workspace, caplog
):
    id_column = default_config.dataset.id_column
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 2))
    # Outside pandas' nanosecond range: this chunk cannot become a Parquet part.
    bad = _records(default_config, "2026-01-08", 1, start=2).to_dict("list")
    bad["served_at"] = [datetime(1, 1, 1, 12, tzinfo=UTC)]
    writer.append(bad)
    writer.append(_records(default_config, "2026-01-09", 1, start=3))
    with caplog.at_level("ERROR", logger="ctcd.prediction_log"):
        assert writer.flush() == 3
    assert "set aside" in caplog.text and "OutOfBounds" in caplog.text

    writer.append(_records(default_config, "2026-01-09", 1, start=4))
    writer.close()
    assert list(read_predictions(workspace)["request_id"]) == ["r0", "r1", "r3", "r4"]
    (aside,) = _failed_rows(workspace)
    assert aside["request_id"] == "r2" and aside[id_column] == 2
    assert aside["served_at"].startswith("0001-01-01T12:00:00")
    assert aside["model_version"] == "3"


def test_a_failed_flush_never_writes_a_record_twice(default_config, workspace):
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 2))
    bad = _records(default_config, "2026-01-09", 1, start=2).to_dict("list")
    bad["served_at"] = [datetime(9999, 12, 31, tzinfo=UTC)]
    writer.append(bad)
    writer.close()
    log = read_predictions(workspace)
    assert log["request_id"].tolist() == ["r0", "r1"]
    assert [row["request_id"] for row in _failed_rows(workspace)] == ["r2"]
    assert not list(workspace.predictions.rglob("*.tmp"))


def test_a_flush_whose_second_day_cannot_be_written_takes_back_the_first(default_config, workspace):
    # A file where the 2026-01-09 partition folder belongs: the day-09 part cannot be written after the
    # day-08 part of the same flush was; the flush must leave no part behind, so the retry chunk by chunk
    # logs each record once.
    blocker = workspace.predictions / "date=2026-01-09"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 2))
    writer.append(_records(default_config, "2026-01-09", 1, start=2))
    assert writer.flush() == 2
    writer.close()
    blocker.unlink()
    assert read_predictions(workspace)["request_id"].tolist() == ["r0", "r1"]
    assert [row["request_id"] for row in _failed_rows(workspace)] == ["r2"]


def test_ids_beyond_int64_are_kept_as_text(default_config, workspace):
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    writer.append(_records(default_config, "2026-01-08", 2, ids=[2**64, 5]))
    writer.close()
    ids = read_predictions(workspace)[default_config.dataset.id_column].tolist()
    assert ids == [str(2**64), "5"]
    assert _failed_rows(workspace) == []


@pytest.mark.parametrize("ids", [[1, 2, 3, 4, 5, 6], [1, "a", 3, None, 5, 6], [None, 2, 3, None, 5, 6]])
def test_many_small_column_chunks_are_logged_like_one_frame(default_config, workspace, tmp_path, ids):
    import numpy as np

    # What the server appends: one dict per batch, arrays for the model's columns, lists for the rest.
    frame = _records(default_config, "2026-01-08", 6, ids=ids)
    chunks = []
    for start in range(0, 6, 2):
        part = frame.iloc[start : start + 2]
        chunk = {c: part[c].tolist() for c in ("request_id", "served_at", "model_version")}
        chunk[default_config.dataset.id_column] = list(ids[start : start + 2])
        chunk |= {c: part[c].to_numpy() for c in [*default_config.dataset.features, "probability"]}
        chunk["prediction"] = part["prediction"].to_numpy().astype("int64")
        chunks.append(chunk)
    writer = PredictionLogWriter(workspace.predictions, flush_rows=10_000, flush_seconds=3600)
    for chunk in chunks:
        writer.append(chunk)
    writer.close()

    one = Workspace.open(tmp_path / "one")
    reference = PredictionLogWriter(one.predictions, flush_rows=10_000, flush_seconds=3600)
    frame[default_config.dataset.id_column] = pd.Series(ids, dtype=object)  # the ids exactly as sent
    reference.append(frame)
    reference.close()
    got, expected = read_predictions(workspace), read_predictions(one)
    pd.testing.assert_frame_equal(got[expected.columns], expected)
    assert got["probability"].dtype == np.float64 and got["prediction"].dtype == np.int64
