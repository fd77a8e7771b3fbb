"""A real `mlflow server` on 127.0.0.1 in place of the embedded SQLite file: train, register, promote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ctcd import mlflow_connection, registry, settings
from ctcd.net import free_port, wait_http
from tests.integration.test_training_flow import land_validated, write_config
from tests.live_stack import reporting_to
from tests.tasks.test_training import small_config

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server(tmp_path: Path):
    """`mlflow server` with its own SQLite store and proxied artifacts; stopped with its workers."""
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{store / 'mlflow.db'}",
        "--artifacts-destination",
        str(store / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = settings.server_environment(None, tmp_path / "unused", {"MLFLOW_DISABLE_TELEMETRY": "true"})
    log = (tmp_path / "mlflow-server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=180)
        yield f"http://127.0.0.1:{port}", store
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_training_flow_against_an_mlflow_server(
    mlflow_server, default_config, workspace, tmp_path, shared_prefect
):
    from flows.training import training_flow

    uri, store = mlflow_server
    small = small_config(default_config)
    cfg = small.model_copy(update={"tracking": small.tracking.model_copy(update={"tracking_uri": uri})})
    path = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    land_validated(cfg, workspace, range(1, 6))

    with reporting_to(shared_prefect):  # the session's real Prefect server (tests/live_stack.py)
        report = training_flow(path, reason="server")

    assert report.promoted
    champ = registry.Registry(cfg, workspace).require_champion()
    assert champ.version == report.version and champ.tags["ctcd.gate"] == "passed"
    assert mlflow_connection.tracking_uri(cfg, workspace) == uri
    # Everything went to the server: its store holds the run, the workspace's embedded store is untouched.
    assert not workspace.mlflow_db.exists()
    assert any((store / "artifacts").rglob("reference.parquet"))
    assert len(registry.Registry(cfg, workspace).load_reference(champ)) > 0
    assert registry.Registry(cfg, workspace).load_decision(champ)["passed"] is True
    model = registry.Registry(cfg, workspace).load_model(champ)
    assert (
        model.predict_proba(
            registry.Registry(cfg, workspace).load_reference(champ)[cfg.dataset.features]
        ).shape[1]
        == 2
    )
    link = registry.Registry(cfg, workspace).run_url(report.run_id)
    assert link.startswith(uri) and report.run_id in link
