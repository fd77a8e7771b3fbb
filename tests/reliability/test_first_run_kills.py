"""Guarantee: no SIGKILL during a workspace's first `ctcd run` leaves a workspace later commands cannot use.

One small stream is generated once (`ctcd data generate`). For each kill point a fresh copy of that
workspace runs `ctcd run` through the real CLI (Great Expectations, MLflow's SQLite store in the workspace),
which is killed with SIGKILL, its whole process group and every descendant, at a moment fixed by what the
run has observably done: Prefect's database appearing (its migrations) and 1.5 s later, the first batch
judged, and the MLflow store's creation (its temporary file appearing, then holding half of a complete
store's bytes) and the store in place. Kill points tied to events (and to the migrations' progress) rather
than to clock time mean the same thing on a slow and on a fast machine.

The store is built in a temporary file (`.init-<pid>.<name>`) and renamed into place in one `os.replace`,
and the next creation deletes every such temporary file before it starts: a kill anywhere inside the
creation leaves the same state (no store, a partial temporary file), whatever share of its bytes was
written. So three points cover it: the creation's first byte, its middle (a file with some of MLflow's
tables) and the store just in place (after the rename); 25 % and 75 % would repeat the middle one.

The kills that concern Prefect's own database (its migrations, and the first batch judged, while the run's
states are being written there) run against Prefect's temporary server in the workspace, as a user's first
`ctcd run` does, and so does their rerun. The kills inside the MLflow store's creation do not concern
Prefect: they and their reruns report to the session's Prefect server (PREFECT_API_URL, as under `ctcd up`),
which saves starting a temporary server twice per kill point.

After each kill: the MLflow store is either absent or complete (never half-made), and a rerun of `ctcd run`
succeeds with exactly one model version, which is the champion, and every generated batch is in
validated/ or quarantine/ (none lost, none in both, landing/ empty).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctcd import registry, stores
from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace
from tests.conftest import REPO
from tests.integration.test_training_flow import write_config
from tests.reliability.test_crash_resume import _kill_tree
from tests.tasks.test_training import small_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]

CLI = [sys.executable, "-c", "from ctcd.app.cli import main; main()"]
DAYS = 4
EVENT_TIMEOUT = 300.0


@dataclass(frozen=True)
class KillPoint:
    name: str
    event: Callable[[Workspace, int], bool]  # (workspace, size of a complete MLflow store in bytes)
    offset: float = 0.0  # seconds after the event was seen
    own_prefect: bool = True  # Prefect's temporary server in the workspace; False: the session's server


def _prefect_db(ws: Workspace, full_size: int) -> bool:
    return (ws.prefect_home / "prefect.db").exists()


def _first_batch_judged(ws: Workspace, full_size: int) -> bool:
    return any(ws.validated.glob("*.parquet")) or any(ws.quarantine.glob("*.parquet"))


def _temporary_store(ws: Workspace) -> Path | None:
    found = [p for p in ws.mlflow_db.parent.glob(f"{stores.TMP_PREFIX}*") if p.suffix == ".db"]
    return found[0] if found else None


def _store_in_place(ws: Workspace, full_size: int) -> bool:
    return ws.mlflow_db.exists()


def _store_built(share: float) -> Callable[[Workspace, int], bool]:
    """The store's creation has written `share` of a complete store's bytes (or it is already in place).

    Progress measured by what MLflow's migrations wrote, not by time: the same point on any machine."""

    def event(ws: Workspace, full_size: int) -> bool:
        tmp = _temporary_store(ws)
        try:
            if tmp is not None and tmp.stat().st_size >= share * full_size:
                return True
        except FileNotFoundError:  # renamed into place meanwhile
            pass
        return _store_in_place(ws, full_size)

    return event


# In the order a first run reaches them. Prefect migrates its database while its temporary server starts;
# the MLflow store is created when the candidate is registered, after the search.
KILL_POINTS = [
    KillPoint("Prefect's database appears (its migrations begin)", _prefect_db),
    KillPoint("1.5 s into Prefect's migrations", _prefect_db, offset=1.5),
    KillPoint("first batch judged (ingest)", _first_batch_judged),
    KillPoint("MLflow store creation begins", _store_built(0.0), own_prefect=False),
    KillPoint("MLflow store creation, 50 % of its bytes written", _store_built(0.5), own_prefect=False),
    KillPoint("MLflow store just in place", _store_in_place, own_prefect=False),
]


def _environment(ws: Workspace, prefect_api: str | None = None) -> dict[str, str]:
    """The CLI's environment in `ws`: Prefect's temporary server there, or the server at `prefect_api`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "CTCD_CONFIG")}
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    env |= {
        "CTCD_HOME": str(ws.root),
        "PREFECT_HOME": str(ws.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "OMP_NUM_THREADS": "1",
    }
    return env


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str], int]:
    """A small config and a workspace holding one generated stream (landed), reused by every kill point,
    and the size of a complete MLflow store (to kill at shares of its creation)."""
    root = tmp_path_factory.mktemp("first-run")
    cfg: CtcdConfig = small_config(load_config(REPO / "configs" / "default.yaml"), rows_per_day=1000)
    config = write_config(cfg, root / "ctcd.yaml")
    template = Workspace.open(root / "template")
    done = subprocess.run(
        [*CLI, "data", "generate", "--days", str(DAYS), "-c", str(config)],
        env=_environment(template),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    batches = sorted(p.stem for p in template.landing.glob("*.parquet"))
    assert len(batches) == DAYS
    assert not template.mlflow_db.exists() and not _prefect_db(template, 0)

    calibration = Workspace.open(root / "calibration")
    stores.ensure_mlflow_store(calibration)
    return config, template.root, batches, calibration.mlflow_db.stat().st_size


def _kill_at(
    point: KillPoint, ws: Workspace, config: Path, log: Path, full_size: int, env: dict[str, str]
) -> bool:
    """Run `ctcd run` in `ws` and SIGKILL it at `point`; whether the kill fell inside the MLflow store's
    creation (its temporary file was there just before the kill)."""
    with log.open("wb") as out:
        run = subprocess.Popen(
            [*CLI, "run", "-c", str(config)],
            env=env,
            cwd=ws.root.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + EVENT_TIMEOUT
            while not point.event(ws, full_size) and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            seen = point.event(ws, full_size)
            if seen and point.offset:
                time.sleep(point.offset)
            inside_creation = _temporary_store(ws) is not None
        finally:
            _kill_tree(run)
    tail = log.read_text(errors="replace")[-3000:]
    assert seen, f"{point.name}: the event never happened: {tail}"
    assert run.returncode == -signal.SIGKILL, f"{point.name}: the run ended before the kill: {tail}"
    return inside_creation


def test_a_first_run_killed_anywhere_leaves_a_usable_workspace(
    generated, shared_prefect, tmp_path: Path
) -> None:
    config, template, batches, full_size = generated
    cfg = load_config(config)
    inside_creation = []
    for i, point in enumerate(KILL_POINTS):
        ws = Workspace(tmp_path / f"kill-{i}")
        shutil.copytree(template, ws.root)
        started = time.monotonic()
        env = _environment(ws, None if point.own_prefect else shared_prefect.api)
        if _kill_at(point, ws, config, tmp_path / f"kill-{i}.log", full_size, env):
            inside_creation.append(point.name)

        # Never a half-made store in place: none, or a complete one.
        state = stores.inspect_store(ws.mlflow_db)
        assert not state.exists or state.complete, f"{point.name}: {state.describe()}"

        rerun = subprocess.run(
            [*CLI, "run", "-c", str(config)],
            env=env,
            cwd=ws.root.parent,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert rerun.returncode == 0, f"{point.name}: {rerun.stdout[-2000:]} {rerun.stderr[-3000:]}"

        versions = [r.version for r in registry.Registry(cfg, ws).versions()]
        assert len(versions) == 1, f"{point.name}: versions {versions}"
        assert registry.Registry(cfg, ws).require_champion().version == versions[0], point.name
        validated = {p.stem for p in ws.validated.glob("*.parquet")}
        quarantined = {p.stem for p in ws.quarantine.glob("*.parquet")}
        assert validated | quarantined == set(batches), f"{point.name}: a batch was lost"
        assert not validated & quarantined, f"{point.name}: a batch is in both places"
        assert not list(ws.landing.glob("*.parquet")), point.name
        assert not list(ws.mlflow_db.parent.glob(f"{stores.TMP_PREFIX}*")), "a temporary store was left"
        took = time.monotonic() - started
        print(f"kill point {i + 1}/{len(KILL_POINTS)}: {point.name}: survived ({took:.0f} s)")
    print(f"kills inside the MLflow store's creation: {inside_creation}")
    # The dense kill points did hit the store's creation (not only before or after it).
    assert inside_creation, "no kill fell inside the MLflow store's creation"
