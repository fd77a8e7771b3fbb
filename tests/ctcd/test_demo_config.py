"""What `ctcd demo` replays and with which settings: its default length and the config it writes."""

from __future__ import annotations

import yaml

from ctcd.app.demo import DemoOptions, default_days, write_demo_config
from ctcd.config import ScenarioEvent


def test_the_default_replays_through_the_recovery_from_the_last_drift(default_config):
    # concept drift on day 20, its labels on day 21 (the retraining), the new model serves day 22
    assert default_days(default_config) == 22


def test_the_default_length_follows_the_scenario_and_stays_within_the_stream(default_config):
    stream = default_config.stream
    late_shift = ScenarioEvent(day=29, kind="prior_shift", positive_rate=0.5)
    late = stream.model_copy(update={"events": [*stream.events, late_shift]})
    assert default_days(default_config.model_copy(update={"stream": late})) == 30
    corrupt = ScenarioEvent(day=3, kind="corrupt_batch", corruption="null_flood")
    quiet = stream.model_copy(update={"events": [corrupt]})
    assert default_days(default_config.model_copy(update={"stream": quiet})) == stream.days


def test_the_demo_config_speeds_the_clock_up_and_keeps_a_smoke_test_standby(default_config, workspace):
    written = yaml.safe_load(write_demo_config(default_config, workspace, DemoOptions()).read_text())
    assert written["stream"]["days"] == 22
    assert written["orchestration"]["worker_poll_seconds"] == 1.0
    assert written["serving"]["keep_smoke_server"] is True
    asked = yaml.safe_load(write_demo_config(default_config, workspace, DemoOptions(days=30)).read_text())
    assert asked["stream"]["days"] == 30


def test_the_timeline_marks_days_scored_with_labels_due_after_the_replay(default_config, tmp_path):
    from datetime import date

    from ctcd.app.demo import DayRecord
    from ctcd.app.timeline import write_timeline

    records = [
        DayRecord(day=21, date=date(2026, 1, 21), batch="validated", live_accuracy=0.46),
        DayRecord(
            day=22, date=date(2026, 1, 22), batch="validated", live_accuracy=0.97, accuracy_after_replay=True
        ),
    ]
    out = write_timeline(records, default_config, tmp_path)
    assert out["png"].stat().st_size > 10_000
    html = out["html"].read_text(encoding="utf-8")
    assert "0.970 (labels due after the replay)" in html and "<td>0.460</td>" in html
