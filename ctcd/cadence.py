"""Batch cadence: a batch's time from its id, and every window counted in batches.

A batch id names its time: an ISO date (`2026-01-08`, a daily batch), an ISO week (`2026-W03`), an ISO month
(`2008-05`) or a timestamp (`2026-01-08T12:00`, the start of the batch). Any other id gets its time from the
earliest value of the dataset's `timestamp_column` in the batch (`workspace_timeline`).

A `Timeline` orders the batches and maps a moment (a prediction's `served_at`) to the batch it belongs to:
- when every timed batch id is the same kind of period (all dates, all weeks or all months), a batch is that
  calendar period, and batches are counted as periods (a month without a file still counts as one);
- otherwise a batch runs from its time to the next batch's time, and batches are counted in the list;
- with no timed batch at all, batches are days (served date).
Ids that are not times take part only in the second case (with a timestamp column).
Monitoring windows, the labelled look-back, the label delay, cool-downs and persistence all count batches
this way, and so does the training window: one unit everywhere (a daily stream counts days).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

Period = Literal["day", "week", "month"]
Kind = Literal["day", "week", "month", "time"]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DUPLICATE = re.compile(r"__\d+$")  # a quarantined batch whose id was taken: `<id>__2`


def parse(batch_id: str) -> tuple[Kind, datetime] | None:
    """The kind of time a batch id names and its start (naive UTC); None when the id is not a time."""
    text = _DUPLICATE.sub("", str(batch_id).strip())
    try:
        if _DAY.match(text):
            return "day", datetime.combine(date.fromisoformat(text), time())
        if m := _WEEK.match(text):
            return "week", datetime.combine(date.fromisocalendar(int(m[1]), int(m[2]), 1), time())
        if m := _MONTH.match(text):
            return "month", datetime(int(m[1]), int(m[2]), 1)
        if len(text) >= 13 and text[:4].isdigit():  # a date with a time of day
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            return "time", moment
    except ValueError:
        return None
    return None


def batch_time(batch_id: str) -> datetime | None:
    """When a batch starts, from its id (naive UTC); None when the id is not a time."""
    found = parse(batch_id)
    return found[1] if found else None


def order_key(batch_id: str) -> tuple[int, datetime, str]:
    """Sort key of batch ids: timed ids by time, then the others by id."""
    moment = batch_time(batch_id)
    return (0, moment, batch_id) if moment is not None else (1, datetime.min, batch_id)


def ordered(batch_ids: Iterable[str]) -> list[str]:
    """Batch ids in time order (ids that are not times last, by id)."""
    return sorted(set(batch_ids), key=order_key)


def on_or_after(batch_id: str, start: str) -> bool:
    """Whether a batch holds or follows the moment `start` (a batch id or a time) names; by id when
    either is not a time. A day, week or month batch holds every moment of its period."""
    b, s = parse(batch_id), batch_time(start)
    if b is None or s is None:
        return batch_id >= start
    kind, moment = b
    if kind == "time":
        return moment >= s
    return _period_start(kind, _ordinal(kind, moment) + 1) > s


# --------------------------------------------------------------------------- periods


def _ordinal(period: Period, moment: datetime) -> int:
    if period == "day":
        return moment.date().toordinal()
    if period == "week":
        return (moment.date().toordinal() - 1) // 7  # ordinal 1 (0001-01-01) is a Monday
    return moment.year * 12 + moment.month - 1


def _period_start(period: Period, ordinal: int) -> datetime:
    if period == "day":
        return datetime.combine(date.fromordinal(ordinal), time())
    if period == "week":
        return datetime.combine(date.fromordinal(ordinal * 7 + 1), time())
    return datetime(ordinal // 12, ordinal % 12 + 1, 1)


def _period_id(period: Period, ordinal: int) -> str:
    start = _period_start(period, ordinal)
    if period == "day":
        return start.date().isoformat()
    if period == "week":
        year, week, _ = start.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return f"{start.year:04d}-{start.month:02d}"


@dataclass(frozen=True)
class Timeline:
    """The batches in time order, and how moments and batch ids map to positions on it.

    `period`: the calendar period every batch is (day, week, month), or None when batches run from one
    batch's time to the next (`batches` with `starts`).
    """

    period: Period | None = "day"
    batches: tuple[str, ...] = ()
    starts: tuple[datetime, ...] = ()

    @classmethod
    def of(cls, times: Mapping[str, datetime | None]) -> Timeline:
        """The timeline of batches with known times (ids that are times need none: pass None)."""
        timed: dict[str, datetime] = {}
        kinds: set[str] = set()
        for batch_id, moment in times.items():
            found = parse(batch_id)
            if found is not None:
                kinds.add(found[0])
                timed[batch_id] = found[1]
            elif moment is not None:
                timed[batch_id] = moment
        if len(kinds) == 1 and next(iter(kinds)) != "time":
            # The ids' own cadence wins: other batches fall in its periods by their time.
            return cls(next(iter(kinds)))  # type: ignore[arg-type]
        if not timed:
            return cls("day")
        order = sorted(timed, key=lambda b: (timed[b], b))
        return cls(None, tuple(order), tuple(timed[b] for b in order))

    # ------------------------------------------------------------------ positions

    def position_at(self, moment: datetime) -> int | None:
        """The position of the batch a moment (naive UTC) belongs to; None before the first batch."""
        if self.period is not None:
            return _ordinal(self.period, moment)
        i = bisect.bisect_right(self.starts, moment) - 1
        return i if i >= 0 else None

    def position(self, batch_id: str) -> int | None:
        """A batch's position (comparable and subtractable); None when it cannot be placed."""
        if self.period is None and batch_id in self.batches:
            return self.batches.index(batch_id)
        moment = batch_time(batch_id)
        return None if moment is None else self.position_at(moment)

    def batch_id(self, position: int) -> str | None:
        """The id of the batch at a position; None outside the known batches."""
        if self.period is not None:
            return _period_id(self.period, position)
        return self.batches[position] if 0 <= position < len(self.batches) else None

    def batch_at(self, moment: datetime | date) -> str | None:
        """The batch a moment belongs to (a date means its midnight)."""
        if not isinstance(moment, datetime):
            moment = datetime.combine(moment, time())
        position = self.position_at(moment)
        return None if position is None else self.batch_id(position)

    def resolve(self, text: str) -> str | None:
        """The batch that `text` names: a known batch id, or the batch holding the time it names."""
        if self.period is None and text in self.batches:
            return text
        position = self.position(text)
        return None if position is None else self.batch_id(position)

    def batches_between(self, first: str, last: str) -> int | None:
        """How many batches `last` comes after `first` (0: the same); None when one cannot be placed."""
        a, b = self.position(first), self.position(last)
        return None if a is None or b is None else b - a

    def shift(self, batch_id: str, n: int) -> str | None:
        """The batch `n` batches after `batch_id` (None when unknown)."""
        position = self.position(batch_id)
        return None if position is None else self.batch_id(position + n)

    def last(self, batch_id: str, n: int) -> list[str]:
        """The `n` batches ending with `batch_id`, oldest first (fewer at the start of the timeline)."""
        end = self.position(batch_id)
        if end is None:
            return [batch_id]
        ids = [self.batch_id(p) for p in range(end - n + 1, end + 1)]
        return [b for b in ids if b is not None]

    # ------------------------------------------------------------------ time spans

    def start(self, batch_id: str) -> datetime | None:
        """When a batch starts (naive UTC)."""
        position = self.position(batch_id)
        if position is None:
            return None
        if self.period is not None:
            return _period_start(self.period, position)
        return self.starts[position]

    def end(self, batch_id: str) -> datetime | None:
        """When the batch after it starts (None: open-ended, the latest batch of a list)."""
        position = self.position(batch_id)
        if position is None:
            return None
        if self.period is not None:
            return _period_start(self.period, position + 1)
        return self.starts[position + 1] if position + 1 < len(self.starts) else None

    def days(self, first: str, last: str) -> tuple[date | None, date | None]:
        """The served dates (inclusive) that hold the batches from `first` to `last` (None: unbounded)."""
        start, end = self.start(first), self.end(last)
        return (
            start.date() if start else None,
            (end - timedelta(microseconds=1)).date() if end else None,
        )

    def keys(self, served_at: pd.Series) -> pd.Series:
        """The batch id each served time (a datetime column) belongs to; None before the first batch."""
        import numpy as np
        import pandas as pd

        moments = pd.to_datetime(served_at, utc=True).dt.tz_convert(None)
        # One lookup per distinct served date when batches are periods of whole days.
        if self.period is not None:
            days = moments.dt.normalize()
            ids = {d: self.batch_at(d.to_pydatetime()) for d in days.unique()}
            return days.map(ids).astype(object)
        starts = np.array(self.starts, dtype="datetime64[ns]")
        found = np.searchsorted(starts, moments.to_numpy(dtype="datetime64[ns]"), side="right") - 1
        ids = np.array([*self.batches, None], dtype=object)  # position -1: before the first batch
        return pd.Series(ids[found], index=served_at.index, dtype=object)


def workspace_timeline(cfg: CtcdConfig, ws: Workspace) -> Timeline:
    """The timeline of a workspace's batches: validated, quarantined, landed and labelled ids.

    A batch whose id is not a time takes the earliest `dataset.timestamp_column` value of its file; without
    one it is left off (and when no batch has a time, batches are days).
    """
    from ctcd.batches import landed_batches, quarantined_batches, validated_batches

    records = [*validated_batches(ws), *quarantined_batches(ws)]
    names = [r.batch_id for r in records] + [p.stem for p in landed_batches(ws)]
    if ws.labels.is_dir():
        names += [p.stem for p in ws.labels.iterdir() if _is_table(p)]
    # A quarantined duplicate (`<id>__2`) is the same batch as `<id>`.
    ids: dict[str, datetime | None] = {_DUPLICATE.sub("", b) if parse(b) else b: None for b in names}
    untimed = [b for b in ids if parse(b) is None]
    if untimed and cfg.dataset.timestamp_column:
        files = {r.batch_id: r.path(ws) for r in records}
        for batch_id in untimed:
            if batch_id in files:
                ids[batch_id] = _first_timestamp(files[batch_id], cfg.dataset.timestamp_column)
    return Timeline.of({b: t for b, t in ids.items() if parse(b) is not None or t is not None})


def _is_table(p: Path) -> bool:
    return p.suffix in (".parquet", ".csv") and not p.name.startswith(".")


def _first_timestamp(p: Path, column: str) -> datetime | None:
    import pandas as pd

    try:
        if p.is_symlink():
            return None
        if p.suffix == ".parquet":
            values = pd.read_parquet(p, columns=[column])[column]
        else:
            values = pd.read_csv(p, usecols=[column])[column]
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601").dropna()
    except Exception:
        return None
    return None if stamps.empty else stamps.min().tz_convert(None).to_pydatetime()
