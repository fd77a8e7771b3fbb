"""Ingest from a files source through the real data gate, and two `ctcd run` processes on one workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctcd.batches import quarantined_batches, validated_batches
from ctcd.config import CtcdConfig, FilesSource, ScenarioEvent, SourceLabels, load_config
from ctcd.stream.scenario import generate_day
from ctcd.workspace import Workspace
from tests.integration.test_training_flow import write_config
from tests.live_stack import reporting_to
from tests.tasks.test_training import small_config

pytestmark = pytest.mark.integration

DAYS = range(1, 5)
CORRUPT_DAY = 3


def _files_source_config(default_config: CtcdConfig, tmp_path: Path) -> Path:
    """Four days of the stream (1000 rows, the shipped suite's minimum) as files; day 3 null-flooded.

    Features are Parquet files, labels CSV files keyed by id, both named by batch id; no `stream` section.
    """
    small = small_config(default_config, rows_per_day=1000)
    assert small.stream is not None
    corrupt = ScenarioEvent(day=CORRUPT_DAY, kind="corrupt_batch", corruption="null_flood")
    gen = small.model_copy(update={"stream": small.stream.model_copy(update={"events": [corrupt]})})
    (tmp_path / "batches").mkdir()
    (tmp_path / "labels").mkdir()
    for day in DAYS:
        b = generate_day(gen, day)
        b.features.to_parquet(tmp_path / "batches" / f"{b.batch_id}.parquet", index=False)
        b.labels.to_csv(tmp_path / "labels" / f"{b.batch_id}.csv", index=False)
    source = FilesSource(
        kind="files",
        path=str(tmp_path / "batches" / "*.parquet"),
        labels=SourceLabels(path=str(tmp_path / "labels")),
    )
    cfg = small.model_copy(
        update={
            "stream": None,
            "dataset": small.dataset.model_copy(update={"source": source, "label_delay_batches": 0}),
        }
    )
    return write_config(cfg, tmp_path / "ctcd.yaml")


def _ids(days: range) -> list[str]:
    return [f"2026-01-{d:02d}" for d in days]


def test_ingest_pulls_from_the_source_and_never_judges_a_batch_twice(
    workspace: Workspace, default_config: CtcdConfig, tmp_path: Path
):
    from tasks.ingest import ingest

    cfg = load_config(_files_source_config(default_config, tmp_path))
    first = ingest(cfg, workspace, through="2026-01-03")
    assert first.landed == _ids(range(1, 4))
    assert [d.batch_id for d in first.rejected] == ["2026-01-03"]
    again = ingest(cfg, workspace, through="2026-01-03")
    assert again.landed == [] and again.decisions == []
    rest = ingest(cfg, workspace)
    assert rest.landed == ["2026-01-04"] and [d.batch_id for d in rest.accepted] == ["2026-01-04"]
    assert [r.batch_id for r in validated_batches(workspace)] == ["2026-01-01", "2026-01-02", "2026-01-04"]
    assert [r.batch_id for r in quarantined_batches(workspace)] == ["2026-01-03"]
    assert sorted(p.name for p in workspace.labels.iterdir()) == [f"{b}.parquet" for b in _ids(DAYS)]
    assert list(workspace.landing.iterdir()) == []


@pytest.fixture(scope="module")
def prefect_api_url(shared_prefect):
    """The session's real Prefect server (tests/live_stack.py)."""
    with reporting_to(shared_prefect) as api:
        yield api


def test_two_concurrent_ctcd_runs_judge_every_batch_exactly_once(
    prefect_api_url: str, workspace: Workspace, default_config: CtcdConfig, tmp_path: Path
):
    path = _files_source_config(default_config, tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "CTCD_HOME": str(workspace.root),
        "PREFECT_API_URL": prefect_api_url,
    }
    command = [sys.executable, "-c", "from ctcd.app.cli import main; main()", "run", "-c", str(path)]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=1200) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{out}\n{err[-3000:]}"

    # Whichever ran first judged all four batches; the other waited for the lock and found nothing new.
    ingest_lines = sorted(
        line for out, _ in outputs for line in out.splitlines() if line.startswith("ingest:")
    )
    assert ingest_lines == [
        "ingest: 0 batch(es) validated, 0 quarantined",
        "ingest: 3 batch(es) validated, 1 quarantined",
    ]
    assert [r.batch_id for r in validated_batches(workspace)] == ["2026-01-01", "2026-01-02", "2026-01-04"]
    assert [r.batch_id for r in quarantined_batches(workspace)] == ["2026-01-03"]
    assert list(workspace.landing.iterdir()) == []
    assert sum("trained version" in out for out, _ in outputs) == 2
