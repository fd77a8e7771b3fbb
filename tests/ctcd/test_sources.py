"""`dataset.source`: files (local, glob, fsspec memory://), one split file, SQLite; labels; idempotence."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ctcd import sources
from ctcd.app.cli import app
from ctcd.batches import read_labels_file
from ctcd.config import CtcdConfig, load_config
from ctcd.errors import ConfigError, UsageError
from ctcd.workspace import Workspace
from tests.conftest import REPO

BANK = REPO.parent / "shared" / "data" / "bank-marketing" / "bank-additional-full.csv"
runner = CliRunner()


def _config(tmp_path: Path, source: dict, **dataset: object) -> Path:
    raw = {
        "dataset": {
            "name": "toy",
            "target": "y",
            "id_column": "id",
            "numerical_features": ["x"],
            "source": source,
            "label_delay_batches": 0,
            **dataset,
        },
        "gates": {"data": {"suite": "suite.json"}},
    }
    path = tmp_path / "ctcd.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _toy(first_id: int, n: int = 5) -> pd.DataFrame:
    ids = list(range(first_id, first_id + n))
    return pd.DataFrame({"id": ids, "x": [float(i) / 2 for i in ids], "y": [i % 2 for i in ids]})


def _landed(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.landing.iterdir())


def _labels(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.labels.iterdir())


def test_files_source_directory_lands_new_batches_verbatim_once(workspace: Workspace, tmp_path: Path):
    src = tmp_path / "drop"
    src.mkdir()
    _toy(0).to_parquet(src / "2026-01-01.parquet", index=False)
    _toy(10).to_csv(src / "2026-01-02.csv", index=False)
    _toy(20).to_parquet(src / ".hidden.parquet", index=False)
    _toy(30).to_parquet(src / "2026-01-03.parquet.part", index=False)
    (src / "notes.txt").write_text("not a batch")
    cfg = load_config(_config(tmp_path, {"kind": "files", "path": str(src)}))

    first = sources.pull(cfg, workspace, through="2026-01-01")
    assert first.landed == ["2026-01-01"] and first.not_yet == ["2026-01-02"]
    assert (workspace.landing / "2026-01-01.parquet").read_bytes() == (
        src / "2026-01-01.parquet"
    ).read_bytes()
    second = sources.pull(cfg, workspace)
    assert second.landed == ["2026-01-02"] and second.already_there == 1
    assert (workspace.landing / "2026-01-02.csv").read_bytes() == (src / "2026-01-02.csv").read_bytes()
    assert _landed(workspace) == ["2026-01-01.parquet", "2026-01-02.csv"]

    # Filed batches (validated or quarantined) are never landed again.
    shutil.move(workspace.landing / "2026-01-01.parquet", workspace.validated / "2026-01-01.parquet")
    shutil.move(workspace.landing / "2026-01-02.csv", workspace.quarantine / "2026-01-02.csv")
    again = sources.pull(cfg, workspace)
    assert again.landed == [] and again.already_there == 2 and _landed(workspace) == []


def test_files_source_glob_relative_to_the_config(workspace: Workspace, tmp_path: Path):
    (tmp_path / "data").mkdir()
    for i, day in enumerate(("2026-02-01", "2026-02-02")):
        _toy(10 * i).to_csv(tmp_path / "data" / f"{day}.csv", index=False)
        _toy(10 * i).to_parquet(tmp_path / "data" / f"{day}-copy.parquet", index=False)
    cfg = load_config(_config(tmp_path, {"kind": "files", "path": "data/*.csv"}))
    assert cfg.dataset.source.path == str(tmp_path / "data" / "*.csv")
    assert [b.batch_id for b in sources.list_batches(cfg)] == ["2026-02-01", "2026-02-02"]
    assert sources.pull(cfg, workspace).landed == ["2026-02-01", "2026-02-02"]
    assert _landed(workspace) == ["2026-02-01.csv", "2026-02-02.csv"]


def test_memory_fsspec_source_with_labels_from_the_batch_column_after_one_batch(
    workspace: Workspace, tmp_path: Path
):
    import fsspec

    root = f"memory://ctcd-{uuid.uuid4().hex}/batches"
    fs = fsspec.filesystem("memory")
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]
    for i, day in enumerate(days):
        with fs.open(f"{root}/{day}.parquet", "wb") as f:
            _toy(100 * i).to_parquet(f, index=False)
    source = {"kind": "files", "path": root, "labels": {}}
    cfg = load_config(_config(tmp_path, source, label_delay_batches=1))

    first = sources.pull(cfg, workspace, through="2026-03-01")
    assert first.landed == ["2026-03-01"] and first.labels_landed == [] and first.labels_pending == days[:1]
    landed = pd.read_parquet(workspace.landing / "2026-03-01.parquet")
    assert list(landed.columns) == ["id", "x"]  # the target is stripped from the features
    assert _labels(workspace) == []

    second = sources.pull(cfg, workspace, through="2026-03-02")
    assert second.landed == ["2026-03-02"] and second.labels_landed == ["2026-03-01"]
    labels = pd.read_parquet(workspace.labels / "2026-03-01.parquet")
    pd.testing.assert_frame_equal(labels, _toy(0)[["id", "y"]])

    third = sources.pull(cfg, workspace)
    assert third.landed == ["2026-03-03"] and third.labels_landed == ["2026-03-02"]
    assert third.labels_pending == ["2026-03-03"]
    assert sources.pull(cfg, workspace).landed == []
    assert _labels(workspace) == ["2026-03-01.parquet", "2026-03-02.parquet"]


def test_labels_from_separate_csv_files_arrive_with_their_batch(workspace: Workspace, tmp_path: Path):
    (tmp_path / "batches").mkdir()
    (tmp_path / "labels").mkdir()
    for i, day in enumerate(("2026-04-01", "2026-04-02")):
        _toy(10 * i).drop(columns="y").to_parquet(tmp_path / "batches" / f"{day}.parquet", index=False)
    _toy(0)[["id", "y"]].to_csv(tmp_path / "labels" / "2026-04-01.csv", index=False)
    source = {"kind": "files", "path": "batches", "labels": {"path": "labels"}}
    cfg = load_config(_config(tmp_path, source))

    report = sources.pull(cfg, workspace)
    assert report.labels_landed == ["2026-04-01"] and report.labels_pending == ["2026-04-02"]
    pd.testing.assert_frame_equal(
        read_labels_file(workspace.labels / "2026-04-01.parquet", cfg), _toy(0)[["id", "y"]]
    )

    # The second batch's labels come later, in one file keyed by id (not named by batch).
    _toy(10)[["id", "y"]].to_csv(tmp_path / "labels" / "late-outcomes.csv", index=False)
    later = sources.pull(cfg, workspace)
    assert later.landed == [] and later.labels_landed == ["2026-04-02"] and later.labels_pending == []
    assert read_labels_file(workspace.labels / "2026-04-02.parquet", cfg)["id"].tolist() == list(
        range(10, 15)
    )


def test_sqlite_source_batches_by_day_with_a_labels_table(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import sqlalchemy as sa

    monkeypatch.setattr(sources.sql, "SQL_CHUNK", 3)  # a day's 4 stamps and 4 ids take two queries each

    db = tmp_path / "shop.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    rows = [
        {"id": i, "applied_at": f"2026-05-0{1 + i // 4} {8 + i % 4:02d}:30:00", "x": i / 3} for i in range(10)
    ]
    pd.DataFrame(rows).to_sql("applications", engine, index=False)
    pd.DataFrame({"id": range(10), "y": [i % 2 for i in range(10)]}).to_sql("outcomes", engine, index=False)
    source = {
        "kind": "sql",
        "url": f"sqlite:///{db}",
        "table": "applications",
        "batch_column": "applied_at",
        "period": "day",
        "labels": {"table": "outcomes"},
    }
    cfg = load_config(_config(tmp_path, source))

    report = sources.pull(cfg, workspace)
    assert report.landed == ["2026-05-01", "2026-05-02", "2026-05-03"]
    sizes = [len(pd.read_parquet(workspace.landing / f"{b}.parquet")) for b in report.landed]
    assert sizes == [4, 4, 2]
    day2 = pd.read_parquet(workspace.landing / "2026-05-02.parquet")
    assert day2["id"].tolist() == [4, 5, 6, 7] and "y" not in day2.columns
    assert report.labels_landed == report.landed
    assert read_labels_file(workspace.labels / "2026-05-03.parquet", cfg)["y"].tolist() == [0, 1]

    # A new day in the table: only it is pulled.
    pd.DataFrame([{"id": 10, "applied_at": "2026-05-04 09:00:00", "x": 1.0}]).to_sql(
        "applications", engine, index=False, if_exists="append"
    )
    pd.DataFrame({"id": [10], "y": [1]}).to_sql("outcomes", engine, index=False, if_exists="append")
    again = sources.pull(cfg, workspace)
    assert (
        again.landed == ["2026-05-04"] and again.already_there == 3 and again.labels_landed == ["2026-05-04"]
    )


def test_sqlite_query_source_with_the_label_in_the_rows(workspace: Workspace, tmp_path: Path):
    import sqlalchemy as sa

    db = tmp_path / "q.db"
    frame = pd.DataFrame({"id": range(6), "week": ["w01", "w01", "w02", "w02", "w03", "w03"], "x": range(6)})
    frame.assign(y=[0, 1, 0, 1, 1, 1]).to_sql("t", sa.create_engine(f"sqlite:///{db}"), index=False)
    source = {
        "kind": "sql",
        "url": f"sqlite:///{db}",
        "query": "SELECT id, week, x, y FROM t WHERE id >= 2",
        "batch_column": "week",
        "labels": {},
    }
    cfg = load_config(_config(tmp_path, source, label_delay_batches=1))
    report = sources.pull(cfg, workspace)
    assert report.landed == ["w02", "w03"] and report.labels_landed == ["w02"]
    relative = load_config(_config(tmp_path, {**source, "url": "sqlite:///q.db"}))
    assert relative.dataset.source.url == f"sqlite:///{db}"  # relative to the config file
    assert list(pd.read_parquet(workspace.landing / "w03.parquet").columns) == ["id", "week", "x"]


def _months_csv(path: Path) -> pd.DataFrame:
    months = ["may", "may", "jun", "jul", "jul", "jul", "oct", "dec", "mar", "mar", "apr", "may"]
    frame = pd.DataFrame(
        {"x": [float(i) for i in range(len(months))], "town": ["Zürich"] * len(months), "month": months}
    )
    frame["y"] = ["yes" if i % 3 == 0 else "no" for i in range(len(months))]
    frame.to_csv(path, sep=";", index=False, encoding="latin-1")
    return frame


def test_one_file_split_by_month_name_runs(workspace: Workspace, tmp_path: Path):
    original = _months_csv(tmp_path / "calls.csv")
    source = {
        "kind": "file",
        "path": "calls.csv",
        "sep": ";",
        "encoding": "latin-1",
        "id_from_row_number": True,
        "split": {"column": "month", "kind": "month_name", "start": "2008-05"},
        "labels": {},
    }
    cfg = load_config(_config(tmp_path, source, id_column="row"))
    found = sources.list_batches(cfg)
    months = ["2008-05", "2008-06", "2008-07", "2008-10", "2008-12", "2009-03", "2009-04", "2009-05"]
    assert [b.batch_id for b in found] == months
    assert [len(b.frame) for b in found] == [2, 1, 3, 1, 1, 2, 1, 1]

    report = sources.pull(cfg, workspace, through="2009-03")
    assert report.landed == [b.batch_id for b in found[:6]] and report.labels_landed == report.landed
    sources.pull(cfg, workspace)
    features = pd.concat(
        [pd.read_parquet(workspace.landing / f"{b.batch_id}.parquet") for b in found], ignore_index=True
    )
    assert features["row"].tolist() == list(range(len(original)))  # every row once, in file order
    assert features["town"].eq("Zürich").all() and "y" not in features.columns
    labels = pd.concat([pd.read_parquet(workspace.labels / f"{b.batch_id}.parquet") for b in found])
    assert labels["y"].tolist() == original["y"].tolist()


def test_one_file_split_by_rows_and_its_errors(tmp_path: Path):
    _months_csv(tmp_path / "calls.csv")
    base = {"kind": "file", "path": "calls.csv", "sep": ";", "encoding": "latin-1"}
    by_rows = load_config(_config(tmp_path, {**base, "split": {"rows": 5}}))
    assert [(b.batch_id, len(b.frame)) for b in sources.list_batches(by_rows)] == [
        ("000001", 5),
        ("000002", 5),
        ("000003", 2),
    ]
    wrong_start = load_config(
        _config(tmp_path, {**base, "split": {"column": "month", "kind": "month_name", "start": "2008-04"}})
    )
    with pytest.raises(ConfigError, match="April"):
        sources.list_batches(wrong_start)
    # `value` runs: may comes back after jun, so the file is not cut into batches by value.
    by_value = load_config(_config(tmp_path, {**base, "split": {"column": "month"}}))
    with pytest.raises(ConfigError, match="not in time order"):
        sources.list_batches(by_value)


def test_real_bank_marketing_file_becomes_26_monthly_batches(workspace: Workspace, tmp_path: Path):
    source = {
        "kind": "file",
        "path": str(BANK),
        "sep": ";",
        "id_from_row_number": True,
        "split": {"column": "month", "kind": "month_name", "start": "2008-05"},
        "labels": {},
    }
    cfg = load_config(
        _config(tmp_path, source, id_column="row_id", numerical_features=["age"], label_delay_batches=1)
    )
    found = sources.list_batches(cfg)
    ids = [b.batch_id for b in found]
    sizes = [len(b.frame) for b in found]
    assert len(found) == 26 and ids == sorted(ids) and len(set(ids)) == 26
    assert ids[:8] == ["2008-05", "2008-06", "2008-07", "2008-08", "2008-10", "2008-11", "2008-12", "2009-03"]
    assert ids[-1] == "2010-11" and "2008-09" not in ids
    assert sum(sizes) == 41188 and max(sizes) > 50 * min(sizes)

    report = sources.pull(cfg, workspace)
    assert (
        len(report.landed) == 26 and report.labels_pending == ["2010-11"] and len(report.labels_landed) == 25
    )
    landed = [pd.read_parquet(workspace.landing / f"{b}.parquet") for b in ids]
    assert all("y" not in f.columns for f in landed)
    assert pd.concat(landed)["row_id"].tolist() == list(range(41188))
    labels = pd.concat([pd.read_parquet(workspace.labels / f"{b}.parquet") for b in ids[:-1]])
    assert len(labels) == 41188 - sizes[-1] and set(labels["y"]) == {"yes", "no"}


def test_csv_labels_reach_training_and_monitoring(workspace: Workspace, tmp_path: Path):
    from datetime import UTC, datetime

    from ctcd.batches import BatchRecord, sha256_of
    from ctcd.cadence import workspace_timeline
    from ctcd.ct_inputs import read_labels, validated_files

    cfg = load_config(_config(tmp_path, {"kind": "files", "path": str(tmp_path)}))
    path = workspace.validated / "b-001.parquet"
    _toy(0).drop(columns="y").to_parquet(path, index=False)
    record = BatchRecord(
        batch_id="b-001",
        status="validated",
        file=path.name,
        sha256=sha256_of(path),
        bytes=path.stat().st_size,
        rows=5,
        suite="test",
        reason="passed",
        validated_at=datetime.now(UTC),
    )
    (workspace.validated / "b-001.json").write_text(record.model_dump_json(), encoding="utf-8")
    assert validated_files(workspace) == []
    _toy(0)[["id", "y"]].assign(extra=1).to_csv(workspace.labels / "b-001.csv", index=False)
    (found,) = validated_files(workspace)
    assert found.labels_path == str(workspace.labels / "b-001.csv")
    assert read_labels_file(Path(found.labels_path), cfg).columns.tolist() == ["id", "y"]
    timeline = workspace_timeline(cfg, workspace)
    assert read_labels(cfg, workspace, timeline)["y"].tolist() == [0, 1, 0, 1, 0]


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ({"kind": "ftp", "path": "x"}, "dataset.source"),
        (
            {"kind": "file", "path": "x.csv", "split": {"rows": 3, "column": "m"}},
            "exactly one of rows or column",
        ),
        ({"kind": "file", "path": "x.csv", "split": {"column": "m", "kind": "month_name"}}, "needs start"),
        ({"kind": "sql", "url": "sqlite://", "batch_column": "d"}, "exactly one of table or query"),
        ({"kind": "files", "path": "x", "labels": {"table": "t"}}, "not SQL"),
        ({"kind": "stream"}, "needs the `stream` section"),
    ],
)
def test_source_config_errors_are_one_line(tmp_path: Path, source: dict, phrase: str):
    with pytest.raises(ConfigError, match=phrase) as err:
        load_config(_config(tmp_path, source))
    assert "\n" not in str(err.value)


def test_default_config_keeps_the_stream(default_config: CtcdConfig):
    assert default_config.dataset.source is None and default_config.stream is not None


def test_cli_land_and_status_for_a_source(workspace: Workspace, tmp_path: Path):
    src = tmp_path / "drop"
    src.mkdir()
    for i, day in enumerate(("2026-06-01", "2026-06-02", "2026-06-03")):
        _toy(10 * i).to_parquet(src / f"{day}.parquet", index=False)
    path = str(_config(tmp_path, {"kind": "files", "path": str(src), "labels": {}}, label_delay_batches=1))

    land = runner.invoke(app, ["data", "land", "--through", "2026-06-02", "-c", path])
    assert land.exit_code == 0, land.output
    assert "landed 2 batch(es)" in land.output and "landed labels   2026-06-01" in land.output
    (workspace.landing / "2026-06-01.parquet").rename(workspace.validated / "2026-06-01.parquet")

    status = runner.invoke(app, ["data", "status", "--json", "-c", path])
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert report["kind"] == "files"
    assert [(b["batch_id"], b["at"], b["labels"]) for b in report["batches"]] == [
        ("2026-06-01", "validated", True),
        ("2026-06-02", "landing", False),
        ("2026-06-03", "source", False),
    ]
    text = runner.invoke(app, ["data", "status", "-c", path])
    assert text.exit_code == 0 and "source (files)" in text.output and "generate" not in text.output
    generate = runner.invoke(app, ["data", "generate", "-c", path])
    assert isinstance(generate.exception, UsageError) and "`ctcd data land` pulls" in str(generate.exception)


def test_status_without_source_or_stream_lists_landed_files(workspace: Workspace, tmp_path: Path):
    raw = yaml.safe_load((REPO / "tests" / "fixtures" / "other-dataset.yaml").read_text())
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(raw))
    pd.DataFrame({"reading_id": [1]}).to_parquet(workspace.landing / "w-07.parquet")
    text = runner.invoke(app, ["data", "status", "-c", str(path)])
    assert text.exit_code == 0, text.output
    assert "no dataset.source configured" in text.output and "w-07" in text.output
    assert "generate" not in text.output
