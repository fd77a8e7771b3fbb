"""`ctcd backtest`: a tiny replay of the built-in stream and of a user's `dataset.source` batches; outputs
(table, JSON, PNG, HTML), the same numbers for the same seed, and one-line usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from ctcd.app.cli import app
from ctcd.errors import UsageError
from tests.conftest import REPO

runner = CliRunner()
CHEAP = ["--set", "model.search.budget=1", "--set", "model.params.n_estimators=20"]
CHEAP += ["--set", "gates.model.bootstrap_samples=20"]


def _backtest(*args: str):
    return runner.invoke(app, ["backtest", *args], catch_exceptions=True)


def test_backtest_of_the_stream_writes_table_json_and_plots_and_repeats_its_numbers(tmp_path: Path) -> None:
    args = ["--batches", "8", "--rows-per-batch", "300", "--policies", "never,every-2,ctcd", "--no-frontier"]
    first = _backtest(*args, *CHEAP, "--out", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    assert "policy" in first.output and "targets:" in first.output and "every-2" in first.output
    data = json.loads((tmp_path / "a" / "backtest.json").read_text())
    assert set(data["summaries"]) == {"never", "every-2", "ctcd"}
    every2 = data["runs"]["every-2"]["trainings"]
    assert [t["batch"] for t in every2] == ["2026-01-04", "2026-01-06", "2026-01-08"]
    assert all(t["cost"]["rows"] > 0 and t["cost"]["cpu_seconds"] >= 0 for t in every2)
    assert data["summaries"]["every-2"]["trainings"] == 3
    assert (tmp_path / "a" / "timeline.png").stat().st_size > 0
    assert "plotly" in (tmp_path / "a" / "timeline.html").read_text()[:200_000]

    again = _backtest(*args, *CHEAP, "--json")
    assert again.exit_code == 0, again.output
    repeat = json.loads(again.stdout)
    for p in data["summaries"]:
        assert repeat["runs"][p]["accuracy"] == data["runs"][p]["accuracy"]
        assert [t["served"] for t in repeat["runs"][p]["trainings"]] == [
            t["served"] for t in data["runs"][p]["trainings"]
        ]


def test_backtest_of_dataset_source_batches_replays_them_in_id_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "batches"
    folder.mkdir()
    for i in range(1, 7):
        x = rng.normal(size=(200, 2))
        y = (x[:, 0] + (0.5 if i > 3 else 0.0) > 0).astype(int)
        ids = np.arange(200) + i * 1000
        pd.DataFrame({"id": ids, "a": x[:, 0], "b": x[:, 1], "y": y}).to_csv(
            folder / f"2024-0{i}.csv", index=False
        )
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    raw.pop("stream", None)
    raw["dataset"] = {
        "name": "toy",
        "target": "y",
        "id_column": "id",
        "numerical_features": ["a", "b"],
        "categorical_features": [],
        "positive_label": 1,
        "label_delay_batches": 1,
        "slice_columns": [],
        "source": {"kind": "files", "path": str(folder)},
    }
    raw["gates"]["model"]["floors"] = {"roc_auc": 0.5}
    raw["gates"]["data"]["suite"] = str(tmp_path / "suite.json")
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = _backtest(
        "-c", str(config), "--policies", "never,daily", "--no-frontier", "--warmup", "2", *CHEAP, "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["batches"] == [f"2024-0{i}" for i in range(1, 7)]
    assert [t["batch"] for t in data["runs"]["daily"]["trainings"]] == [f"2024-0{i}" for i in range(2, 7)]
    assert sorted(data["runs"]["never"]["accuracy"]) == [f"2024-0{i}" for i in range(3, 7)]


def test_a_rollout_policy_reports_its_online_verdicts(tmp_path: Path) -> None:
    args = ["--batches", "12", "--rows-per-batch", "300", "--policies", "every-2,every-2+shadow"]
    result = _backtest(*args, "--no-frontier", *CHEAP, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "backtest.json").read_text())
    rolled = data["runs"]["every-2+shadow"]
    assert {t["rollout"] for t in rolled["trainings"]} <= {None, "shadow"}
    assert data["summaries"]["every-2+shadow"]["rollouts"] >= 1
    assert rolled["online"], "a candidate in rollout got no verdict"
    for o in rolled["online"]:
        assert {"batch", "candidate", "verdict", "action", "labelled_rows", "delta"} <= set(o)
        assert o["mode"] == "shadow" and rolled["served_by"].get(o["batch"], o["champion"]) == o["champion"]
    assert not data["runs"]["every-2"]["online"] and data["summaries"]["every-2"]["rollouts"] == 0
    assert "online gate (every-2+shadow)" in result.output and "online promoted" in result.output


def test_backtest_says_what_to_fix_in_one_line() -> None:
    bad = _backtest("--policies", "sometimes")
    assert isinstance(bad.exception, UsageError) and "every-K" in str(bad.exception)
    bad = _backtest("--policies", "ctcd+bluegreen")
    assert isinstance(bad.exception, UsageError) and "+shadow or +canary" in str(bad.exception)
    bad = _backtest("--set", "drift.accuracy_drop")
    assert isinstance(bad.exception, UsageError) and "key.path=value" in str(bad.exception)
