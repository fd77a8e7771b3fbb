"""The ingest flow's Dask path: batches validated in parallel on a real 2-worker LocalCluster through
prefect-dask's DaskTaskRunner decide exactly what the single-process ingest decides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ctcd.batches import quarantined_batches, validated_batches
from ctcd.config import CtcdConfig
from ctcd.stream.landing import generate_stream
from ctcd.workspace import Workspace
from tasks import ingest
from tests.live_stack import PrefectServer, reporting_to

pytestmark = pytest.mark.integration

THROUGH = "2026-01-12"  # 12 days of the default scenario; day 11 is the null flood the gate rejects


def _decisions(report: ingest.IngestReport) -> list[tuple[str, bool, str, int]]:
    return [(d.batch_id, d.accepted, d.reason, d.warnings) for d in report.decisions]


def test_dask_ingest_files_the_same_decisions_as_one_process(
    workspace: Workspace,
    default_config: CtcdConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    shared_prefect: PrefectServer,
) -> None:
    pytest.importorskip("prefect_dask", reason="the dask extra is not installed")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

    from flows.ingest import ingest_flow

    # The single-process reference, in its own workspace.
    alone = Workspace.open(tmp_path / "alone")
    generate_stream(default_config, alone)
    cfg = default_config.model_copy(
        update={
            "orchestration": default_config.orchestration.model_copy(
                update={"dask": "local", "dask_workers": 2}
            )
        }
    )
    assert cfg.orchestration.uses_dask
    path = tmp_path / "dask.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    generate_stream(cfg, workspace)
    # A corrupt file beside the scenario's batches: unreadable, so quarantined with the reader's error.
    (workspace.landing / "2026-01-05.parquet").write_bytes(b"not parquet")
    (alone.landing / "2026-01-05.parquet").write_bytes(b"not parquet")  # the same for the reference
    expected = ingest.ingest(default_config, alone, THROUGH)
    assert [d.batch_id for d in expected.rejected] == ["2026-01-05", "2026-01-11"]
    with reporting_to(shared_prefect):  # the session's real Prefect server (tests/live_stack.py)
        state = ingest_flow(str(path), through=THROUGH, return_state=True)
        report = state.result()
        run_id = state.state_details.flow_run_id
        with get_client(sync_client=True) as client:
            # This run and the flow runs it started (the server holds other tests' runs too).
            children = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id]))
            runs = [client.read_flow_run(run_id), *client.read_flow_runs(flow_run_filter=children)]
            flows = {client.read_flow(r.flow_id).name for r in runs}
            of_runs = FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in runs]))
            task_runs = [
                t
                for t in client.read_task_runs(flow_run_filter=of_runs)
                if t.name.startswith("validate-2026")
            ]

    assert flows == {"ingest", "validate-batches"}  # the validations ran in the Dask subflow
    assert len(task_runs) == len(report.decisions) == 12

    assert _decisions(report) == _decisions(expected)
    assert sorted(r.batch_id for r in quarantined_batches(workspace)) == sorted(
        r.batch_id for r in quarantined_batches(alone)
    )
    assert sorted(r.batch_id for r in validated_batches(workspace)) == sorted(
        r.batch_id for r in validated_batches(alone)
    )
    assert list(workspace.landing.iterdir()) == []
    # The Data Docs, rendered by the ingest process after the workers' runs, hold every batch's page.
    index = Path(report.data_docs.removeprefix("file://"))
    assert index.is_file()
    for d in report.decisions:
        if d.batch_id != "2026-01-05":  # the unreadable file never reached GX
            assert d.data_docs is not None and Path(d.data_docs.removeprefix("file://")).is_file(), d.batch_id
