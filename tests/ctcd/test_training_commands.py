"""`ctcd promote`, `ctcd rollback` and `ctcd status` against the embedded registry.

`ctcd run` and `ctcd train` run the Prefect flows: see tests/integration/test_training_flow.py.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ctcd import registry
from ctcd.app.cli import app
from ctcd.errors import UsageError
from tests.ctcd.test_registry import _candidate

runner = CliRunner()


def _ctcd(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=True)


def test_promote_rollback_and_status(default_config, workspace):
    cfg, ws = default_config, workspace
    empty = _ctcd("status", "--json")
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.stdout)["champion"] is None

    registry.Registry(cfg, ws).log_candidate(_candidate(cfg, 1))
    registry.Registry(cfg, ws).log_candidate(_candidate(cfg, 2))
    registry.Registry(cfg, ws).record_decision(
        registry.Registry(cfg, ws).version("2"), {"passed": True}, {"ctcd.gate": "passed"}
    )

    first = _ctcd("promote", "1", "--reason", "bootstrap by hand")
    assert first.exit_code == 0, first.output
    assert "champion: version 1 (was none)" in first.output
    assert "did not pass the model gate" in first.output  # never judged: warned, still recorded
    second = _ctcd("promote", "2", "--reason", "passed the gate")
    assert "champion: version 2 (was 1)" in second.output
    assert "warning" not in second.output

    back = _ctcd("rollback", "--reason", "latency regression")
    assert back.exit_code == 0, back.output
    assert "version 1 (rolled back from 2)" in back.output
    assert registry.Registry(cfg, ws).require_champion().version == "1"

    status = json.loads(_ctcd("status", "--json").stdout)
    assert status["champion"]["version"] == "1"
    assert status["challenger"]["version"] == "2"
    assert [d["version"] for d in status["decisions"]] == ["2", "1"]
    moves = [(h["previous"], h["version"], h["action"], h["reason"]) for h in status["history"]]
    assert moves == [
        (None, "1", "promote", "bootstrap by hand"),
        ("1", "2", "promote", "passed the gate"),
        ("2", "1", "rollback", "latency regression"),
    ]
    assert all(h["actor"] and h["at"] for h in status["history"])

    text = _ctcd("status")
    assert text.exit_code == 0
    assert "champion: version 1" in text.output and "challenger: version 2" in text.output
    assert "v2 -> v1" in text.output and "(rollback): latency regression" in text.output
    # each decision reads as its version's one-line description
    assert (
        "  v2: logistic_regression trained on 2026-01-02 (test); gate passed: -; rolled back " in text.output
    )
    assert status["champion"]["rollout"].startswith("champion again ")


def test_mistakes_are_usage_errors(default_config, workspace):
    nothing = _ctcd("rollback")
    assert isinstance(nothing.exception, UsageError)
    assert "no earlier champion" in str(nothing.exception)
    missing = _ctcd("promote", "7", "--reason", "x")
    assert isinstance(missing.exception, UsageError)
    assert "no version 7" in str(missing.exception)


@pytest.mark.parametrize("args", [["promote", "1"], ["promote"]])
def test_promote_needs_a_version_and_a_reason(args):
    result = _ctcd(*args)
    assert result.exit_code == 2
