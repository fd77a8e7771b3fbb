"""`ctcd up` / `ctcd stack status` / `ctcd down` as a user runs them: real servers, PID files, process trees.

The scenario test starts the whole stack (with stand-in flows, see test_prefect_stack.py); the others
check the PID-file rules with plain processes and no servers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from ctcd import alerts, events, processes
from ctcd.app import deployments, stack, stack_services
from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace
from tests.integration.test_prefect_stack import make_standin_project, write_config

CTCD = str(Path(sys.executable).parent / "ctcd")


def ctcd(ws: Workspace, cfg: CtcdConfig, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ctcd command line with this workspace and config."""
    env = {**os.environ, "CTCD_HOME": str(ws.root)}
    return subprocess.run(
        [CTCD, *args, "--config", str(cfg.source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tree(pids: list[int]) -> list[psutil.Process]:
    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _services(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert result.returncode == 0, result.stderr + result.stdout
    return {s["name"]: s for s in json.loads(result.stdout)["services"]}


def _drift_automations(cfg: CtcdConfig) -> int:
    with deployments.connect(deployments.prefect_api_url(cfg)) as client:
        return sum(
            cfg.orchestration.drift_event in getattr(a.trigger, "expect", ())
            for a in client.read_automations()
        )


def _with_alerts(cfg: CtcdConfig, url: str) -> CtcdConfig:
    """`cfg` with `alerts.webhook_url` set, saved to its file (the command line reads the file)."""
    raw = yaml.safe_load(cfg.source.read_text(encoding="utf-8"))
    raw["alerts"] = {"webhook_url": url, "block": "ctcd-alerts"}
    cfg.source.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_config(cfg.source)


def _deployment_ids(cfg: CtcdConfig) -> dict[str, Any]:
    with deployments.connect(deployments.prefect_api_url(cfg)) as client:
        return {d.name: d.id for d in client.read_deployments()}


@pytest.mark.integration
def test_up_is_healthy_idempotent_and_down_leaves_nothing_behind(
    tmp_path: Path, workspace: Workspace
) -> None:
    project = make_standin_project(tmp_path / "project")
    # A generous bound: the machine is shared (benchmarks/stack_startup.py measures the time itself).
    cfg = write_config(tmp_path, {"project_dir": str(project), "startup_timeout_seconds": 300})
    cfg = _with_alerts(cfg, "http://127.0.0.1:9/ctcd-alerts")  # no receiver: test_alerts.py has one
    prefect, mlflow = deployments.prefect_url(cfg), deployments.mlflow_url(cfg)
    external: processes.ProcessRecord | None = None
    try:
        first = ctcd(workspace, cfg, "up", timeout=400)
        assert first.returncode == 0, first.stderr + first.stdout
        assert prefect in first.stdout and mlflow in first.stdout
        assert "ctcd-pipeline/retrain" in first.stdout and "monitoring/drift-watch" in first.stdout
        assert "no champion yet" in first.stdout
        # One automation per alert kind, listed with its state.
        for kind in events.ALERT_KINDS:
            assert f"{alerts.automation_name(cfg, kind)}" in first.stdout
        assert first.stdout.count(" enabled") >= len(events.ALERT_KINDS)
        records = {r.name: r for r in stack.read_records(workspace)}
        assert set(records) == {"prefect-server", "mlflow", "worker-cpu-pool", "worker-gpu-pool"}
        for record in records.values():
            assert Path(record.log).is_file() and Path(record.log).parent == workspace.logs
        # The UIs answer, the Prefect UI knows where its API is.
        assert httpx.get(f"{prefect}/api/health").json() is True
        assert "<html" in httpx.get(prefect, follow_redirects=True).text.lower()
        ui_settings = httpx.get(f"{prefect}/ui-settings").json()
        assert ui_settings["api_url"] == deployments.prefect_api_url(cfg)
        assert httpx.get(f"{mlflow}/health").text == "OK"
        ids_before = _deployment_ids(cfg)

        # An MLflow server that ctcd did not start (here: one whose PID file is gone) is used, not replaced.
        external = records["mlflow"]
        (workspace.run / "mlflow.json").unlink()
        second = ctcd(workspace, cfg, "up", "--json", timeout=400)
        services = _services(second)
        assert services["prefect-server"]["pid"] == records["prefect-server"].pid
        assert services["prefect-server"]["detail"] == "already running"
        assert services["worker-gpu-pool"]["pid"] == records["worker-gpu-pool"].pid
        assert services["mlflow"]["state"] == "external"
        assert services["bento"]["state"] == "skipped"
        assert _deployment_ids(cfg) == ids_before
        assert _drift_automations(cfg) == 1
        assert [(a["kind"], a["enabled"]) for a in json.loads(second.stdout)["alerts"]] == [
            (kind, True) for kind in events.ALERT_KINDS
        ]

        status_result = ctcd(workspace, cfg, "stack", "status", "--json")
        status = _services(status_result)
        assert len(json.loads(status_result.stdout)["alerts"]) == len(events.ALERT_KINDS)
        assert status["prefect-server"]["state"] == "running"
        assert status["worker-cpu-pool"]["state"] == "running"
        assert status["mlflow"]["state"] == "stopped"  # not ctcd's any more

        started = _tree([r.pid for r in stack.read_records(workspace)])
        assert len(started) >= 3
        down = ctcd(workspace, cfg, "down", timeout=120)
        assert down.returncode == 0, down.stderr
        assert "prefect-server" in down.stdout and "worker-gpu-pool" in down.stdout
        assert not [p for p in started if _alive(p)], "ctcd down left processes behind"
        assert not list(workspace.run.glob("*.json"))
        assert stack.is_alive(external), "ctcd down stopped a server it did not own"
    finally:
        stack.down(workspace, grace=10)
        if external is not None:
            stack.stop_record(workspace, external, grace=10)


# --- PID-file rules, with plain processes --------------------------------------------------------------


def _record(ws: Workspace, name: str, pid: int, create_time: float) -> processes.ProcessRecord:
    record = processes.ProcessRecord(
        name=name, pid=pid, create_time=create_time, order=10, command=["x"], log=str(ws.logs / f"{name}.log")
    )
    (ws.run / f"{name}.json").write_text(json.dumps(dataclasses.asdict(record)), encoding="utf-8")
    return record


def test_stale_pid_files_are_reported_and_removed_without_touching_the_pid_owner(
    tmp_path: Path, workspace: Workspace
) -> None:
    cfg = write_config(tmp_path, {})
    gone = subprocess.Popen(["true"])
    gone.wait()
    _record(workspace, "mlflow", gone.pid, time.time())
    # A PID file whose pid the system has given to another process since: that process is not ours.
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        _record(
            workspace, "prefect-server", bystander.pid, psutil.Process(bystander.pid).create_time() - 1000
        )
        status = _services(ctcd(workspace, cfg, "stack", "status", "--json"))
        assert status["mlflow"]["state"] == "stale"
        assert status["prefect-server"]["state"] == "stale"
        assert status["worker-cpu-pool"]["state"] == "stopped"

        down = ctcd(workspace, cfg, "down")
        assert down.returncode == 0, down.stderr
        assert down.stdout.count("stale PID file removed") == 2
        assert bystander.poll() is None, "ctcd down killed a process it did not start"
        assert not list(workspace.run.glob("*.json"))
    finally:
        bystander.kill()
        bystander.wait()


def test_stopping_a_service_stops_the_processes_it_started_in_their_own_sessions(
    workspace: Workspace,
) -> None:
    # Like a Prefect worker: the service runs each job in a session of its own, which ignores SIGTERM.
    script = (
        "import signal, subprocess, sys, time\n"
        "child = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'\n"
        "subprocess.Popen([sys.executable, '-c', child], start_new_session=True)\n"
        "time.sleep(120)\n"
    )
    record = processes.start_process(
        workspace, "worker-x", [sys.executable, "-c", script], dict(os.environ), order=30, cwd=workspace.root
    )
    deadline = time.monotonic() + 30
    while not psutil.Process(record.pid).children() and time.monotonic() < deadline:
        time.sleep(0.1)
    tree = _tree([record.pid])
    assert len(tree) == 2
    assert os.getpgid(tree[1].pid) != os.getpgid(record.pid)
    assert stack.stop_record(workspace, record, grace=2) is True
    assert not [p for p in tree if _alive(p)]
    assert not (workspace.run / "worker-x.json").exists()
    assert stack.stop_record(workspace, record, grace=2) is False


def test_up_refuses_a_port_held_by_another_program_before_starting_anything(
    tmp_path: Path, workspace: Workspace
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        cfg = write_config(tmp_path, {"prefect_port": holder.getsockname()[1]})
        result = ctcd(workspace, cfg, "up")
    assert result.returncode == 2
    assert f"port {cfg.orchestration.prefect_port} is taken" in result.stderr
    assert "orchestration.prefect_port" in result.stderr
    assert not list(workspace.run.glob("*.json"))


def test_down_with_nothing_started_says_so(tmp_path: Path, workspace: Workspace) -> None:
    result = ctcd(workspace, write_config(tmp_path, {}), "down")
    assert result.returncode == 0
    assert "nothing to stop" in result.stdout


def test_the_prefect_processes_get_the_configured_database_and_the_workspace(
    tmp_path: Path, workspace: Workspace
) -> None:
    url = "postgresql+asyncpg://ctcd:secret@db.internal:5432/prefect"
    env = stack_services.prefect_env(write_config(tmp_path, {"prefect_database_url": url}), workspace)
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == url
    assert env["PREFECT_HOME"] == str(workspace.prefect_home)
    assert env["PREFECT_UI_API_URL"] == env["PREFECT_API_URL"]
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    sqlite = stack_services.prefect_env(write_config(tmp_path, {}), workspace)
    assert sqlite.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") != url
