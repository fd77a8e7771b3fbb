"""Delivery's fallback version and report (`tasks/delivery.py`)."""

from __future__ import annotations

from ctcd.serving.deploy import SmokeResult
from tasks.delivery import DeliveryReport, delivery_markdown, previous_version

HISTORY = [
    {"version": "1", "previous": None},
    {"version": "2", "previous": "1"},
    {"version": "3", "previous": "2"},
]


def test_the_fallback_is_what_the_live_server_serves_else_the_champion_before_the_target():
    assert previous_version(HISTORY, {"version": "2"}, "3") == "2"
    assert previous_version(HISTORY, None, "3") == "2"
    assert previous_version(HISTORY, {"version": "3"}, "3") == "2"  # the live server already serves it
    assert previous_version(HISTORY, None, "1") is None
    assert previous_version([], None, "3") is None


def test_the_report_reads_as_a_table():
    smoke = SmokeResult(version="3", rows=50, max_abs_difference=0.0, labels_match=True, passed=True)
    report = DeliveryReport(
        status="deployed",
        version="3",
        previous_version="2",
        live_url="http://127.0.0.1:3000",
        live_switched=True,
        smoke=smoke,
        message="version 3 passed the smoke test",
    )
    markdown = delivery_markdown(report)
    assert markdown.startswith("## Delivery: deployed")
    assert "| smoke test | passed on 50 rows (max diff 0.00e+00) |" in markdown
    assert "| previous | 2 |" in markdown and markdown.endswith("version 3 passed the smoke test")
    assert report.summary() == "delivery v3: deployed; version 3 passed the smoke test"
    rolled = report.model_copy(update={"status": "rolled_back", "message": "champion back on 2"})
    assert rolled.summary() == "delivery v3: rolled back; champion back on 2"
