"""The built-in stream: river equivalence, determinism, and the scenario's drifts measured on the data."""

from __future__ import annotations

import io
import shutil
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from river.datasets import synth
from scipy import stats

from ctcd.config import CtcdConfig, ScenarioEvent, StreamConfig
from ctcd.errors import ConfigError, UsageError, WorkFailed
from ctcd.stream.generator import RIVER_ORDER, agrawal_frame, classify
from ctcd.stream.landing import generate_stream, land_due, read_manifest, stream_dir
from ctcd.stream.scenario import (
    CORRUPTIONS,
    UNKNOWN_CATEGORY,
    DayBatch,
    batch_bytes,
    day_seed,
    feature_map,
    function_on,
    generate_day,
)
from ctcd.workspace import Workspace

ROWS = 1000


def _river(function: int, seed: int, n: int, perturbation: float = 0.0) -> pd.DataFrame:
    rows = list(synth.Agrawal(classification_function=function, seed=seed, perturbation=perturbation).take(n))
    frame = pd.DataFrame([x for x, _ in rows]).astype(np.float64)
    frame["y"] = [y for _, y in rows]
    return frame


def _with_stream(cfg: CtcdConfig, **changes: object) -> CtcdConfig:
    stream = StreamConfig.model_validate({**cfg.stream.model_dump(), **changes})
    return cfg.model_copy(update={"stream": stream})


def _read(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()


def _attrs(cfg: CtcdConfig, features: pd.DataFrame) -> dict[str, np.ndarray]:
    """The features of a written batch by Agrawal attribute name."""
    return {attr: features[col].to_numpy() for attr, col in feature_map(cfg).items()}


@pytest.fixture(scope="module")
def scenario(default_config: CtcdConfig) -> CtcdConfig:
    """The default scenario, smaller: 24 days of 1000 rows reach every scheduled event.

    Without the default's perturbation: the label checks below recompute labels from the reported features,
    which equal the true ones only when nothing is perturbed (the perturbation has its own tests)."""
    return _with_stream(default_config, rows_per_day=ROWS, days=24, perturbation=0.0)


@pytest.fixture(scope="module")
def days(scenario: CtcdConfig) -> dict[int, DayBatch]:
    return {day: generate_day(scenario, day) for day in range(1, scenario.stream.days + 1)}


# ----------------------------------------------------------------- equivalence with river


@pytest.mark.parametrize("function", range(10))
def test_vectorized_rows_are_rivers_rows(function: int) -> None:
    """Same seed -> the very same rows and labels as river's pure-Python generator, bit for bit."""
    seed = 1000 + function
    ours = agrawal_frame(seed, 500, function)
    pd.testing.assert_frame_equal(
        ours.astype(np.float64), _river(function, seed, 500).astype(np.float64), check_exact=True
    )


@pytest.mark.parametrize("perturbation", [0.05, 0.5])
def test_perturbed_rows_are_rivers_rows(perturbation: float) -> None:
    ours = agrawal_frame(7, 500, 5, perturbation)
    pd.testing.assert_frame_equal(
        ours.astype(np.float64), _river(5, 7, 500, perturbation).astype(np.float64), check_exact=True
    )


@pytest.mark.parametrize("function", range(10))
def test_classify_labels_rivers_rows_like_river(function: int) -> None:
    """Our classification functions on rows river generated agree with river's labels on every row."""
    ref = _river(function, 99, 1000)
    ours = classify({c: ref[c].to_numpy() for c in RIVER_ORDER}, function)
    assert (ours == ref["y"].to_numpy()).mean() == 1.0


def test_a_clean_day_is_rivers_stream_for_the_day_seed(scenario: CtcdConfig, days: dict) -> None:
    ref = _river(0, day_seed(scenario.stream.seed, 1), ROWS, scenario.stream.perturbation)
    names = feature_map(scenario)
    batch = days[1]
    for attr, col in names.items():
        np.testing.assert_array_equal(batch.features[col].to_numpy(np.float64), ref[attr].to_numpy())
    np.testing.assert_array_equal(batch.labels[scenario.dataset.target].to_numpy(), ref["y"].to_numpy())


# ----------------------------------------------------------------- determinism and layout


def test_same_seed_same_bytes_other_seed_other_bytes(scenario: CtcdConfig, tmp_path) -> None:
    cfg = _with_stream(scenario, rows_per_day=200)
    a, b, c = (Workspace.open(tmp_path / name) for name in ("a", "b", "c"))
    generate_stream(cfg, a, days=12)
    generate_stream(cfg, b, days=12)
    generate_stream(_with_stream(cfg, seed=7), c, days=12)
    files = sorted(p.relative_to(stream_dir(a)) for p in stream_dir(a).rglob("*") if p.is_file())
    assert len(files) == 2 * 12 + 1
    for rel in files:
        assert (stream_dir(a) / rel).read_bytes() == (stream_dir(b) / rel).read_bytes(), rel
    for rel in files:
        if rel.name != "manifest.json":
            assert (stream_dir(a) / rel).read_bytes() != (stream_dir(c) / rel).read_bytes(), rel


def test_batches_have_the_configured_columns_types_ids_and_times(scenario: CtcdConfig, days: dict) -> None:
    ds = scenario.dataset
    for day in (1, 20):
        f = days[day].features
        assert list(f.columns) == [ds.id_column, ds.timestamp_column, *ds.features]
        assert all(f[c].dtype == np.float64 for c in ds.numerical_features)
        assert all(f[c].dtype == np.int64 for c in ds.categorical_features)
        assert f[ds.id_column].dtype == np.int64
        stamps = f[ds.timestamp_column]
        start = pd.Timestamp(days[day].date, tz="UTC")
        assert str(stamps.dt.tz) == "UTC"
        assert stamps.min() >= start and stamps.max() < start + pd.Timedelta(days=1)
    ids = np.concatenate([b.features[ds.id_column].to_numpy() for d, b in days.items() if d != 11])
    assert len(np.unique(ids)) == len(ids) == ROWS * (len(days) - 1)


def test_labels_arrive_as_separate_files_keyed_by_id_after_the_delay(scenario: CtcdConfig, workspace) -> None:
    cfg = _with_stream(scenario, rows_per_day=100)
    entries = generate_stream(cfg, workspace, days=3)
    ds = cfg.dataset
    for entry in entries:
        assert entry.label_arrives_on == entry.date + timedelta(days=ds.label_delay_batches)
        features = pd.read_parquet(stream_dir(workspace) / entry.features_file)
        labels = pd.read_parquet(stream_dir(workspace) / entry.labels_file)
        assert list(labels.columns) == [ds.id_column, ds.target]
        joined = features.merge(labels, on=ds.id_column, how="outer", validate="one_to_one", indicator=True)
        assert (joined["_merge"] == "both").all() and len(joined) == entry.rows == 100


# ----------------------------------------------------------------- the scenario, measured


def test_covariate_shift_moves_salary_only_on_its_days(scenario: CtcdConfig, days: dict) -> None:
    salary = {d: np.nanmean(b.features["salary"].to_numpy()) for d, b in days.items()}
    clean = np.mean([salary[d] for d in range(1, 8)])
    for d in range(8, 15):
        assert salary[d] - clean == pytest.approx(30000, abs=5000), d
        assert np.nanmin(days[d].features["salary"]) >= 50000  # the whole distribution moved
    for d in range(15, 25):
        assert abs(salary[d] - clean) < 5000, d


def test_covariate_shift_happens_before_labelling(scenario: CtcdConfig) -> None:
    """With a salary-dependent function, labels follow the shifted salaries: P(y|x) is unchanged."""
    ev = ScenarioEvent(day=2, kind="covariate_shift", column="salary", scale=1.2, shift=-5000)
    cfg = _with_stream(scenario, function=1, events=[ev])
    before, after = generate_day(cfg, 1), generate_day(cfg, 2)
    ratio = after.features["salary"].mean() / before.features["salary"].mean()
    assert ratio == pytest.approx(1.2 - 5000 / before.features["salary"].mean(), abs=0.05)
    y = after.labels[cfg.dataset.target].to_numpy()
    assert (classify(_attrs(cfg, after.features), 1) == y).all()
    unshifted = _attrs(cfg, after.features) | {"salary": (after.features["salary"].to_numpy() + 5000) / 1.2}
    assert (classify(unshifted, 1) != y).mean() > 0.1  # the shift did change labels


def test_prior_shift_reaches_the_positive_rate_and_keeps_p_x_given_y(
    scenario: CtcdConfig, days: dict
) -> None:
    target = scenario.dataset.target
    rate = {d: b.labels[target].mean() for d, b in days.items()}
    for d in range(15, 20):
        assert rate[d] == pytest.approx(0.6, abs=1 / ROWS), d
    clean = [rate[d] for d in range(1, 15)]
    assert np.mean(clean) == pytest.approx(41 / 61, abs=0.02)  # function 0: age < 40 or >= 60
    assert min(abs(r - 0.6) for r in clean) > 0.02
    # P(x|y): ages of positives and of negatives look like on clean days.
    for label in (0, 1):
        shifted = np.concatenate(
            [days[d].features["age"][days[d].labels[target] == label] for d in range(15, 20)]
        )
        normal = np.concatenate(
            [days[d].features["age"][days[d].labels[target] == label] for d in range(1, 8)]
        )
        assert stats.ks_2samp(shifted, normal).pvalue > 0.001


def test_concept_drift_relabels_from_its_day(scenario: CtcdConfig, days: dict) -> None:
    target = scenario.dataset.target
    for d, batch in days.items():
        if d == 11:
            continue  # corrupted features
        x = _attrs(scenario, batch.features)
        y = batch.labels[target].to_numpy()
        function = 2 if d >= 20 else 0
        assert batch.function == function
        assert (classify(x, function) == y).all(), d
        differs = (classify(x, 0) != y).mean()
        assert differs > 0.3 if d >= 20 else differs == 0.0, (d, differs)


def test_concept_drift_ends_at_until_day(scenario: CtcdConfig) -> None:
    cfg = _with_stream(scenario, events=[ScenarioEvent(day=2, until_day=3, kind="concept_drift", function=6)])
    assert [function_on(cfg.stream, d) for d in range(1, 6)] == [0, 6, 6, 0, 0]


def test_only_the_scheduled_batch_is_corrupted_and_its_labels_still_arrive(
    scenario: CtcdConfig, days: dict
) -> None:
    ds = scenario.dataset
    for d, batch in days.items():
        nulls = batch.features[ds.features].isna().mean()
        if d == 11:
            assert (nulls > 0.3).all(), nulls
        else:
            assert nulls.max() == 0.0, d
    labels = days[11].labels
    assert len(labels) == ROWS and labels.notna().all().all()
    assert set(labels[ds.target]) == {0, 1}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_each_corruption_breaks_the_features_file(scenario: CtcdConfig, corruption: str) -> None:
    ds = scenario.dataset
    cfg = _with_stream(
        scenario, rows_per_day=200, events=[ScenarioEvent(day=2, kind="corrupt_batch", corruption=corruption)]
    )
    clean_bytes, _ = batch_bytes(generate_day(cfg, 1))
    batch = generate_day(cfg, 2)
    features, labels = batch_bytes(batch)
    assert len(_read(labels)) == 200
    clean = _read(clean_bytes)
    if corruption == "truncated":
        with pytest.raises(pa.ArrowInvalid):
            _read(features)
        return
    got = _read(features)
    salary, elevel = ds.numerical_features[0], ds.categorical_features[0]
    broken = {
        "null_flood": lambda: got[ds.features].isna().mean().min() > 0.3,
        "string_numbers": lambda: got[salary].dtype == object and got[salary].str.contains(",").any(),
        "out_of_range": lambda: (got[salary] < 0).mean() > 0.1,
        "unknown_category": lambda: (got[elevel] == UNKNOWN_CATEGORY).mean() > 0.1,
        "duplicate_ids": lambda: got[ds.id_column].duplicated().mean() > 0.05,
        "missing_column": lambda: salary not in got.columns and len(got.columns) == len(clean.columns) - 1,
    }
    assert broken[corruption]()
    assert clean[ds.features].notna().all().all() and not clean[ds.id_column].duplicated().any()
    assert (clean[salary] >= 0).all() and clean[elevel].between(0, 4).all()


# ----------------------------------------------------------------- configuration errors


def test_config_without_stream_or_with_other_columns_is_refused(default_config: CtcdConfig) -> None:
    with pytest.raises(ConfigError, match="landing"):
        generate_day(default_config.model_copy(update={"stream": None}), 1)
    fewer = default_config.dataset.model_copy(update={"numerical_features": ["salary", "age"]})
    with pytest.raises(ConfigError, match="6 numerical_features"):
        generate_day(default_config.model_copy(update={"dataset": fewer}), 1)
    bad_column = _with_stream(
        default_config, events=[{"day": 1, "kind": "covariate_shift", "column": "elevel", "shift": 1.0}]
    )
    with pytest.raises(ConfigError, match="column 'elevel'"):
        generate_day(bad_column, 1)


@pytest.mark.parametrize(
    "event",
    [
        {"day": 1, "kind": "covariate_shift", "shift": 1.0},
        {"day": 1, "kind": "prior_shift"},
        {"day": 1, "kind": "concept_drift"},
        {"day": 1, "kind": "corrupt_batch", "corruption": "gremlins"},
        {"day": 5, "until_day": 4, "kind": "concept_drift", "function": 1},
    ],
)
def test_incomplete_events_fail_at_load_time(event: dict) -> None:
    with pytest.raises(ValueError):
        ScenarioEvent.model_validate(event)


# ----------------------------------------------------------------- landing


def test_land_due_lands_what_is_due_once(scenario: CtcdConfig, workspace: Workspace) -> None:
    cfg = _with_stream(scenario, rows_per_day=50)
    entries = generate_stream(cfg, workspace, days=5)
    day = [e.date for e in entries]

    first = land_due(cfg, workspace, day[2])
    assert first.features_landed == [e.batch_id for e in entries[:3]]
    assert first.labels_landed == [e.batch_id for e in entries[:2]]  # one day of label delay
    assert first.features_pending == [e.batch_id for e in entries[3:]]
    landed = workspace.landing / f"{entries[0].batch_id}.parquet"
    assert landed.read_bytes() == (stream_dir(workspace) / entries[0].features_file).read_bytes()

    again = land_due(cfg, workspace, day[2])
    assert again.features_landed == [] and again.labels_landed == [] and again.features_already_there == 3

    # Ingest moved batches on (another format, a sidecar): they are still never landed again.
    shutil.move(landed, workspace.validated / landed.name)
    (workspace.validated / f"{entries[0].batch_id}.validation.json").write_text("{}")
    shutil.move(workspace.landing / f"{entries[1].batch_id}.parquet", workspace.quarantine / "x.tmp")
    (workspace.quarantine / f"{entries[1].batch_id}.csv").write_text("broken")
    later = land_due(cfg, workspace, day[4])
    assert later.features_landed == [e.batch_id for e in entries[3:]]
    assert later.labels_landed == [e.batch_id for e in entries[2:4]]
    assert later.labels_pending == [entries[4].batch_id]
    assert sorted(p.name for p in workspace.landing.iterdir()) == [
        f"{e.batch_id}.parquet" for e in entries[2:]
    ]


def test_land_due_refuses_a_missing_stream_and_tampered_files(
    scenario: CtcdConfig, workspace: Workspace
) -> None:
    cfg = _with_stream(scenario, rows_per_day=50)
    with pytest.raises(UsageError, match="ctcd data generate"):
        land_due(cfg, workspace, date(2026, 1, 1))
    entries = generate_stream(cfg, workspace, days=2)
    (stream_dir(workspace) / entries[1].features_file).write_bytes(b"changed")
    with pytest.raises(WorkFailed, match="sha256"):
        land_due(cfg, workspace, entries[1].date)


def test_regenerating_fewer_days_drops_stale_files(scenario: CtcdConfig, workspace: Workspace) -> None:
    cfg = _with_stream(scenario, rows_per_day=50)
    generate_stream(cfg, workspace, days=4)
    generate_stream(cfg, workspace, days=2)
    assert len(list((stream_dir(workspace) / "features").iterdir())) == 2
    assert len(read_manifest(workspace).batches) == 2
