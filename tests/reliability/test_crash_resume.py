"""Guarantee 1: a training run killed mid-training resumes from its cached steps on the rerun.

The training flow runs in its own process (results persisted under the workspace), reporting to the
session's Prefect server (tests/live_stack.py; PREFECT_API_URL, as under `ctcd up`): the cache lives in the
workspace's result storage, not in Prefect's database (test_first_run_kills.py kills Prefect's temporary
server in the workspace). It is killed with SIGKILL right after the search's result is persisted: the data was
read and validated, the model search is done, the baseline, evaluation and registration are not. Then:
the registry and the champion are exactly as before, and the rerun takes the search from the cache,
registers one version and promotes at most once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from ctcd import audit, registry
from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace
from tests.conftest import REPO
from tests.integration.test_serving import register_version
from tests.integration.test_training_flow import land_validated, write_config
from tests.live_stack import PrefectServer
from tests.tasks.test_training import small_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

RUN = (
    "import sys; from flows.training import training_flow; "
    "r = training_flow(sys.argv[1], reason=sys.argv[2]); print('RESULT', r.version, r.promoted)"
)


def _environment(ws: Workspace, prefect_api: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {
        "PREFECT_API_URL": prefect_api,
        "CTCD_HOME": str(ws.root),
        "PREFECT_HOME": str(ws.prefect_home),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(ws.root / "prefect-results"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "OMP_NUM_THREADS": "1",
    }
    return env


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process, its group and every descendant (Prefect's temporary server, where it has one)."""
    try:
        family = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.wait(timeout=30)


def _persisted(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def test_a_killed_training_run_resumes_from_cached_steps(
    tmp_path: Path, default_config: CtcdConfig, workspace: Workspace, shared_prefect: PrefectServer
):
    cfg = small_config(default_config)
    config = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    land_validated(cfg, workspace, range(1, 7))
    champion = register_version(cfg, workspace, seed=1)
    registry.Registry(cfg, workspace).promote(champion, reason="champion before the crash")
    moves_before = audit.alias_history(workspace, alias=None)
    results = workspace.root / "prefect-results"
    env = _environment(workspace, shared_prefect.api)

    log_path = tmp_path / "killed-run.log"
    with log_path.open("wb") as log:
        run = subprocess.Popen(
            [sys.executable, "-c", RUN, config, "killed"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 600
            while not _persisted(results) and run.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            _kill_tree(run)
    killed_log = log_path.read_text(errors="replace")
    assert run.returncode == -signal.SIGKILL, f"the run ended by itself: {killed_log[-2000:]}"
    assert "Task run 'search" in killed_log and "RESULT" not in killed_log

    # The failed run touched nothing: no version, no alias move, the champion as it was.
    assert [r.version for r in registry.Registry(cfg, workspace).versions()] == [champion.version]
    assert registry.Registry(cfg, workspace).require_champion().version == champion.version
    assert audit.alias_history(workspace, alias=None) == moves_before

    rerun = subprocess.run(
        [sys.executable, "-c", RUN, config, "resumed"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-3000:]
    assert re.search(r"Task run 'search-[^']*' - Finished in state Cached", output), output[-3000:]
    (result,) = re.findall(r"^RESULT (\S+) (True|False)$", rerun.stdout, flags=re.M)

    versions = [r.version for r in registry.Registry(cfg, workspace).versions()]
    assert versions == [result[0], champion.version], "a version was registered twice"
    new_moves = audit.alias_history(workspace, alias=None)[len(moves_before) :]
    promotions = [m for m in new_moves if m["alias"] == registry.CHAMPION]
    assert [m["version"] for m in promotions] == ([result[0]] if result[1] == "True" else [])
    assert [m["version"] for m in new_moves if m["alias"] == registry.CHALLENGER] == [result[0]]
