"""Against a real `prefect server start` (its scheduler and triggers run there, unlike in the test harness):
deploying prefect.yaml creates the deployments with their schedules and drift trigger, a scheduled run is
executed by a process worker, and a drift event starts a training run on the GPU pool.

The flows deployed here are stand-ins with the real flows' names and parameters, written next to a copy
of the real `deployments/prefect.yaml`, so these tests exercise the deployment machinery and not the ML.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctcd.app import deployments, stack
from ctcd.config import CtcdConfig, load_config
from ctcd.net import free_port
from ctcd.workspace import Workspace

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STANDIN = '''"""Stand-in for ctcd's {flow} flow: the same name and parameters; records how it was run."""

import json
import os
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run

ENV = ("CUDA_VISIBLE_DEVICES", "CTCD_HOME", "CTCD_CONFIG", "MLFLOW_TRACKING_URI")

@flow(name="{flow}")
def {function}(config_path: str | None = None, {parameters}) -> None:
    record = {{
        "parameters": {{k: v for k, v in locals().items() if k != "record"}},
        "env": {{k: os.environ.get(k) for k in ENV}},
    }}
    out = Path(os.environ["CTCD_HOME"]) / "standin" / f"{{flow_run.id}}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record))
'''
STANDIN_FLOWS = {
    "ingest": ("ingest_flow", "through: str | None = None"),
    "monitoring": ("monitoring_flow", "batch: str | None = None"),
    "pipeline": (
        "ctcd_pipeline",
        "reason: str | None = None, window_start: str | None = None, trigger: dict | None = None, "
        "monitor: bool = True",
    ),
    "delivery": ("delivery_flow", "version: str | None = None"),
}


def make_standin_project(root: Path) -> Path:
    """A project dir with the real deployments/prefect.yaml and stand-in flows at its entrypoints."""
    (root / "deployments").mkdir(parents=True)
    shutil.copy(REPO / "deployments" / "prefect.yaml", root / "deployments" / "prefect.yaml")
    (root / "flows").mkdir()
    for flow, (function, parameters) in STANDIN_FLOWS.items():
        name = "ctcd-pipeline" if flow == "pipeline" else flow
        text = STANDIN.format(flow=name, function=function, parameters=parameters)
        (root / "flows" / f"{flow}.py").write_text(text, encoding="utf-8")
    return root


def write_config(
    directory: Path, orchestration: dict[str, Any], serving_port: int | None = None
) -> CtcdConfig:
    """The default config with `orchestration` overrides (free ports, a project dir), saved and loaded."""
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    raw["gates"]["data"]["suite"] = str(REPO / "configs" / raw["gates"]["data"]["suite"])
    raw["orchestration"].update(
        {"prefect_port": free_port(), "mlflow_port": free_port(), "worker_poll_seconds": 1, **orchestration}
    )
    raw["serving"]["port"] = serving_port or free_port()
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_config(path)


def wait_for(check: Callable[[], Any], what: str, timeout: float, logs: list[Path] = ()) -> Any:
    """Poll `check` until it returns something truthy; fail with the logs' tails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    tails = "\n".join(
        f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]) for p in logs
    )
    pytest.fail(f"{what} within {timeout:.0f}s\n{tails}")


@dataclass(frozen=True)
class Stack:
    cfg: CtcdConfig
    ws: Workspace
    api: str
    deployed: deployments.DeployResult


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Prefect server, both pools with a process worker each, and the stand-in deployments."""
    from prefect.client.schemas.actions import WorkPoolUpdate

    root = tmp_path_factory.mktemp("prefect-stack")
    project = make_standin_project(root / "project")
    cfg = write_config(
        root,
        {
            "project_dir": str(project),
            "schedules": {
                "ingest": {"cron": "0 1 * * *"},
                "monitor": {"interval_seconds": 20},
                "training": {"cron": "0 3 * * 1"},
            },
        },
    )
    ws = Workspace.open(root / "home")
    api = deployments.prefect_api_url(cfg)
    deadline = time.monotonic() + 180
    try:
        stack.wait_prefect(cfg, stack.start_prefect_server(cfg, ws), deadline)
        pools = [cfg.orchestration.cpu_pool, cfg.orchestration.gpu_pool]
        assert deployments.ensure_work_pools(api, pools) == pools
        with deployments.connect(api) as client:
            # One run at a time on the CPU pool: scheduled runs every 20 s must not pile up on 2 cores.
            client.update_work_pool(cfg.orchestration.cpu_pool, WorkPoolUpdate(concurrency_limit=1))
        workers = [stack.start_worker(cfg, ws, pool) for pool in pools]
        deployed = deployments.deploy(cfg, ws, api)
        for launch, pool in zip(workers, pools, strict=True):
            stack.wait_worker(cfg, launch, pool, deadline)
        yield Stack(cfg, ws, api, deployed)
    finally:
        stack.down(ws, grace=10)


def _deployments(api: str) -> dict[str, Any]:
    with deployments.connect(api) as client:
        return {d.name: d for d in client.read_deployments()}


def _runs_of(api: str, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with deployments.connect(api) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def _completed(api: str, deployment_id: Any, accept: Callable[[Any], bool] = lambda _: True) -> Any:
    runs = [r for r in _runs_of(api, deployment_id) if accept(r)]
    broken = [r for r in runs if r.state_type and r.state_type.value in ("FAILED", "CRASHED")]
    if broken:
        pytest.fail(
            f"flow run {broken[0].name} ended {broken[0].state_type.value}: {broken[0].state.message}"
        )
    done = [r for r in runs if r.state_type and r.state_type.value == "COMPLETED"]
    return done[0] if done else None


def _logs(s: Stack) -> list[Path]:
    return sorted(s.ws.logs.glob("*.log"))


def test_deploy_creates_the_deployments_with_schedules_pools_and_environment(prefect_stack: Stack) -> None:
    s = prefect_stack
    assert s.deployed.names == [
        "ctcd-pipeline/retrain",
        "delivery/deliver",
        "ingest/ingest-validate",
        "monitoring/drift-watch",
    ]
    d = _deployments(s.api)
    assert d["ingest-validate"].schedules[0].schedule.cron == "0 1 * * *"
    assert d["drift-watch"].schedules[0].schedule.interval == timedelta(seconds=20)
    (weekly,) = d["retrain"].schedules
    assert weekly.schedule.cron == "0 3 * * 1"
    assert weekly.parameters == {"reason": "scheduled"}
    assert d["deliver"].schedules == []
    assert d["retrain"].work_pool_name == s.cfg.orchestration.gpu_pool
    assert {d[n].work_pool_name for n in ("ingest-validate", "drift-watch", "deliver")} == {
        s.cfg.orchestration.cpu_pool
    }
    env = d["retrain"].job_variables["env"]
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert env["CTCD_HOME"] == str(s.ws.root)
    assert env["CTCD_CONFIG"] == str(s.cfg.source)
    assert d["retrain"].global_concurrency_limit.limit == 1


def _drift_automations(s: Stack) -> list[Any]:
    with deployments.connect(s.api) as client:
        automations = client.read_automations()
    return [a for a in automations if s.cfg.orchestration.drift_event in getattr(a.trigger, "expect", set())]


def test_the_drift_trigger_runs_the_training_deployment(prefect_stack: Stack) -> None:
    from ctcd.events import drift_trigger_spec, model_resource_id

    s = prefect_stack
    (automation,) = _drift_automations(s)
    assert automation.trigger.match.model_dump()["prefect.resource.id"] == model_resource_id(s.cfg)
    (action,) = automation.actions
    assert action.type == "run-deployment"
    assert action.deployment_id == _deployments(s.api)["retrain"].id
    assert action.parameters == drift_trigger_spec(s.cfg)["parameters"]


def test_a_scheduled_run_is_executed_by_the_cpu_worker(prefect_stack: Stack) -> None:
    s = prefect_stack
    monitor = _deployments(s.api)["drift-watch"]
    run = wait_for(
        lambda: _completed(s.api, monitor.id), "no scheduled drift-watch run completed", 150, _logs(s)
    )
    with deployments.connect(s.api) as client:  # enough runs every 20 s: spare the CPU for what follows
        client.pause_deployment(monitor.id)
    assert run.auto_scheduled
    assert run.work_pool_name == s.cfg.orchestration.cpu_pool
    record = json.loads((s.ws.root / "standin" / f"{run.id}.json").read_text())
    assert record["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert record["env"]["CTCD_HOME"] == str(s.ws.root)
    assert record["env"]["MLFLOW_TRACKING_URI"] == s.ws.mlflow_tracking_uri


def test_a_drift_event_starts_training_on_the_gpu_pool(prefect_stack: Stack) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ctcd.events import emit_drift_event

    s = prefect_stack
    retrain = _deployments(s.api)["retrain"]
    trigger = {"signals": ["performance"], "accuracy_drop": 0.12}
    with temporary_settings({PREFECT_API_URL: s.api}):
        emit_drift_event(s.cfg, {"reason": "performance", "window_start": "2026-01-15", "trigger": trigger})

    def from_event(run: Any) -> bool:
        return run.parameters.get("reason") == "performance"

    run = wait_for(
        lambda: _completed(s.api, retrain.id, from_event), "the drift event's training run", 150, _logs(s)
    )
    assert run.work_pool_name == s.cfg.orchestration.gpu_pool
    assert run.parameters["window_start"] == "2026-01-15"
    record = json.loads((s.ws.root / "standin" / f"{run.id}.json").read_text())
    assert record["parameters"]["trigger"] == trigger  # a single template keeps the payload's JSON type
    assert record["env"]["CUDA_VISIBLE_DEVICES"] == "0"
