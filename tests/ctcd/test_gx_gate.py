"""The data gate through Great Expectations: every corruption type ends in quarantine with its bytes kept."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctcd.batches import file_batch, read_batch, validated_batches
from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.gx_gate import open_gate
from ctcd.stream.scenario import CORRUPTIONS, generate_day
from ctcd.workspace import Workspace
from tasks.ingest import judge_batch_file, open_data_gate
from tasks.suite import bootstrap_suite, dump_suite
from tasks.validation import judge


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, default_config: CtcdConfig):
    """A workspace, a config whose suite was bootstrapped from day 1, and an open gate (GX import: slow)."""
    root = tmp_path_factory.mktemp("gate")
    suite_path = root / "suite.json"
    suite = bootstrap_suite(
        generate_day(default_config, 1).features, default_config.dataset, default_config.gates.data
    )
    suite_path.write_text(dump_suite(suite), encoding="utf-8")
    data = default_config.gates.data.model_copy(update={"suite": suite_path, "keep_results": 6})
    cfg = default_config.model_copy(update={"gates": default_config.gates.model_copy(update={"data": data})})
    ws = Workspace.open(root / "home")
    return cfg, ws, open_data_gate(cfg, ws)


@pytest.fixture(scope="module")
def clean(default_config: CtcdConfig) -> pd.DataFrame:
    """Day 2 of the default stream, untouched."""
    return generate_day(default_config, 2).features


def _land(ws: Workspace, name: str, data: bytes) -> Path:
    path = ws.landing / name
    path.write_bytes(data)
    return path


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.to_parquet(sink, index=False)
    return sink.getvalue()


def _judge_bytes(setup, name: str, data: bytes):
    cfg, ws, gate = setup
    path = _land(ws, name, data)
    record = judge_batch_file(cfg, ws, path, gate)
    return record, ws


def _assert_quarantined(record, ws: Workspace, data: bytes, *phrases: str) -> None:
    assert record.status == "quarantined"
    kept = ws.quarantine / record.file
    assert kept.read_bytes() == data, "the original bytes must be kept"
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert not (ws.landing / record.file).exists()
    sidecar = json.loads((ws.quarantine / f"{record.batch_id}.json").read_text())
    assert sidecar["status"] == "quarantined" and "\n" not in sidecar["reason"]
    for phrase in phrases:
        assert phrase in record.reason, record.reason


def test_clean_batch_is_validated_with_sidecar_and_data_docs(setup, clean):
    data = _parquet(clean)
    record, ws = _judge_bytes(setup, "2026-01-02.parquet", data)
    assert record.status == "validated", record.reason
    assert (ws.validated / "2026-01-02.parquet").read_bytes() == data
    sidecar = json.loads((ws.validated / "2026-01-02.json").read_text())
    for key in ("batch_id", "sha256", "rows", "validated_at", "suite", "warnings", "data_docs"):
        assert key in sidecar
    assert sidecar["rows"] == len(clean) and sidecar["suite"] == "agrawal-loans"
    index = Path(setup[2].publish_docs().removeprefix("file://"))
    page = Path(sidecar["data_docs"].removeprefix("file://"))
    assert index.is_file() and page.name in index.read_text()
    assert page.is_file() and page.suffix == ".html" and ws.gx_root in page.parents
    assert [r.batch_id for r in validated_batches(ws)] == ["2026-01-02"]
    cfg = setup[0]
    assert read_batch(ws.validated / record.file, cfg).shape == clean.shape


def test_shifted_mean_passes_with_a_warning(setup, clean):
    shifted = clean.copy()
    shifted["salary"] = shifted["salary"] + 30_000
    record, _ = _judge_bytes(setup, "shifted.parquet", _parquet(shifted))
    assert record.status == "validated"
    assert [w.expectation for w in record.warnings] == ["expect_column_mean_to_be_between"]
    assert record.warnings[0].severity == "warning" and record.reason.startswith("accepted with 1 warning")


def _nulls(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[::3], "commission"] = np.nan
    return f


def _strings(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f["salary"] = [f"{v:,.2f}" for v in f["salary"]]
    return f


def _out_of_range(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[:50], "age"] = -f.loc[f.index[:50], "age"]
    return f


def _unknown_category(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[:7], "car"] = 99
    return f


def _duplicate_ids(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[1:11], "application_id"] = f["application_id"].iloc[0]
    return f


def _infinite(f: pd.DataFrame) -> pd.DataFrame:
    f = f.copy()
    f.loc[f.index[:3], "loan"] = np.inf
    return f


@pytest.mark.parametrize(
    ("corrupt", "phrases"),
    [
        (_nulls, ["commission", "expect_column_values_to_not_be_null", "unexpected values (33."]),
        (_strings, ["salary", "expect_column_values_to_be_in_type_list"]),
        (_out_of_range, ["age: 50 unexpected values", "expect_column_values_to_be_between"]),
        (_unknown_category, ["car: 7 unexpected values", "expect_column_values_to_be_in_set"]),
        (_duplicate_ids, ["application_id", "expect_column_values_to_be_unique"]),
        (_infinite, ["loan: 3 unexpected values", "expect_column_values_to_be_between"]),
        (lambda f: f.drop(columns=["hyears"]), ["missing columns ['hyears']", "match_set"]),
        (lambda f: f.assign(extra=1), ["unexpected columns ['extra']", "match_set"]),
        (lambda f: f.iloc[:0], ["table: observed 0", "expect_table_row_count_to_be_between"]),
    ],
    ids=[
        "null-flood",
        "numbers-as-strings",
        "out-of-range",
        "unknown-category",
        "duplicate-ids",
        "infinite",
        "missing-column",
        "extra-column",
        "zero-rows",
    ],
)
def test_each_corruption_is_quarantined_with_its_reason(setup, clean, corrupt, phrases, request):
    data = _parquet(corrupt(clean))
    record, ws = _judge_bytes(setup, f"{request.node.callspec.id}.parquet", data)
    _assert_quarantined(record, ws, data, "rejected:", *phrases)
    assert record.result is not None and record.result["success"] is False
    assert record.failures and all(f.severity == "critical" for f in record.failures)


@pytest.mark.parametrize(
    ("name", "make", "phrase"),
    [
        ("empty.parquet", lambda f: b"", "the file is empty"),
        ("text.parquet", lambda f: f.to_csv(index=False).encode(), "not a readable Parquet file"),
        ("truncated.parquet", lambda f: _parquet(f)[: len(_parquet(f)) // 2], "not a readable Parquet file"),
        ("notes.json", lambda f: b'{"a": 1}', "unsupported file type '.json'"),
        ("utf16.csv", lambda f: f.to_csv(index=False).encode("utf-16"), "not utf-8 text"),
        (
            "dupheader.csv",
            lambda f: f.rename(columns={"loan": "salary"}).to_csv(index=False).encode(),
            "duplicated column names ['salary']",
        ),
        ("cut.csv", lambda f: f.to_csv(index=False).encode()[:-40], "looks truncated"),
    ],
)
def test_unreadable_files_are_quarantined_not_crashes(setup, clean, name, make, phrase):
    data = make(clean)
    record, ws = _judge_bytes(setup, name, data)
    _assert_quarantined(record, ws, data, "unreadable", phrase)
    assert record.result is None and record.rows is None


def test_clean_csv_batch_is_validated(setup, clean):
    record, _ = _judge_bytes(setup, "2026-01-03.csv", clean.to_csv(index=False).encode())
    assert record.status == "validated", record.reason


def test_failure_details_carry_counts_and_gx_decides(setup, clean):
    gate = setup[2]
    run = gate.validate(_nulls(clean), "details")
    assert run.success is False and run.detailed is True
    outcome = judge(run.result, "details")
    nulls = next(f for f in outcome.failures if f.expectation == "expect_column_values_to_not_be_null")
    assert nulls.unexpected_count == len(clean[::3]) and nulls.column == "commission"
    ok = gate.validate(clean, "boolean-only")
    assert ok.success is True and ok.detailed is False


def test_old_results_are_pruned(setup, clean):
    cfg, ws, gate = setup
    for i in range(3):
        gate.validate(clean, f"prune-{i}")
    results = list((ws.gx_root / "uncommitted" / "validations").rglob("*.json"))
    assert len(results) <= cfg.gates.data.keep_results


def test_a_validated_id_cannot_be_validated_twice(setup, clean):
    _, ws, gate = setup
    data = _parquet(clean)
    first, _ = _judge_bytes(setup, "2026-01-05.parquet", data)
    assert first.status == "validated"
    path = _land(ws, "2026-01-05.parquet", data)
    outcome = judge(gate.validate(clean, "2026-01-05").result, "2026-01-05", rows=len(clean))
    with pytest.raises(Exception, match="already in"):
        file_batch(ws, path, outcome, sha256="x")
    assert path.exists() and (ws.validated / "2026-01-05.parquet").exists()


def test_cli_validate_batch_and_suite_commands(workspace: Workspace, default_config: CtcdConfig, tmp_path):
    """The acceptance path with the shipped suite: clean exits 0, the scenario's corrupted day exits 1."""
    from typer.testing import CliRunner

    from ctcd.app.cli import app
    from ctcd.errors import BatchRejected
    from ctcd.stream.scenario import batch_bytes

    config = str(default_config.source)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for day in (2, 11):  # day 11 is the default scenario's null flood
        features, _ = batch_bytes(generate_day(default_config, day))
        (incoming / f"2026-01-{day:02d}.parquet").write_bytes(features)
    bystander = workspace.landing / "2026-01-03.parquet"
    bystander.write_bytes(b"untouched")
    corrupted = (incoming / "2026-01-11.parquet").read_bytes()
    runner = CliRunner()

    ok = runner.invoke(app, ["validate", str(incoming / "2026-01-02.parquet"), "-c", config])
    assert ok.exit_code == 0, ok.output
    assert "2026-01-02: validated" in ok.output

    bad = runner.invoke(app, ["validate", str(incoming / "2026-01-11.parquet"), "--json", "-c", config])
    assert isinstance(bad.exception, BatchRejected) and bad.exception.exit_code == 1
    records = json.loads(bad.output)
    assert (
        records[0]["status"] == "quarantined"
        and "expect_column_values_to_not_be_null" in records[0]["reason"]
    )
    assert (workspace.quarantine / "2026-01-11.parquet").read_bytes() == corrupted
    assert json.loads((workspace.quarantine / "2026-01-11.json").read_text())["result"]["success"] is False
    assert bystander.read_bytes() == b"untouched"  # nothing else moved
    assert sorted(p.name for p in workspace.validated.iterdir()) == ["2026-01-02.json", "2026-01-02.parquet"]

    listed = runner.invoke(app, ["batch", "list", "-c", config])
    assert "2026-01-02" in listed.output and "quarantined" in listed.output
    shown = runner.invoke(app, ["batch", "show", "2026-01-11", "-c", config])
    assert "critical commission" in shown.output and "unexpected=" in shown.output

    again = runner.invoke(app, ["batch", "release", "2026-01-11", "-c", config])
    assert isinstance(again.exception, BatchRejected)
    assert (workspace.quarantine / "2026-01-11.parquet").is_file()
    forced = runner.invoke(
        app, ["batch", "release", "2026-01-11", "--force", "--reason", "known gap", "-c", config]
    )
    assert forced.exit_code == 0, forced.output
    assert find_batch_status(workspace, "2026-01-11") == "validated"

    out = tmp_path / "suite.json"
    made = runner.invoke(
        app,
        [
            "suite",
            "init",
            "--from",
            str(workspace.validated / "2026-01-02.parquet"),
            "-o",
            str(out),
            "-c",
            config,
        ],
    )
    assert made.exit_code == 0, made.output
    same = runner.invoke(
        app,
        [
            "suite",
            "init",
            "--from",
            str(workspace.validated / "2026-01-02.parquet"),
            "-o",
            str(out),
            "-c",
            config,
        ],
    )
    assert "unchanged" in same.output


def find_batch_status(ws: Workspace, batch_id: str) -> str:
    from ctcd.batches import find_batch

    return find_batch(ws, batch_id).status


# ------------------------------------------------------------- the shipped suite and real-looking data


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory, default_config: CtcdConfig):
    """The shipped suite (configs/expectations/agrawal-loans.json) bound to a fresh workspace."""
    from ctcd.gx_gate import open_gate

    ws = Workspace.open(tmp_path_factory.mktemp("shipped") / "home")
    return open_gate(ws, default_config.gates.data.suite)


@pytest.mark.parametrize("corruption", [c for c in CORRUPTIONS if c != "truncated"])
def test_the_shipped_suite_rejects_every_built_in_corruption(shipped, default_config: CtcdConfig, corruption):
    """Each corruption the stream can schedule is critical, at any batch size (`truncated` is unreadable)."""
    stream = default_config.stream.model_copy(
        update={
            "rows_per_day": 500,
            "events": [ScenarioEvent(day=2, kind="corrupt_batch", corruption=corruption)],
        }
    )
    cfg = default_config.model_copy(update={"stream": stream})
    features = generate_day(cfg, 2).features
    outcome = judge(shipped.validate(features, corruption).result, corruption, rows=len(features))
    assert not outcome.accepted, outcome.reason
    assert outcome.failures and all(f.severity == "critical" for f in outcome.failures)


def test_the_shipped_suite_accepts_big_and_small_genuine_batches(shipped, default_config: CtcdConfig):
    """Row count is not a contract: a 100x batch and a 50-row batch pass (with a row-count warning)."""
    for rows in (200_000, 50):
        cfg = default_config.model_copy(
            update={"stream": default_config.stream.model_copy(update={"rows_per_day": rows, "events": []})}
        )
        features = generate_day(cfg, 4).features
        outcome = judge(shipped.validate(features, f"rows-{rows}").result, f"rows-{rows}", rows=rows)
        assert outcome.accepted, outcome.reason
        assert "expect_table_row_count_to_be_between" in [w.expectation for w in outcome.warnings]


def _heavy_tailed_batch(day: int, rows: int = 800) -> pd.DataFrame:
    """A shop's daily orders: lognormal prices with an occasional spike, a constant currency rate,
    string categories, integer quantities (a count reaching down to 1)."""
    rng = np.random.default_rng(1000 + day)
    price = rng.lognormal(mean=3.5, sigma=1.1, size=rows)
    if day % 4 == 0:  # a sale of luxury goods now and then: a few rows far out in the tail
        spikes = rng.choice(rows, size=rows // 200, replace=False)
        price[spikes] *= rng.uniform(20, 60, size=len(spikes))
    return pd.DataFrame(
        {
            "order_id": np.arange(day * 100_000, day * 100_000 + rows, dtype=np.int64),
            "price": price,
            "quantity": rng.geometric(0.4, size=rows).astype(np.int64),
            "fx_rate": 1.0,
            "channel": rng.choice(["web", "app", "store"], size=rows, p=[0.5, 0.35, 0.15]),
            "country": rng.choice(["de", "fr", "it", "es", "nl", "be", "at", "pl"], size=rows),
        }
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory):
    from ctcd.config import DataGateConfig, DatasetConfig
    from ctcd.gx_gate import DataGate

    dataset = DatasetConfig(
        name="shop-orders",
        target="returned",
        id_column="order_id",
        numerical_features=["price", "quantity", "fx_rate"],
        categorical_features=["channel", "country"],
    )
    gate = DataGateConfig(suite=Path("unused.json"))
    suite = bootstrap_suite([_heavy_tailed_batch(d) for d in (1, 2, 3)], dataset, gate, "days 1-3")
    ws = Workspace.open(tmp_path_factory.mktemp("shop") / "home")
    return suite, DataGate(ws, suite, keep_results=3)


def _shop_outcome(shop, frame: pd.DataFrame, batch_id: str):
    return judge(shop[1].validate(frame, batch_id).result, batch_id, rows=len(frame))


def test_a_suite_from_three_heavy_tailed_batches_quarantines_no_genuine_batch(shop):
    suite, _ = shop
    fx = [e for e in suite["expectations"] if e["kwargs"].get("column") == "fx_rate"]
    learned = [
        e for e in fx if e["type"] == "expect_column_values_to_be_between" and e["severity"] == "warning"
    ]
    assert [(e["kwargs"]["min_value"], e["kwargs"]["max_value"]) for e in learned] == [(0.99, 1.01)]
    outcomes = [_shop_outcome(shop, _heavy_tailed_batch(d), f"day-{d}") for d in range(4, 34)]
    assert [o.batch_id for o in outcomes if not o.accepted] == []
    # the spikes are seen: a warning, not a quarantine
    assert any(w.column == "price" for o in outcomes for w in o.warnings)


def _spike_everywhere(f: pd.DataFrame) -> pd.DataFrame:
    return f.assign(price=f["price"] * 1e6)  # cents read as millions


@pytest.mark.parametrize(
    ("corrupt", "phrase"),
    [
        (lambda f: f.assign(price=-f["price"]), "price:"),
        (_spike_everywhere, "price:"),
        (lambda f: f.assign(quantity=f["quantity"].where(f.index % 5 != 0, -1)), "quantity:"),
        (lambda f: f.assign(price=f["price"].where(f.index % 3 != 0)), "expect_column_values_to_not_be_null"),
        (lambda f: f.assign(channel=f["channel"].where(f.index % 10 != 0, "fax")), "channel:"),
        (lambda f: f.assign(country=f["country"].str.upper()), "country:"),
        (
            lambda f: f.assign(price=f["price"].map("{:,.2f}".format)),
            "expect_column_values_to_be_in_type_list",
        ),
        (lambda f: f.drop(columns=["channel"]), "missing columns ['channel']"),
    ],
    ids=[
        "negative",
        "unit-error",
        "negative-counts",
        "nulls",
        "new-channel",
        "recoded",
        "strings",
        "missing",
    ],
)
def test_the_heavy_tailed_suite_still_quarantines_corrupt_batches(shop, corrupt, phrase, request):
    outcome = _shop_outcome(shop, corrupt(_heavy_tailed_batch(40)), request.node.callspec.id)
    assert not outcome.accepted and phrase in outcome.reason, outcome.reason


def test_cli_suite_init_from_several_batches(default_config: CtcdConfig, tmp_path):
    """`--from` takes a glob or repeats; the suite says how many batches taught it."""
    from typer.testing import CliRunner

    from ctcd.app.cli import app
    from ctcd.errors import UsageError

    for day in (1, 2, 3):
        generate_day(default_config, day).features.to_parquet(
            tmp_path / f"2026-01-0{day}.parquet", index=False
        )
    config = str(default_config.source)
    runner = CliRunner()
    out = tmp_path / "glob.json"
    made = runner.invoke(
        app, ["suite", "init", "--from", str(tmp_path / "2026-*.parquet"), "-o", str(out), "-c", config]
    )
    assert made.exit_code == 0, made.output
    assert "from 6000 rows of 3 batch(es): 2026-01-01 .. 2026-01-03 (3 batches)" in made.output
    suite = json.loads(out.read_text())
    assert suite["meta"]["ctcd"]["reference_batches"] == 3 and suite["meta"]["ctcd"]["reference_rows"] == 6000
    again = tmp_path / "repeated.json"
    args = [a for day in (1, 2, 3) for a in ("--from", str(tmp_path / f"2026-01-0{day}.parquet"))]
    repeated = runner.invoke(app, ["suite", "init", *args, "-o", str(again), "-c", config])
    assert repeated.exit_code == 0, repeated.output
    assert again.read_text() == out.read_text()
    nothing = runner.invoke(app, ["suite", "init", "--from", str(tmp_path / "1999-*.csv"), "-c", config])
    assert isinstance(nothing.exception, UsageError) and "matches no file" in str(nothing.exception)


# ---------------------------------------------------------------------- ctcd patches of GX (gx_gate.py)


def test_the_gx_patches_were_read_against_the_installed_gx():
    import great_expectations as gx

    from ctcd import gx_gate

    gx_gate._gx()
    assert gx.__version__ == gx_gate.GX_VERSION, (
        "GX changed: re-read the patches in ctcd/gx_gate.py (_project_column_domains,"
        " _memoize_configurations,"
        " _trust_unchanged_stores, _keep_stored_result) against it, then update GX_VERSION"
    )


def test_the_patched_gate_says_what_gx_alone_says(setup, clean, monkeypatch):
    """The patches change how GX gets to a result, not the result: the same one through GX's own paths."""
    from great_expectations.validator.validator import Validator

    gate = setup[2]
    bad = _nulls(clean)
    bad.loc[bad.index[:5], "age"] = 500
    ours = gate.validate(bad, "patched")
    assert ours.success is False and ours.detailed is True
    monkeypatch.setattr(Validator, "graph_validate", Validator.graph_validate.__wrapped__)
    # Outside `validate`: GX's own freshness checks and result serialization too.
    run = gate.details.run(batch_parameters={"dataframe": bad})
    theirs = next(iter(run.run_results.values())).to_json_dict()
    for key in ("success", "statistics", "suite_name", "results"):
        assert ours.result[key] == theirs[key], key


def test_the_result_ctcd_reads_is_the_one_gx_stored(setup, clean):
    _, ws, gate = setup
    run = gate.validate(_nulls(clean), "stored")
    results = (ws.gx_root / "uncommitted" / "validations").rglob("*.json")
    stored = max(results, key=lambda p: p.stat().st_mtime_ns)
    assert json.loads(stored.read_text(encoding="utf-8")) == run.result


def test_a_gate_whose_gx_stores_were_rewritten_is_checked_by_gx_again(setup, clean, tmp_path):
    """Freshness checks are skipped only while the store files are unchanged: a re-opened gate is seen."""
    cfg = setup[0]
    ws = Workspace.open(tmp_path / "home")
    first = open_gate(ws, cfg.gates.data.suite)
    assert first.validate(clean, "first").success
    assert first.validate(clean, "again").success
    second = open_gate(ws, cfg.gates.data.suite)  # replaces the suite, definition and checkpoints (new ids)
    with pytest.raises(Exception, match="has changed since"):
        first.validate(clean, "stale")
    assert second.validate(clean, "second").success
