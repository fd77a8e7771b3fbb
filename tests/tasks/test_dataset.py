"""The training frame: window selection, label join by id, time-ordered split."""

from __future__ import annotations

import pandas as pd
import pytest

from ctcd.errors import WorkFailed
from tasks import dataset
from tests.tasks.test_training import labelled_batches, small_config


@pytest.fixture(scope="module")
def cfg(default_config):
    return small_config(default_config, rows_per_day=100)


def test_window_takes_the_most_recent_labelled_batches():
    ids = ["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-04", "2026-01-05"]
    labelled = {"2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"}  # the 5th has no labels yet
    assert dataset.select_window(ids, labelled, 2) == ["2026-01-03", "2026-01-04"]
    assert dataset.select_window(ids, labelled, 10) == sorted(labelled)


def test_window_start_drops_older_batches_by_date_or_id():
    ids = ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert dataset.select_window(ids, set(ids), 7, "2026-01-02") == ["2026-01-02", "2026-01-03"]
    assert dataset.select_window(ids, set(ids), 7, "2026-01-02T12:00:00+00:00") == [
        "2026-01-02",
        "2026-01-03",
    ]
    assert dataset.select_window(["b-01", "b-02", "b-03"], {"b-01", "b-02", "b-03"}, 7, "b-02") == [
        "b-02",
        "b-03",
    ]
    assert dataset.select_window(ids, set(ids), 7, "2027-01-01") == []


def test_rows_without_an_arrived_label_are_dropped(cfg):
    ds = cfg.dataset
    features = pd.DataFrame({ds.id_column: [1, 2, 3], **{f: [0.0, 1.0, 2.0] for f in ds.features}})
    labels = pd.DataFrame({ds.id_column: [3, 1, 1, 9], ds.target: [1, 0, 1, None]})
    joined = dataset.join_labels(features, labels, ds)
    # id 2 has no label, id 9 no features, a repeated label keeps the last one.
    assert joined[ds.id_column].tolist() == [1, 3]
    assert joined[ds.target].tolist() == [1, 1]


def test_join_names_the_missing_column(cfg):
    ds = cfg.dataset
    with pytest.raises(WorkFailed, match=ds.target):
        dataset.join_labels(pd.DataFrame({ds.id_column: [1]}), pd.DataFrame({ds.id_column: [1]}), ds)


def test_training_frame_is_in_time_order_with_batch_ids(cfg):
    batches = labelled_batches(cfg, range(1, 4))
    frame = dataset.training_frame(list(reversed(batches)), cfg.dataset)
    assert frame[dataset.BATCH_COLUMN].is_monotonic_increasing
    ts = cfg.dataset.timestamp_column
    assert frame[ts].is_monotonic_increasing
    assert len(frame) == sum(len(b.frame) for b in batches)
    ds = cfg.dataset
    assert set(frame.columns) == {ds.id_column, ts, *ds.features, ds.target, dataset.BATCH_COLUMN}


def test_an_empty_window_is_an_error(cfg):
    with pytest.raises(WorkFailed, match="no validated batch"):
        dataset.training_frame([], cfg.dataset)


def test_split_never_mixes_time(cfg):
    frame = dataset.training_frame(labelled_batches(cfg, range(1, 6)), cfg.dataset)
    split = dataset.time_split(frame, cfg.training)
    ts = cfg.dataset.timestamp_column
    assert split.train[ts].max() <= split.validation[ts].min()
    assert split.validation[ts].max() <= split.test[ts].min()
    assert sum(split.rows.values()) == len(frame)
    assert split.rows["test"] == pytest.approx(len(frame) * cfg.training.test_fraction, abs=1)
    # The holdout is the most recent rows.
    assert split.test[ts].max() == frame[ts].max()


def test_split_digest_follows_the_content(cfg):
    frame = dataset.training_frame(labelled_batches(cfg, range(1, 4)), cfg.dataset)
    a = dataset.time_split(frame, cfg.training).digest
    assert a == dataset.time_split(frame.copy(), cfg.training).digest
    changed = frame.copy()
    changed.loc[0, cfg.dataset.target] = 1 - changed.loc[0, cfg.dataset.target]
    assert dataset.time_split(changed, cfg.training).digest != a


def test_too_few_rows_to_train_is_an_error_with_the_counts(cfg):
    frame = dataset.training_frame(labelled_batches(cfg, range(1, 2)), cfg.dataset).head(25)
    with pytest.raises(WorkFailed, match="only 25 labelled rows"):
        dataset.time_split(frame, cfg.training)
