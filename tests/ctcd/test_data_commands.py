"""`ctcd data generate | land | status` through the real CLI app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ctcd.app.cli import app, main
from ctcd.workspace import Workspace
from tests.conftest import REPO

DEFAULT = str(REPO / "configs" / "default.yaml")
runner = CliRunner()


def _exit_code_of_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run `ctcd <args>` through `main`, which maps ctcd errors to exit codes."""
    monkeypatch.setattr(sys, "argv", ["ctcd", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code)


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["data", "--help"])
    assert result.exit_code == 0
    for command in ("generate", "land", "status"):
        assert command in result.output
    result = runner.invoke(app, ["data", "generate", "--help"])
    assert result.exit_code == 0 and "--rows-per-day" in result.output and "--no-land" in result.output


def test_generate_lands_everything_due_then_status_shows_it(workspace: Workspace) -> None:
    result = runner.invoke(app, ["data", "generate", "--days", "3", "--rows-per-day", "40", "-c", DEFAULT])
    assert result.exit_code == 0, result.output
    assert sum(line.strip().startswith("2026-01-0") for line in result.output.splitlines()) == 3
    assert sorted(p.name for p in workspace.landing.iterdir()) == [
        "2026-01-01.parquet",
        "2026-01-02.parquet",
        "2026-01-03.parquet",
    ]
    assert sorted(p.name for p in workspace.labels.iterdir()) == ["2026-01-01.parquet", "2026-01-02.parquet"]

    status = runner.invoke(app, ["data", "status", "--json", "-c", DEFAULT])
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert [b["features_at"] for b in report["batches"]] == ["landing"] * 3
    assert [b["labels_landed"] for b in report["batches"]] == [True, True, False]
    text = runner.invoke(app, ["data", "status", "-c", DEFAULT])
    assert text.exit_code == 0 and "2026-01-03" in text.output


def test_no_land_then_land_through_a_date(workspace: Workspace) -> None:
    args = [
        "data",
        "generate",
        "--days",
        "4",
        "--rows-per-day",
        "20",
        "--seed",
        "3",
        "--no-land",
        "-c",
        DEFAULT,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list(workspace.landing.iterdir()) == []
    result = runner.invoke(app, ["data", "land", "--through", "2026-01-02", "-c", DEFAULT])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in workspace.landing.iterdir()) == ["2026-01-01.parquet", "2026-01-02.parquet"]
    assert [p.name for p in workspace.labels.iterdir()] == ["2026-01-01.parquet"]
    manifest = json.loads((workspace.root / "stream" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["rows_per_day"] == 20


def test_errors_exit_with_the_documented_codes(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    raw = yaml.safe_load(Path(DEFAULT).read_text())
    raw.pop("stream")
    no_stream = tmp_path / "own-data.yaml"
    no_stream.write_text(yaml.safe_dump(raw))
    assert _exit_code_of_main(monkeypatch, "data", "generate", "-c", str(no_stream)) == 2
    assert "landing" in capsys.readouterr().err

    # Nothing generated yet: landing is a usage error.
    assert _exit_code_of_main(monkeypatch, "data", "land", "-c", DEFAULT) == 2
    assert "ctcd data generate" in capsys.readouterr().err

    assert _exit_code_of_main(monkeypatch, "data", "land", "--through", "01/02/2026", "-c", DEFAULT) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err
    assert runner.invoke(app, ["data", "generate", "--days", "0", "-c", DEFAULT]).exit_code == 2
    assert list(workspace.landing.iterdir()) == []
