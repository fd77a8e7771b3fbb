"""What `ctcd demo` replays and with which settings: its default length and the config it writes."""

from __future__ import annotations

import yaml

from ctcd.config import ScenarioEvent
from ctcd.demo import DemoOptions, default_days, write_demo_config


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
