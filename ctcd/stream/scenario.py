"""The built-in drifting data stream: daily batches of Agrawal loan applications with scheduled drifts.

Day `d` of the stream is river's `synth.Agrawal(classification_function=f, seed=day_seed(seed, d),
perturbation=p)`, reproduced row for row (bit-exact) with numpy: the Mersenne Twister state of Python's
`random.Random(seed)` is copied into numpy's `MT19937`, its 32-bit words are drawn in one call, and the
variable number of words each row consumes (rejection sampling in `randint`, the conditional commission
draw) is resolved with array look-ups instead of a Python loop per value.

The scenario (`stream.events`) then moves columns (covariate shift, before labelling), resamples classes
(prior shift), switches the classification function (concept drift) and corrupts batches. Labels are kept
in separate files keyed by id and arrive `dataset.label_delay_batches` days (batches) after their features.

The Agrawal attributes map onto the config's columns by position: `dataset.numerical_features` must be
the 6 numeric attributes in the order of `AGRAWAL_NUMERIC`, `dataset.categorical_features` the 3 int-coded
categorical ones in the order of `AGRAWAL_CATEGORICAL`.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from ctcd.config import Corruption, CtcdConfig, ScenarioEvent, StreamConfig
from ctcd.errors import ConfigError, UsageError, WorkFailed
from ctcd.workspace import Workspace

AGRAWAL_NUMERIC = ("salary", "commission", "age", "hvalue", "hyears", "loan")
AGRAWAL_CATEGORICAL = ("elevel", "car", "zipcode")
# river's order of the attributes in each row (and in the words drawn for it).
RIVER_ORDER = ("salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan")
CORRUPTIONS = get_args(Corruption)
ID_BLOCK = 10**8  # ids are day * ID_BLOCK + row: unique across the stream, readable, stable if R changes
NULL_SHARE = 0.4  # share of values a null_flood blanks in each column it hits
CORRUPT_SHARE = 0.2  # share of rows hit by out_of_range, unknown_category, duplicate_ids
UNKNOWN_CATEGORY = 99  # outside every Agrawal category (elevel 0-4, car 1-20, zipcode 0-8)
MAX_POOL_FACTOR = 64  # a prior shift draws at most this many times rows_per_day to find enough of a class

_PAD = 32  # look-up slots past the drawn words, more than one row can step over
_U53 = 1.0 / 9007199254740992.0  # 2**-53, as in CPython's random()


# --------------------------------------------------------------------------- Agrawal, vectorized


def day_seed(seed: int, day: int) -> int:
    """The river seed of one day of the stream (a 64-bit hash of the stream seed and the day)."""
    return int.from_bytes(hashlib.sha256(f"agrawal:{seed}:{day}".encode()).digest()[:8], "big")


def _mt_words(seed: int, n: int) -> np.ndarray:
    """The first `n` 32-bit outputs of `random.Random(seed)`, drawn by numpy's MT19937."""
    key = random.Random(seed).getstate()[1]
    bitgen = np.random.MT19937()
    bitgen.state = {
        "bit_generator": "MT19937",
        "state": {"key": np.asarray(key[:624], dtype=np.uint32), "pos": key[624]},
    }
    return bitgen.random_raw(n).astype(np.uint32)


def _next_accepted(words: np.ndarray, n: int) -> np.ndarray:
    """For each position, the first position at or after it where `randint` over n values accepts a word.

    CPython's `randrange(n)` takes the top `n.bit_length()` bits of a word and retries while they are >= n.
    Positions past the words (the _PAD extra slots too) map to len(words): "ran out".
    """
    size = len(words)
    accepted = (words >> (32 - int(n).bit_length())) < n
    idx = np.where(accepted, np.arange(size, dtype=np.int32), np.int32(size))
    return np.concatenate([np.minimum.accumulate(idx[::-1])[::-1], np.full(_PAD, size, dtype=np.int32)])


@dataclass(frozen=True)
class AgrawalDraw:
    """Rows of the Agrawal generator by attribute name: `clean` values label the rows, `observed` are
    what an applicant reports (equal to `clean` unless `perturbation` > 0, as in river)."""

    clean: dict[str, np.ndarray]
    observed: dict[str, np.ndarray]


def _layout(words: np.ndarray, n_rows: int, perturbed: bool) -> dict[str, np.ndarray] | None:
    """Word positions of each attribute of the first `n_rows` rows, or None when the words run out."""
    n = len(words)
    u = np.full(n + _PAD, np.nan)
    u[: n - 1] = ((words[:-1] >> 5) * 67108864.0 + (words[1:] >> 6)) * _U53
    # A position that runs out of words becomes n; later look-ups stay inside the _PAD slots and end > n.
    start = np.arange(n, dtype=np.int32)
    has_commission = (20000 + 130000 * u[:n]) < 75000
    age = _next_accepted(words, 61)[start + 2 + 2 * has_commission.astype(np.int32)]
    elevel = _next_accepted(words, 5)[age + 1]
    car = _next_accepted(words, 20)[elevel + 1]
    zipcode = _next_accepted(words, 9)[car + 1]
    hyears = _next_accepted(words, 30)[zipcode + 3]  # hvalue takes the 2 words after zipcode
    end = hyears + 3  # loan takes the 2 words after hyears
    if perturbed:  # salary, [commission], age, hvalue, hyears, loan: 2 words each
        end = end + 10 + 2 * has_commission.astype(np.int32)

    # Each row starts where the previous one ended: a chain of n_rows scalar look-ups.
    ends = memoryview(end)
    chain = []
    pos = 0
    for _ in range(n_rows):
        if pos >= n:
            return None
        chain.append(pos)
        pos = ends[pos]
    if pos > n:
        return None
    starts = np.array(chain, dtype=np.int64)
    return {
        "start": starts,
        "has_commission": has_commission[starts],
        "age": age[starts],
        "elevel": elevel[starts],
        "car": car[starts],
        "zipcode": zipcode[starts],
        "hyears": hyears[starts],
        "u": u,
    }


def _perturb(
    val: np.ndarray,
    r: np.ndarray,
    lo: float | np.ndarray,
    hi: float,
    amount: float,
    span: float | None = None,
) -> np.ndarray:
    """river's `_perturb_value`, including its clamping order (lower bound tested first)."""
    span = hi - lo if span is None else span
    val = val + (span * (2 * (r - 0.5))) * amount
    return np.where(val < lo, lo, np.where(val > hi, hi, val))


def draw_agrawal(seed: int, n: int, perturbation: float = 0.0) -> AgrawalDraw:
    """The first `n` rows of river's `synth.Agrawal(seed=seed, perturbation=perturbation)`, as arrays."""
    perturbed = perturbation > 0.0
    n_words = int(n * (16.5 + 11.5 * perturbed)) + 256
    while True:
        words = _mt_words(seed, n_words)
        lay = _layout(words, n, perturbed)
        if lay is not None:
            break
        n_words *= 2
    u = lay["u"]
    s, z, hy, flag = lay["start"], lay["zipcode"], lay["hyears"], lay["has_commission"]

    def top_bits(pos: np.ndarray, k: int) -> np.ndarray:  # CPython's getrandbits(k) on one word
        return (words[pos] >> (32 - k)).astype(np.int64)

    zipcode = top_bits(z, 4)
    clean = {
        "salary": 20000 + 130000 * u[s],
        "commission": np.where(flag, 10000 + 75000 * u[s + 2], 0.0),
        "age": 20 + top_bits(lay["age"], 6),
        "elevel": top_bits(lay["elevel"], 3),
        "car": 1 + top_bits(lay["car"], 5),
        "zipcode": zipcode,
        "hvalue": ((8 - zipcode) * 100000).astype(np.float64) * (0.5 + u[z + 1]),
        "hyears": 1 + top_bits(hy, 5),
        "loan": u[hy + 1] * 500000,
    }
    if not perturbed:
        return AgrawalDraw(clean=clean, observed=dict(clean))
    p = hy + 3
    a = p + 2 + 2 * flag
    observed = {
        **clean,
        "salary": _perturb(clean["salary"], u[p], 20000, 150000, perturbation),
        "commission": np.where(
            flag, _perturb(clean["commission"], u[p + 2], 10000, 75000, perturbation), 0.0
        ),
        "age": np.round(_perturb(clean["age"], u[a], 20, 80, perturbation)).astype(np.int64),
        "hvalue": _perturb(clean["hvalue"], u[a + 2], (9 - zipcode) * 100000.0, 0, perturbation, 135000),
        "hyears": np.round(_perturb(clean["hyears"], u[a + 4], 1, 30, perturbation)).astype(np.int64),
        "loan": _perturb(clean["loan"], u[a + 6], 0, 500000, perturbation),
    }
    return AgrawalDraw(clean=clean, observed=observed)


def _between(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (lo <= x) & (x <= hi)


def _by_age(age: np.ndarray, young: np.ndarray, middle: np.ndarray, old: np.ndarray) -> np.ndarray:
    return np.where(age < 40, young, np.where(age < 60, middle, old))


def classify(rows: Mapping[str, np.ndarray], function: int) -> np.ndarray:
    """Agrawal's classification `function` (0-9) on arrays by attribute name, exactly as river computes it.

    river's quirks are kept on purpose (function 4 compares salary with loan-sized bounds), so labels
    agree with river row for row.
    """
    sal, com, age, el = rows["salary"], rows["commission"], rows["age"], rows["elevel"]
    loan, hval, hyrs = rows["loan"], rows["hvalue"], rows["hyears"]
    el_young, el_middle, el_old = np.isin(el, (0, 1)), np.isin(el, (1, 2, 3)), np.isin(el, (2, 3, 4))
    if function == 0:
        y = (age < 40) | (age >= 60)
    elif function == 1:
        y = _by_age(
            age, _between(sal, 50000, 100000), _between(sal, 75000, 125000), _between(sal, 25000, 75000)
        )
    elif function == 2:
        y = _by_age(age, el_young, el_middle, el_old)
    elif function == 3:
        y = _by_age(
            age,
            np.where(el_young, _between(sal, 25000, 75000), _between(sal, 50000, 100000)),
            np.where(el_middle, _between(sal, 50000, 100000), _between(sal, 75000, 125000)),
            np.where(el_old, _between(sal, 50000, 100000), _between(sal, 25000, 75000)),
        )
    elif function == 4:
        y = _by_age(
            age,
            np.where(
                _between(sal, 50000, 100000), _between(loan, 100000, 300000), _between(sal, 200000, 400000)
            ),
            np.where(
                _between(sal, 75000, 125000),
                (sal >= 200000) & (loan <= 400000),
                _between(sal, 300000, 500000),
            ),
            np.where(
                _between(sal, 25000, 75000), _between(loan, 300000, 500000), _between(loan, 75000, 300000)
            ),
        )
    elif function == 5:
        total = sal + com
        y = _by_age(
            age, _between(total, 50000, 100000), _between(total, 75000, 125000), _between(total, 25000, 75000)
        )
    elif function in (6, 7, 8, 9):
        if function == 6:
            disposable = 2 * (sal + com) / 3 - loan / 5 - 20000
        elif function == 7:
            disposable = 2 * (sal + com) / 3 - 5000 * el - 20000
        elif function == 8:
            disposable = 2 * (sal + com) / 3 - 5000 * el - loan / 5 - 10000
        else:
            equity = np.where(hyrs >= 20, hval * (hyrs - 20) / 10, 0.0)
            disposable = 2 * (sal + com) / 3 - 5000 * el + equity / 5 - 10000
        y = ~(disposable > 1)
    else:
        raise ConfigError(f"Agrawal classification function {function} does not exist: use 0 to 9")
    return np.asarray(y, dtype=np.int64)


def agrawal_frame(seed: int, n: int, function: int = 0, perturbation: float = 0.0) -> pd.DataFrame:
    """river's `synth.Agrawal(function, seed, perturbation=perturbation).take(n)` as a DataFrame with `y`."""
    draw = draw_agrawal(seed, n, perturbation)
    frame = pd.DataFrame({name: draw.observed[name] for name in RIVER_ORDER})
    frame["y"] = classify(draw.clean, function)
    return frame


# --------------------------------------------------------------------------- the scenario


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


# --------------------------------------------------------------------------- files and landing


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamEntry(_Record):
    """One generated batch, as recorded in `stream/manifest.json` for lineage."""

    batch_id: str
    day: int
    date: date
    rows: int
    function: int
    positive_rate: float
    features_file: str
    labels_file: str
    features_sha256: str
    labels_sha256: str
    label_arrives_on: date
    events: list[ScenarioEvent]


class StreamManifest(_Record):
    """What `ctcd data generate` wrote, with the settings that make it reproducible."""

    generator: str
    seed: int
    rows_per_day: int
    perturbation: float
    function: int
    start_date: date
    label_delay_days: int
    batches: list[StreamEntry]


class LandingReport(_Record):
    """What one `land_due` call copied into the workspace."""

    through: date
    features_landed: list[str]
    labels_landed: list[str]
    features_already_there: int
    features_pending: list[str]
    labels_pending: list[str]


BatchPlace = Literal["stream", "landing", "validated", "quarantine"]


class BatchStatus(_Record):
    """Where one generated batch is now."""

    batch_id: str
    day: int
    events: list[str]
    features_at: BatchPlace
    labels_landed: bool


class StreamStatus(_Record):
    """What is generated and what has been landed (`ctcd data status`)."""

    generated: bool
    stream_dir: str
    batches: list[BatchStatus]
    files: dict[str, int]


def stream_dir(ws: Workspace) -> Path:
    """The simulated outside world: `$CTCD_HOME/stream`."""
    return ws.root / "stream"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temporary name, then rename, so no reader sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def generate_stream(
    cfg: CtcdConfig,
    ws: Workspace,
    days: int | None = None,
    on_batch: Callable[[StreamEntry], None] | None = None,
) -> list[StreamEntry]:
    """Write days 1..`days` (default `stream.days`) to `$CTCD_HOME/stream` with a manifest of hashes."""
    stream = stream_config(cfg)
    n_days = days if days is not None else stream.days
    if n_days < 1:
        raise UsageError(f"--days must be at least 1 (got {n_days})")
    root = stream_dir(ws)
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    entries: list[StreamEntry] = []
    for day in range(1, n_days + 1):
        batch = generate_day(cfg, day)
        features, labels = batch_bytes(batch)
        entry = StreamEntry(
            batch_id=batch.batch_id,
            day=day,
            date=batch.date,
            rows=len(batch.labels),
            function=batch.function,
            positive_rate=float((batch.labels[cfg.dataset.target] == cfg.dataset.positive_label).mean()),
            features_file=f"features/{batch.batch_id}.parquet",
            labels_file=f"labels/{batch.batch_id}.parquet",
            features_sha256=_sha256(features),
            labels_sha256=_sha256(labels),
            label_arrives_on=batch.date + timedelta(days=cfg.dataset.label_delay_batches),
            events=batch.events,
        )
        _write_atomic(root / entry.features_file, features)
        _write_atomic(root / entry.labels_file, labels)
        entries.append(entry)
        if on_batch is not None:
            on_batch(entry)
    wanted = {e.features_file for e in entries} | {e.labels_file for e in entries}
    for sub in ("features", "labels"):
        for stale in (root / sub).glob("*.parquet"):
            if f"{sub}/{stale.name}" not in wanted:
                stale.unlink()
    manifest = StreamManifest(
        generator=stream.generator,
        seed=stream.seed,
        rows_per_day=stream.rows_per_day,
        perturbation=stream.perturbation,
        function=stream.function,
        start_date=stream.start_date,
        label_delay_days=cfg.dataset.label_delay_batches,
        batches=entries,
    )
    _write_atomic(root / "manifest.json", (manifest.model_dump_json(indent=2) + "\n").encode())
    return entries


def read_manifest(ws: Workspace) -> StreamManifest | None:
    """The manifest of the generated stream, or None when nothing was generated."""
    path = stream_dir(ws) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return StreamManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WorkFailed(f"{path} is not a stream manifest; rerun `ctcd data generate`") from exc


def _present(batch_id: str, *dirs: Path) -> Path | None:
    """A file (any extension, sidecars, `<id>__2` renames) or folder of this batch in `dirs`, if any."""
    for d in dirs:
        if not d.is_dir():
            continue
        for p in d.rglob(f"{batch_id}*"):
            if p.name == batch_id or p.name.startswith((batch_id + ".", batch_id + "__")):
                return p
    return None


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    """Copy a stream file, refusing one whose bytes no longer match the manifest."""
    if not src.is_file():
        raise WorkFailed(f"{src} is missing from the generated stream; rerun `ctcd data generate`")
    data = src.read_bytes()
    if _sha256(data) != sha256:
        raise WorkFailed(f"{src} changed since it was generated (sha256 differs); rerun `ctcd data generate`")
    tmp = dst.with_name(f".{dst.name}.tmp")
    tmp.write_bytes(data)
    shutil.copystat(src, tmp)
    os.replace(tmp, dst)


def land_due(cfg: CtcdConfig, ws: Workspace, today: date) -> LandingReport:
    """Copy feature files dated <= `today` into landing/ and labels that have arrived by `today` into labels/.

    Idempotent: a batch already in landing/, validated/ or quarantine/ (any extension) is never landed again,
    and labels already in labels/ are never copied again.
    """
    manifest = read_manifest(ws)
    if manifest is None:
        where = cfg.source or "the config"
        raise UsageError(f"no generated stream in {stream_dir(ws)}: run `ctcd data generate` first ({where})")
    ws.ensure()
    root = stream_dir(ws)
    landed, labelled, pending, labels_pending = [], [], [], []
    already = 0
    for entry in manifest.batches:
        if entry.date > today:
            pending.append(entry.batch_id)
        elif _present(entry.batch_id, ws.landing, ws.validated, ws.quarantine):
            already += 1
        else:
            _copy_verified(
                root / entry.features_file, ws.landing / f"{entry.batch_id}.parquet", entry.features_sha256
            )
            landed.append(entry.batch_id)
        if entry.label_arrives_on > today:
            labels_pending.append(entry.batch_id)
        elif not _present(entry.batch_id, ws.labels):
            _copy_verified(
                root / entry.labels_file, ws.labels / f"{entry.batch_id}.parquet", entry.labels_sha256
            )
            labelled.append(entry.batch_id)
    return LandingReport(
        through=today,
        features_landed=landed,
        labels_landed=labelled,
        features_already_there=already,
        features_pending=pending,
        labels_pending=labels_pending,
    )


def stream_status(ws: Workspace) -> StreamStatus:
    """Where every generated batch is now, and how many files each data area holds."""
    manifest = read_manifest(ws)
    areas: dict[BatchPlace, Path] = {
        "landing": ws.landing,
        "validated": ws.validated,
        "quarantine": ws.quarantine,
    }
    batches = []
    for entry in manifest.batches if manifest else []:
        place: BatchPlace = next((name for name, d in areas.items() if _present(entry.batch_id, d)), "stream")
        batches.append(
            BatchStatus(
                batch_id=entry.batch_id,
                day=entry.day,
                events=[describe_event(ev) for ev in entry.events],
                features_at=place,
                labels_landed=_present(entry.batch_id, ws.labels) is not None,
            )
        )
    files = {
        name: sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.is_dir() else 0
        for name, d in [*areas.items(), ("labels", ws.labels)]
    }
    return StreamStatus(
        generated=manifest is not None, stream_dir=str(stream_dir(ws)), batches=batches, files=files
    )
