"""Configuration: validated at load time, errors name the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ctcd.app.cli import app
from ctcd.config import load_config
from ctcd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CTCD = str(Path(sys.executable).parent / "ctcd")
OTHER = REPO / "tests" / "fixtures" / "other-dataset.yaml"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _default() -> dict:
    return yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))


def test_default_config_loads_with_absolute_suite_path(default_config):
    assert default_config.dataset.features[:2] == ["salary", "commission"]
    assert default_config.gates.data.suite.is_absolute()
    assert default_config.registered_model_name == "agrawal-loans"


def test_unknown_key_is_named_with_the_file(tmp_path):
    data = _default()
    data["training"]["windw_days"] = 3
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "training.windw_days: unknown key" in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_type_is_named_with_the_value(tmp_path):
    data = _default()
    data["stream"]["rows_per_day"] = "many"
    with pytest.raises(ConfigError, match=r"stream\.rows_per_day: .*'many'"):
        load_config(_write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_inconsistent_columns_are_rejected(tmp_path):
    data = _default()
    data["dataset"]["slice_columns"] = ["not_a_feature"]
    with pytest.raises(ConfigError, match="slice_columns"):
        load_config(_write(tmp_path, data))
    data = _default()
    data["dataset"]["categorical_features"].append("salary")
    with pytest.raises(ConfigError, match="declared twice"):
        load_config(_write(tmp_path, data))


def test_other_dataset_loads():
    cfg = load_config(OTHER)
    assert cfg.dataset.timestamp_column is None
    assert cfg.dataset.categorical_features == []
    assert cfg.dataset.features == ["temperature", "vibration", "pressure"]
    assert cfg.stream is None
    assert cfg.registered_model_name == "sensor-faults"
    assert cfg.gates.data.suite == OTHER.parent / "expectations" / "sensor-faults.json"


def test_cli_bad_config_exits_2_with_one_line(tmp_path, workspace):
    data = _default()
    data["serving"]["port"] = "eighty"
    path = _write(tmp_path, data)
    proc = subprocess.run(
        [CTCD, "config", "check", "--config", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "serving.port" in lines[0] and str(path) in lines[0]


def test_cli_checks_other_dataset(workspace):
    proc = subprocess.run(
        [CTCD, "config", "check", "-c", str(OTHER)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "sensor-faults" in proc.stdout


def test_debug_shows_traceback(tmp_path, workspace):
    proc = subprocess.run(
        [CTCD, "--debug", "config", "check", "-c", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "config file not found" in proc.stderr


def test_help_on_every_command():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]:
        if name:
            sub = runner.invoke(app, [name, "--help"])
            assert sub.exit_code == 0, (name, sub.output)
