"""Expected errors are one line on the console, also when raised inside a Prefect flow."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctcd.app.console import ExpectedErrorFilter
from ctcd.errors import NoChampion, WorkFailed

REPO = Path(__file__).resolve().parents[2]


def _record(name: str, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)


def test_the_filter_drops_expected_errors_and_keeps_bugs(monkeypatch):
    monkeypatch.delenv("CTCD_DEBUG", raising=False)
    f = ExpectedErrorFilter()
    assert not f.filter(_record("prefect.flow_runs", "Encountered exception", NoChampion("no champion")))
    assert not f.filter(_record("prefect.task_runs", "Task run failed", WorkFailed("x")))
    closing = "Finished in state Failed('Flow run encountered an exception: NoChampion: no champion')"
    assert not f.filter(_record("prefect.flow_runs", closing))
    assert f.filter(_record("prefect.flow_runs", "Encountered exception", KeyError("bug")))
    assert f.filter(_record("prefect.flow_runs", "Finished in state Failed('KeyError: bug')"))
    assert f.filter(_record("prefect.flow_runs", "Finished in state Completed()"))
    monkeypatch.setenv("CTCD_DEBUG", "1")
    assert f.filter(_record("prefect.flow_runs", "Encountered exception", NoChampion("no champion")))


@pytest.mark.parametrize("debug", [False, True])
def test_ctcd_monitor_without_a_champion_is_one_line(tmp_path, debug, shared_prefect):
    """The monitoring flow raises NoChampion inside Prefect: one `error:` line, no traceback, exit 1.

    The flow runs against the session's Prefect server (PREFECT_API_URL, as under `ctcd up`) rather than a
    temporary server per call: what is checked is how the failed flow run's error reaches the console."""
    env = {
        **os.environ,
        "CTCD_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": shared_prefect.api,
        "PYTHONPATH": str(REPO),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("CTCD_DEBUG", None)
    args = [
        sys.executable,
        "-c",
        "from ctcd.app.cli import main; main()",
        *(["--debug"] if debug else []),
        "monitor",
    ]
    args += ["-c", str(REPO / "configs" / "default.yaml")]
    done = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: registered model 'agrawal-loans' has no 'champion' alias yet: run `ctcd run` first"
    ]
    if debug:
        assert "Traceback" in done.stderr
    else:
        assert "Traceback" not in done.stderr and done.stderr.count("no 'champion' alias") == 1, done.stderr
