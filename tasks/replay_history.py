"""The histories a backtest replays (`tasks/replay.py`): the built-in Agrawal stream, river's SEA stream, or
the batches of `dataset.source`, each as a list of batches with their labels, why the data gate rejects a
batch (if it does), and where the known drifts begin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from ctcd.cadence import Timeline, parse
from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.errors import ConfigError, WorkFailed
from ctcd.stream import scenario as stream_scenario

DRIFT_KINDS = ("covariate_shift", "prior_shift", "concept_drift")
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}  # river's SEA variants: y = x1 + x2 > threshold
SYNTHETIC_START = datetime(2000, 1, 1)


@dataclass(frozen=True)
class ReplayBatch:
    """One batch of a history: position (1-based), id, start, features, labels, and why the data gate
    rejects it (if it does)."""

    day: int  # the batch's position, 1-based (a "day" of a daily stream)
    batch_id: str
    start: datetime
    features: pd.DataFrame
    labels: pd.DataFrame
    rejected: str | None = None


@dataclass(frozen=True)
class Onset:
    """The first batch of one known drift of a synthetic history."""

    day: int
    kind: str
    what: str

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.day}"


@dataclass(frozen=True)
class Scenario:
    """A history, the config ctcd runs it with, its timeline, and where its known drifts begin."""

    name: str
    cfg: CtcdConfig
    days: list[ReplayBatch]
    onsets: list[Onset]
    timeline: Timeline


def _timeline(batches: list[ReplayBatch]) -> Timeline:
    return Timeline.of({b.batch_id: b.start for b in batches})


def rejection(features: pd.DataFrame, events: list[ScenarioEvent], cfg: CtcdConfig) -> str | None:
    """Why the data gate rejects a batch: a scheduled corruption, missing feature columns or null features."""
    corrupt = [stream_scenario.describe_event(ev) for ev in events if ev.kind == "corrupt_batch"]
    if corrupt:
        return ", ".join(corrupt)
    missing = [c for c in cfg.dataset.features if c not in features.columns]
    if missing:
        return f"missing columns {missing}"
    nulls = features[cfg.dataset.features].isna().sum()
    if nulls.any():
        return f"{int(nulls.sum())} null feature values"
    return None


def agrawal_scenario(cfg: CtcdConfig, days: int, rows_per_day: int) -> Scenario:
    """The config's built-in Agrawal stream (`ctcd.stream.scenario.generate_day`) for `days` days."""
    if cfg.stream is None:
        raise ConfigError("the built-in stream needs a `stream:` section in the config")
    cfg = cfg.model_copy(
        update={"stream": cfg.stream.model_copy(update={"days": days, "rows_per_day": rows_per_day})}
    )
    out = []
    for d in range(1, days + 1):
        batch = stream_scenario.generate_day(cfg, d)
        out.append(
            ReplayBatch(
                d,
                batch.batch_id,
                datetime.combine(batch.date, datetime.min.time()),
                batch.features,
                batch.labels,
                rejection(batch.features, batch.events, cfg),
            )
        )
    onsets = [
        Onset(ev.day, ev.kind, stream_scenario.describe_event(ev))
        for ev in cfg.stream.events
        if ev.kind in DRIFT_KINDS and ev.day <= days
    ]
    return Scenario(
        f"agrawal ({cfg.dataset.name})", cfg, out, sorted(onsets, key=lambda o: o.day), _timeline(out)
    )


def _sea_seed(seed: int, day: int) -> int:
    return int.from_bytes(hashlib.sha256(f"sea:{seed}:{day}".encode()).digest()[:8], "big")


def sea_scenario(
    cfg: CtcdConfig,
    days: int,
    rows_per_day: int,
    schedule: dict[int, int],
    noise: float,
    seed: int,
    start: date = date(2026, 1, 1),
) -> Scenario:
    """river's SEA generator day by day; `schedule` maps the first day of each variant to the variant (0-3).

    The config's dataset must declare three numerical features (river's attributes 0, 1, 2, in order).
    """
    from river.datasets import synth

    ds = cfg.dataset
    if len(ds.numerical_features) != 3 or ds.categorical_features:
        raise ConfigError("the SEA history needs a dataset of exactly 3 numerical features")
    if 1 not in schedule:
        raise ValueError("the SEA schedule must say which variant starts on day 1")
    out = []
    variant = schedule[1]
    for d in range(1, days + 1):
        variant = schedule.get(d, variant)
        rows = list(synth.SEA(variant=variant, noise=noise, seed=_sea_seed(seed, d)).take(rows_per_day))
        when = start + timedelta(days=d - 1)
        ids = np.int64(d) * stream_scenario.ID_BLOCK + np.arange(rows_per_day, dtype=np.int64)
        features = pd.DataFrame({ds.id_column: ids})
        if ds.timestamp_column:
            features[ds.timestamp_column] = pd.Timestamp(when, tz="UTC") + pd.to_timedelta(
                np.linspace(0, 86_399, rows_per_day), unit="s"
            )
        for i, col in enumerate(ds.numerical_features):
            features[col] = np.array([x[i] for x, _ in rows], dtype="float64")
        labels = pd.DataFrame(
            {ds.id_column: ids, ds.target: np.array([int(y) for _, y in rows], dtype="int64")}
        )
        out.append(
            ReplayBatch(
                d,
                when.isoformat(),
                datetime.combine(when, datetime.min.time()),
                features,
                labels,
                rejection(features, [], cfg),
            )
        )
    onsets = [
        Onset(d, "concept_drift", f"SEA variant {v} (x1 + x2 > {SEA_THRESHOLDS[v]:g})")
        for d, v in sorted(schedule.items())
        if 1 < d <= days
    ]
    return Scenario(f"river SEA ({cfg.dataset.name})", cfg, out, onsets, _timeline(out))


def source_scenario(cfg: CtcdConfig, limit: int | None = None) -> Scenario:
    """The batches of `dataset.source` (files, file split or SQL), in batch-id order, with their labels
    (the batch's own target column, or the source's separate labels). No known onsets."""
    from ctcd import sources

    ds = cfg.dataset
    if ds.source is None:
        raise ConfigError("the config has no `dataset.source` (and no `stream:` section): nothing to replay")
    found = sources.list_batches(cfg)[:limit] if limit else sources.list_batches(cfg)
    if not found:
        raise WorkFailed("dataset.source holds no batch: nothing to replay")
    labels_cfg = getattr(ds.source, "labels", None)
    out = []
    for i, b in enumerate(found, start=1):
        frame = sources.read_source_batch(cfg, b)
        if ds.id_column not in frame.columns:
            raise WorkFailed(f"batch {b.batch_id} of dataset.source has no id column {ds.id_column!r}")
        if ds.target in frame.columns:
            labels = frame[[ds.id_column, ds.target]].dropna()
        elif labels_cfg is not None:
            labels = sources.source_labels(cfg, labels_cfg, b.batch_id, frame[ds.id_column])
        else:
            raise WorkFailed(f"batch {b.batch_id} of dataset.source has no target column {ds.target!r}")
        features = frame.drop(columns=[ds.target], errors="ignore")
        features = features[features[ds.id_column].isin(labels[ds.id_column])].reset_index(drop=True)
        parsed = parse(b.batch_id)
        start = parsed[1] if parsed else SYNTHETIC_START + timedelta(days=i - 1)
        out.append(ReplayBatch(i, b.batch_id, start, features, labels, rejection(features, [], cfg)))
    if any(parse(b.batch_id) is None for b in out):
        # Ids that are not times: one synthetic day per batch, in id order.
        out = [
            ReplayBatch(b.day, b.batch_id, SYNTHETIC_START + timedelta(days=b.day - 1), *_rest(b))
            for b in out
        ]
    return Scenario(f"dataset.source ({ds.name})", cfg, out, [], _timeline(out))


def _rest(b: ReplayBatch) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    return b.features, b.labels, b.rejected


def arrived_labels(scenario: Scenario, today: int, first: int) -> pd.DataFrame:
    """The labels that arrived by batch `today` (`dataset.label_delay_batches` after their batch) of the
    batches from timeline position `first` on, as `ctcd.ct_inputs.read_labels` reads the label files."""
    cfg, timeline = scenario.cfg, scenario.timeline
    delay = cfg.dataset.label_delay_batches
    due = scenario.days[: today - delay] if today > delay else []
    arrived = [d.labels for d in due if (timeline.position(d.batch_id) or 0) >= first]
    if not arrived:
        ds = cfg.dataset
        return pd.DataFrame({ds.id_column: pd.Series(dtype="int64"), ds.target: pd.Series(dtype="int64")})
    return pd.concat(arrived, ignore_index=True)
