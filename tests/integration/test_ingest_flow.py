"""The ingest flow on a real Prefect server (the session's, tests/live_stack.py) over the default 30-day
scenario, with the shipped suite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctcd.batches import quarantined_batches, validated_batches
from ctcd.config import CtcdConfig
from ctcd.events import sent_alerts
from ctcd.stream.landing import generate_stream
from ctcd.workspace import Workspace
from tests.live_stack import PrefectServer, reporting_to

pytestmark = pytest.mark.integration


def test_ingest_flow_quarantines_only_the_corrupted_day(
    workspace: Workspace, default_config: CtcdConfig, shared_prefect: PrefectServer
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.ingest import ingest_flow

    generate_stream(default_config, workspace)
    with reporting_to(shared_prefect):  # the session's real Prefect server (tests/live_stack.py)
        states = [
            ingest_flow(str(default_config.source), through=through, return_state=True)
            for through in ("2026-01-12", "2026-01-30")
        ]
        first, report = (state.result() for state in states)
        # The artifacts these two runs published (the server holds other tests' runs too).
        runs = ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[s.state_details.flow_run_id for s in states])
        )
        with get_client(sync_client=True) as client:
            artifacts = [
                a for a in client.read_artifacts(artifact_filter=runs) if a.key in ("data-gate", "data-docs")
            ]

    # No false rejections on clean data across the 30 days; the null-flood day (11) is quarantined.
    assert [d.batch_id for d in first.rejected] == ["2026-01-11"]
    assert len(first.decisions) == 12 and len(report.decisions) == 18
    assert report.rejected == []
    assert len(validated_batches(workspace)) == 29
    (bad,) = quarantined_batches(workspace)
    assert bad.batch_id == "2026-01-11" and "expect_column_values_to_not_be_null" in bad.reason
    assert json.loads((workspace.quarantine / "2026-01-11.json").read_text())["result"]["success"] is False
    # The quarantine raised one alert (test_alerts.py follows alerts to a webhook).
    assert [(a["kind"], a["episode"].split(":")[0]) for a in sent_alerts(workspace)] == [
        ("quarantine", "2026-01-11")
    ]
    # The covariate shift (days 8-14) passes with a warning on the salary mean, not a rejection.
    shifted = next(d for d in first.decisions if d.batch_id == "2026-01-08")
    assert shifted.accepted and shifted.warnings == 1
    assert list(workspace.landing.iterdir()) == []

    index = Path(report.data_docs.removeprefix("file://"))
    assert index.is_file() and workspace.gx_root in index.parents
    assert {a.key for a in artifacts} == {"data-gate", "data-docs"}
    tables = [json.dumps(a.data) for a in artifacts if a.key == "data-gate"]
    assert any("2026-01-30" in t for t in tables) and any("quarantined" in t for t in tables)
