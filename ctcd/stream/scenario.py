"""The scenario of the built-in stream: daily batches of Agrawal loan applications with scheduled drifts.

Day `d` of the stream is river's `synth.Agrawal(classification_function=f, seed=day_seed(seed, d),
perturbation=p)`, drawn by `ctcd.stream.generator`. The scenario (`stream.events`) then moves columns
(covariate shift, before labelling), resamples classes (prior shift), switches the classification function
(concept drift) and corrupts batches. Labels are kept in separate frames keyed by id; they arrive
`dataset.label_delay_batches` days (batches) after their features (`ctcd.stream.landing` writes and lands
both). Everything here is in memory and deterministic for a given config.

The Agrawal attributes map onto the config's columns by position: `dataset.numerical_features` must be
the 6 numeric attributes in the order of `AGRAWAL_NUMERIC`, `dataset.categorical_features` the 3 int-coded
categorical ones in the order of `AGRAWAL_CATEGORICAL`.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ctcd.config import Corruption, CtcdConfig, ScenarioEvent, StreamConfig
from ctcd.errors import ConfigError
from ctcd.stream.generator import AGRAWAL_CATEGORICAL, AGRAWAL_NUMERIC, classify, draw_agrawal

CORRUPTIONS = get_args(Corruption)
ID_BLOCK = 10**8  # ids are day * ID_BLOCK + row: unique across the stream, readable, stable if R changes
NULL_SHARE = 0.4  # share of values a null_flood blanks in each column it hits
CORRUPT_SHARE = 0.2  # share of rows hit by out_of_range, unknown_category, duplicate_ids
UNKNOWN_CATEGORY = 99  # outside every Agrawal category (elevel 0-4, car 1-20, zipcode 0-8)
MAX_POOL_FACTOR = 64  # a prior shift draws at most this many times rows_per_day to find enough of a class


def day_seed(seed: int, day: int) -> int:
    """The river seed of one day of the stream (a 64-bit hash of the stream seed and the day)."""
    return int.from_bytes(hashlib.sha256(f"agrawal:{seed}:{day}".encode()).digest()[:8], "big")


def feature_map(cfg: CtcdConfig) -> dict[str, str]:
    """Agrawal attribute -> the config's column name, by position; ConfigError if the dataset does not fit."""
    ds = cfg.dataset
    if len(ds.numerical_features) != len(AGRAWAL_NUMERIC) or len(ds.categorical_features) != len(
        AGRAWAL_CATEGORICAL
    ):
        raise ConfigError(
            f"{cfg.source or 'config'}: the built-in Agrawal stream needs 6 numerical_features "
            f"({', '.join(AGRAWAL_NUMERIC)}) and 3 categorical_features ({', '.join(AGRAWAL_CATEGORICAL)}) "
            "in that order; drop the stream section to bring your own data"
        )
    return dict(
        zip(
            AGRAWAL_NUMERIC + AGRAWAL_CATEGORICAL,
            ds.numerical_features + ds.categorical_features,
            strict=True,
        )
    )


def stream_config(cfg: CtcdConfig) -> StreamConfig:
    """The config's stream section, checked against the dataset; ConfigError when it cannot be generated."""
    where = cfg.source or "config"
    if cfg.stream is None:
        raise ConfigError(
            f"{where} has no stream section, so there is no built-in stream to generate: set "
            "dataset.source (files, file or sql) or bring your batches into the workspace's landing/ yourself"
        )
    if cfg.dataset.file_format != "parquet":
        raise ConfigError(f"{where}: the built-in stream writes Parquet; set dataset.file_format: parquet")
    if cfg.stream.rows_per_day >= ID_BLOCK:
        raise ConfigError(f"{where}: stream.rows_per_day must be below {ID_BLOCK}")
    feature_map(cfg)
    ds = cfg.dataset
    for i, ev in enumerate(cfg.stream.events):
        if ev.column is None:
            continue
        allowed = ds.numerical_features if ev.kind == "covariate_shift" else ds.features
        if ev.corruption == "unknown_category":
            allowed = ds.categorical_features
        if ev.column not in allowed:
            raise ConfigError(
                f"{where}: stream.events.{i}: column {ev.column!r} must be one of {', '.join(allowed)}"
            )
    return cfg.stream


def batch_date(stream: StreamConfig, day: int) -> date:
    """The calendar date of stream day `day` (day 1 is `start_date`)."""
    return stream.start_date + timedelta(days=day - 1)


def active_events(stream: StreamConfig, day: int) -> list[ScenarioEvent]:
    """Events in force on `day`, in the scenario's order.

    Without `until_day`, a corruption hits its day only; shifts and concept drift last to the end.
    """

    def last_day(ev: ScenarioEvent) -> float:
        if ev.until_day is not None:
            return ev.until_day
        return ev.day if ev.kind == "corrupt_batch" else float("inf")

    return [ev for ev in stream.events if ev.day <= day <= last_day(ev)]


def function_on(stream: StreamConfig, day: int) -> int:
    """The classification function labelling `day` (the last concept drift in force wins)."""
    drifts = [ev.function for ev in active_events(stream, day) if ev.kind == "concept_drift"]
    return drifts[-1] if drifts and drifts[-1] is not None else stream.function


def describe_event(ev: ScenarioEvent) -> str:
    """A short human-readable form of one event, e.g. `covariate_shift salary +30000`."""
    if ev.kind == "covariate_shift":
        parts = [f"x{ev.scale:g}" if ev.scale is not None else "", f"{ev.shift:+g}" if ev.shift else ""]
        return f"covariate_shift {ev.column} {' '.join(p for p in parts if p)}".rstrip()
    if ev.kind == "prior_shift":
        return f"prior_shift positive_rate={ev.positive_rate:g}"
    if ev.kind == "concept_drift":
        return f"concept_drift function={ev.function}"
    return f"corrupt_batch {ev.corruption or 'null_flood'}" + (f" {ev.column}" if ev.column else "")


@dataclass
class DayBatch:
    """One day of the stream in memory: features as they will be written (corrupted if scheduled), labels."""

    batch_id: str
    day: int
    date: date
    features: pd.DataFrame
    labels: pd.DataFrame
    function: int
    events: list[ScenarioEvent] = field(default_factory=list)
    truncated: bool = False  # the features file is cut short when written


def _rng(stream: StreamConfig, day: int, purpose: int) -> np.random.Generator:
    return np.random.default_rng([day_seed(stream.seed, day), purpose])


def _labelled_rows(
    stream: StreamConfig, day: int, n: int, events: list[ScenarioEvent]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The first `n` rows of the day after covariate shifts (by Agrawal name), and their labels."""
    draw = draw_agrawal(day_seed(stream.seed, day), n, stream.perturbation)
    clean, observed = dict(draw.clean), dict(draw.observed)
    for ev in events:
        if ev.kind == "covariate_shift" and ev.column is not None:
            scale = 1.0 if ev.scale is None else ev.scale
            shift = 0.0 if ev.shift is None else ev.shift
            clean[ev.column] = clean[ev.column] * scale + shift
            observed[ev.column] = observed[ev.column] * scale + shift
    return observed, classify(clean, function_on(stream, day))


def _day_rows(
    cfg: CtcdConfig, stream: StreamConfig, day: int, events: list[ScenarioEvent]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The day's `rows_per_day` rows and labels; under a prior shift, resampled by class from a larger pool.

    The pool is the first rows of the same day's generator, drawn without replacement, so P(x|y) stays.
    """
    rows = stream.rows_per_day
    rates = [ev.positive_rate for ev in events if ev.kind == "prior_shift" and ev.positive_rate is not None]
    if not rates:
        return _labelled_rows(stream, day, rows, events)
    n_pos = round(rates[-1] * rows)
    pool = rows
    while True:
        observed, y = _labelled_rows(stream, day, pool, events)
        positive = y == cfg.dataset.positive_label
        if positive.sum() >= n_pos and (~positive).sum() >= rows - n_pos:
            break
        if pool >= MAX_POOL_FACTOR * rows:
            raise ConfigError(
                f"{cfg.source or 'config'}: prior_shift on day {day} asks for positive_rate={rates[-1]:g}, "
                f"but classification function {function_on(stream, day)} gives too few rows of one class"
            )
        pool *= 2
    rng = _rng(stream, day, 2)
    chosen = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(positive), n_pos, replace=False),
                rng.choice(np.flatnonzero(~positive), rows - n_pos, replace=False),
            ]
        )
    )
    return {k: v[chosen] for k, v in observed.items()}, y[chosen]


def generate_day(cfg: CtcdConfig, day: int) -> DayBatch:
    """Generate day `day` (1-based) of the configured stream, in memory (no files)."""
    stream = stream_config(cfg)
    ds = cfg.dataset
    attr_of = {col: attr for attr, col in feature_map(cfg).items()}
    events = active_events(stream, day)
    # Events name config columns; the generator works with Agrawal names.
    gen_events = [
        ev.model_copy(update={"column": attr_of[ev.column]}) if ev.kind == "covariate_shift" else ev
        for ev in events
    ]
    rows = stream.rows_per_day
    observed, y = _day_rows(cfg, stream, day, gen_events)

    when = batch_date(stream, day)
    ids = np.int64(day) * ID_BLOCK + np.arange(rows, dtype=np.int64)
    features = {ds.id_column: ids}
    if ds.timestamp_column:
        micros = np.sort(_rng(stream, day, 1).integers(0, 86_400_000_000, rows))
        stamps = np.datetime64(when.isoformat(), "us") + micros.astype("timedelta64[us]")
        features[ds.timestamp_column] = pd.DatetimeIndex(stamps).tz_localize("UTC")
    for col in ds.features:
        attr = attr_of[col]
        dtype = np.int64 if attr in AGRAWAL_CATEGORICAL else np.float64
        features[col] = np.asarray(observed[attr]).astype(dtype)
    frame = pd.DataFrame(features)
    labels = pd.DataFrame({ds.id_column: ids, ds.target: y.astype(np.int64)})

    truncated = False
    rng = _rng(stream, day, 3)
    for ev in events:
        if ev.kind == "corrupt_batch":
            kind = ev.corruption or "null_flood"
            truncated = truncated or kind == "truncated"
            frame = _corrupt(frame, cfg, kind, ev.column, rng)
    return DayBatch(
        batch_id=when.isoformat(),
        day=day,
        date=when,
        features=frame,
        labels=labels,
        function=function_on(stream, day),
        events=events,
        truncated=truncated,
    )


def _corrupt(
    frame: pd.DataFrame, cfg: CtcdConfig, kind: str, column: str | None, rng: np.random.Generator
) -> pd.DataFrame:
    """Return a corrupted copy of a features frame (`truncated` corrupts the file, not the frame)."""
    ds = cfg.dataset
    out = frame.copy()
    n = len(out)
    some_rows = rng.random(n) < CORRUPT_SHARE
    if kind == "null_flood":
        for col in [column] if column else ds.features:
            blank = rng.random(n) < NULL_SHARE
            if col in ds.categorical_features:
                out[col] = out[col].astype("Int64")
            out.loc[blank, col] = None
    elif kind == "string_numbers":
        col = column or ds.numerical_features[0]
        out[col] = [f"{v:,.2f}" for v in out[col]]  # as a spreadsheet export writes them
    elif kind == "out_of_range":
        col = column or ds.numerical_features[0]
        out.loc[some_rows, col] = -out.loc[some_rows, col] - 1  # every Agrawal attribute is >= 0
    elif kind == "unknown_category":
        col = column or ds.categorical_features[0]
        out.loc[some_rows, col] = UNKNOWN_CATEGORY
    elif kind == "duplicate_ids":
        half = max(1, int(n * CORRUPT_SHARE) // 2)
        picked = rng.choice(n, 2 * half, replace=False)
        ids = out[ds.id_column].to_numpy().copy()
        ids[picked[half:]] = ids[picked[:half]]
        out[ds.id_column] = ids
    elif kind == "missing_column":
        out = out.drop(columns=[column or ds.numerical_features[0]])
    elif kind != "truncated":
        raise ConfigError(f"unknown corruption {kind!r}: use one of {', '.join(CORRUPTIONS)}")
    return out


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def batch_bytes(batch: DayBatch) -> tuple[bytes, bytes]:
    """The Parquet bytes of a batch's features file and labels file (deterministic for a given batch)."""
    features = _parquet_bytes(batch.features)
    if batch.truncated:
        features = features[: len(features) // 2]
    return features, _parquet_bytes(batch.labels)
