"""The whole CT/CD loop, end to end: a short `ctcd demo` through the real stack.

A compressed scenario (6 days, 600 rows a day): day 3's batch is corrupted, the concept drifts on day 4.
The demo must quarantine day 3, retrain through the drift event -> Prefect trigger -> `retrain`
deployment on the GPU pool's worker, promote the new model, and the live BentoML server must then
answer with the new version.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ctcd import audit, registry
from ctcd.app import stack
from ctcd.config import load_config
from ctcd.net import free_port
from ctcd.prediction_log import read_predictions
from ctcd.serving.server import SMOKE_PID_FILE, running_server
from ctcd.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
CTCD = str(Path(sys.executable).parent / "ctcd")

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def short_scenario(directory: Path) -> Path:
    """The default config with a 6-day scenario on free ports."""
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    raw["gates"]["data"]["suite"] = str(REPO / "configs" / raw["gates"]["data"]["suite"])
    raw["stream"]["events"] = [
        {"day": 3, "kind": "corrupt_batch", "corruption": "null_flood"},
        {"day": 4, "kind": "concept_drift", "function": 2},
    ]
    raw["orchestration"].update(
        {"prefect_port": free_port(), "mlflow_port": free_port(), "startup_timeout_seconds": 300}
    )
    raw["serving"]["port"] = free_port()
    path = directory / "short.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def test_short_demo_quarantines_retrains_on_drift_and_serves_the_new_champion(tmp_path: Path) -> None:
    config = short_scenario(tmp_path)
    home = tmp_path / "home"
    proc = subprocess.run(
        [CTCD, "demo", "-c", str(config), "--days", "6", "--rows-per-day", "600", "--fast"],
        env={**_env(), "CTCD_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("day ")]
    assert len(lines) == 6, proc.stdout

    ws = Workspace(home)
    cfg = load_config(home / "demo-config.yaml")
    summary = json.loads((ws.reports / "demo-summary.json").read_text(encoding="utf-8"))

    # 1. The corrupted batch was rejected and kept, and the champion kept serving that day.
    assert summary["quarantined"] == ["2026-01-03"]
    assert (ws.quarantine / "2026-01-03.parquet").is_file()
    assert "QUARANTINED" in lines[2]

    # 2. A drift-triggered retrain produced a promoted version (through the deployment's trigger).
    history = audit.alias_history(ws)
    versions = {v.version: v for v in registry.Registry(cfg, ws).versions()}
    drift_promotions = [
        h for h in history if versions[h["version"]].tags.get("ctcd.reason", "").startswith("drift")
    ]
    assert history[0]["reason"].startswith("initial"), history
    assert drift_promotions, f"no promotion caused by the drift trigger: {history}"
    new_champion = drift_promotions[-1]["version"]
    assert versions[new_champion].tags["ctcd.window"].split("..")[0] == "2026-01-04"  # the restarted window

    # 3. Predictions served after the promotion come from the new version.
    last_day = read_predictions(ws, start="2026-01-06", end="2026-01-06")
    assert len(last_day) == 600
    assert set(last_day["model_version"]) == {new_champion}
    first_days = read_predictions(ws, start="2026-01-03", end="2026-01-04")
    assert set(first_days["model_version"]) == {history[0]["version"]}

    # 4. The timeline and nothing left running.
    assert Path(summary["timeline"]["png"]).stat().st_size > 10_000
    assert stack.read_records(ws) == [], "the demo stops the stack it started"
    assert running_server(ws) is None, "and the live server its deliveries started"
    assert running_server(ws, SMOKE_PID_FILE) is None, "and the standby smoke-test server"


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
