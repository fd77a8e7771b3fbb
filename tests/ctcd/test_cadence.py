"""Batch cadence: a batch's time from its id, and windows counted in batches of any cadence."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest
import yaml

from ctcd import cadence
from ctcd.cadence import Timeline
from ctcd.config import load_config
from ctcd.errors import ConfigError
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("batch_id", "kind", "start"),
    [
        ("2026-01-08", "day", datetime(2026, 1, 8)),
        ("2026-W03", "week", datetime(2026, 1, 12)),  # ISO week 3 of 2026 starts on Monday 12 January
        ("2008-05", "month", datetime(2008, 5, 1)),
        ("2026-01-08T06:30:00", "time", datetime(2026, 1, 8, 6, 30)),
        ("2026-01-08 06:30", "time", datetime(2026, 1, 8, 6, 30)),
        ("2026-01-08T07:30:00+01:00", "time", datetime(2026, 1, 8, 6, 30)),  # to UTC
        ("2026-01-08T06:30Z", "time", datetime(2026, 1, 8, 6, 30)),
        ("2026-01-11__2", "day", datetime(2026, 1, 11)),  # a quarantined duplicate keeps its time
    ],
)
def test_a_batch_id_names_its_time(batch_id, kind, start):
    assert cadence.parse(batch_id) == (kind, start)
    assert cadence.batch_time(batch_id) == start


@pytest.mark.parametrize("batch_id", ["batch-001", "2026-13", "2026-02-30", "2026-W60", "loans", "20", ""])
def test_other_ids_are_not_times(batch_id):
    assert cadence.parse(batch_id) is None


def test_batch_ids_are_ordered_by_time_not_by_text():
    ids = ["2026-01-08T10:00", "2026-01-08T09:30", "b-other", "2026-01-07T23:00", "a-other"]
    assert cadence.ordered(ids) == [
        "2026-01-07T23:00",
        "2026-01-08T09:30",
        "2026-01-08T10:00",
        "a-other",
        "b-other",
    ]


def test_on_or_after_keeps_the_batch_holding_the_moment():
    assert cadence.on_or_after("2008-05", "2008-05")
    assert cadence.on_or_after("2008-05", "2008-05-20")  # May holds the 20th
    assert not cadence.on_or_after("2008-04", "2008-05")
    assert cadence.on_or_after("2026-W03", "2026-01-18")  # Sunday of week 3
    assert not cadence.on_or_after("2026-W03", "2026-01-19")
    assert not cadence.on_or_after("2026-01-08T06:00", "2026-01-08T06:30")


def test_a_monthly_timeline_counts_months():
    timeline = Timeline.of(dict.fromkeys(["2008-05", "2008-06", "2008-09"]))
    assert timeline.period == "month"
    assert timeline.batch_at(datetime(2008, 7, 15, 13, 0)) == "2008-07"  # no file yet: still a month
    assert timeline.resolve("2008-07-31") == "2008-07"
    assert timeline.last("2008-07", 3) == ["2008-05", "2008-06", "2008-07"]
    assert timeline.last("2009-01", 2) == ["2008-12", "2009-01"]
    assert timeline.batches_between("2008-11", "2009-02") == 3
    assert timeline.shift("2008-12", 2) == "2009-02"
    assert timeline.days("2008-05", "2008-06") == (date(2008, 5, 1), date(2008, 6, 30))


def test_a_weekly_timeline_counts_iso_weeks_across_the_year():
    timeline = Timeline.of(dict.fromkeys(["2025-W52", "2026-W01"]))
    assert timeline.period == "week"
    assert timeline.batch_at(date(2026, 1, 1)) == "2026-W01"  # Thursday 1 January 2026 is in week 1
    assert timeline.batch_at(date(2025, 12, 28)) == "2025-W52"
    assert timeline.last("2026-W02", 3) == ["2025-W52", "2026-W01", "2026-W02"]
    assert timeline.days("2026-W01", "2026-W01") == (date(2025, 12, 29), date(2026, 1, 4))


def test_no_timed_batch_means_daily_batches():
    for timeline in (Timeline(), Timeline.of({}), Timeline.of({"batch-001": None})):
        assert timeline.period == "day"
        assert timeline.batch_at(datetime(2026, 1, 8, 23, 59)) == "2026-01-08"
        assert timeline.last("2026-01-08", 2) == ["2026-01-07", "2026-01-08"]


def test_uneven_batches_run_from_one_batch_to_the_next():
    ids = {
        "2026-01-08T00:00": None,
        "2026-01-08T06:00": None,
        "late-export": datetime(2026, 1, 9, 13, 30),  # time from its timestamp column
        "2026-01-12": None,  # a date among timestamps: a point in time too
    }
    timeline = Timeline.of(ids)
    assert timeline.period is None
    assert timeline.batches == ("2026-01-08T00:00", "2026-01-08T06:00", "late-export", "2026-01-12")
    assert timeline.batch_at(datetime(2026, 1, 8, 5, 59)) == "2026-01-08T00:00"
    assert timeline.batch_at(datetime(2026, 1, 10)) == "late-export"
    assert timeline.batch_at(datetime(2026, 3, 1)) == "2026-01-12"  # the latest batch is open-ended
    assert timeline.batch_at(datetime(2026, 1, 7)) is None  # before the first batch
    assert timeline.last("2026-01-12", 2) == ["late-export", "2026-01-12"]
    assert timeline.batches_between("2026-01-08T06:00", "2026-01-12") == 2
    assert timeline.shift("2026-01-12", 1) is None
    assert timeline.days("2026-01-08T06:00", "late-export") == (date(2026, 1, 8), date(2026, 1, 11))
    assert timeline.days("2026-01-12", "2026-01-12") == (date(2026, 1, 12), None)


def test_keys_map_served_times_to_batches():
    served = pd.Series(
        pd.to_datetime(["2008-05-31T23:59:59Z", "2008-06-01T00:00:00Z", "2008-06-20T08:00:00Z"])
    )
    monthly = Timeline.of({"2008-05": None})
    assert list(monthly.keys(served)) == ["2008-05", "2008-06", "2008-06"]
    uneven = Timeline.of({"2008-05-31T12:00": None, "2008-06-10T00:00": None})
    assert list(uneven.keys(served)) == ["2008-05-31T12:00", "2008-05-31T12:00", "2008-06-10T00:00"]


@pytest.mark.parametrize(
    ("section", "old", "new"),
    [
        ("dataset", "label_delay_days", "label_delay_batches"),
        ("training", "window_days", "window_batches"),
        ("drift", "window_days", "window_batches"),
        ("drift", "cooldown_days", "cooldown_batches"),
        ("drift", "covariate_persistence_days", "covariate_persistence_batches"),
    ],
)
def test_an_old_day_key_fails_with_its_new_name(tmp_path, section, old, new):
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    raw["gates"]["data"]["suite"] = str(REPO / "configs" / raw["gates"]["data"]["suite"])
    raw.setdefault(section, {})[old] = 3
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert f"{section}.{old} is now {section}.{new}" in message and "\n" not in message
