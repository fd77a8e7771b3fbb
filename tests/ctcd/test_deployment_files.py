"""Deployment files parse, point at things that exist, and render through Prefect's own code (no servers)."""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import json
import re
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctcd.app import deployments
from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
WORK_POOLS = REPO / "deployments" / "work-pools"
DOCKER = REPO / "docker"


def _prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))


def _by_name(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in raw["deployments"]}


# --- prefect.yaml ------------------------------------------------------------------------------------------


def test_prefect_yaml_is_valid_for_prefects_own_model() -> None:
    from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel

    raw = _prefect_yaml()
    model = PrefectYamlModel.model_validate(raw)
    assert [d.name for d in model.deployments] == ["ingest-validate", "drift-watch", "retrain", "deliver"]
    # Prefect ignores unknown keys silently: a typo would vanish, so every key must be one Prefect reads.
    for deployment in raw["deployments"]:
        unknown = set(deployment) - set(DeploymentConfig.model_fields)
        assert not unknown, f"{deployment['name']}: keys Prefect ignores: {unknown}"


def test_every_entrypoint_resolves_to_a_flow_with_the_documented_parameters() -> None:
    from prefect.flows import load_flow_from_entrypoint

    expected = {
        "ingest-validate": ("ingest_flow", {"config_path", "through"}),
        "drift-watch": ("monitoring_flow", {"config_path", "batch"}),
        "retrain": ("ctcd_pipeline", {"config_path", "reason", "window_start", "trigger", "monitor"}),
        "deliver": ("delivery_flow", {"config_path", "version"}),
    }
    for name, deployment in _by_name(_prefect_yaml()).items():
        path, function = deployment["entrypoint"].split(":")
        assert function == expected[name][0]
        if not (REPO / path).is_file():
            pytest.skip(f"{path} does not exist yet (written by another part of ctcd)")
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        parameters = set(inspect.signature(flow.fn).parameters)
        assert expected[name][1] <= parameters, (
            f"{name}: {flow.fn.__name__} lacks {expected[name][1] - parameters}"
        )
        assert set(deployment["parameters"]) <= parameters


def test_schedules_pools_and_event_match_the_default_config(default_config: CtcdConfig) -> None:
    o = default_config.orchestration
    d = _by_name(_prefect_yaml())
    assert d["ingest-validate"]["schedules"][0]["cron"] == o.schedules["ingest"].cron
    assert d["drift-watch"]["schedules"][0]["interval"] == o.schedules["monitor"].interval_seconds
    assert d["retrain"]["schedules"][0]["cron"] == o.schedules["training"].cron
    assert d["retrain"]["schedules"][0]["parameters"] == {"reason": "scheduled"}
    assert "schedules" not in d["deliver"]
    assert {n: x["work_pool"]["name"] for n, x in d.items()} == {
        "ingest-validate": o.cpu_pool,
        "drift-watch": o.cpu_pool,
        "retrain": o.gpu_pool,
        "deliver": o.cpu_pool,
    }
    assert d["retrain"]["work_pool"]["job_variables"]["env"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert d["drift-watch"]["work_pool"]["job_variables"]["env"]["CUDA_VISIBLE_DEVICES"] == ""


def test_drift_trigger_agrees_with_the_events_seam(default_config: CtcdConfig) -> None:
    from ctcd.events import drift_trigger_spec, model_resource_id

    (trigger,) = _by_name(_prefect_yaml())["retrain"]["triggers"]
    spec = drift_trigger_spec(default_config)
    assert trigger["expect"] == spec["expect"] == [default_config.orchestration.drift_event]
    assert trigger["parameters"] == spec["parameters"]
    assert fnmatch.fnmatchcase(model_resource_id(default_config), trigger["match"]["prefect.resource.id"])
    for key in ("type", "posture", "threshold", "within", "enabled"):
        assert trigger[key] == spec[key], key


def test_drift_trigger_builds_prefects_deployment_trigger() -> None:
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    (trigger,) = _by_name(_prefect_yaml())["retrain"]["triggers"]
    (built,) = _initialize_deployment_triggers("retrain", [trigger])
    assert built.expect == {"ctcd.drift.detected"}
    assert built.parameters["window_start"] == "{{ event.payload.window_start }}"


def test_schedules_build_prefects_schedule_objects() -> None:
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule

    d = _by_name(_prefect_yaml())
    weekly = _schedule_config_to_deployment_schedule(d["retrain"]["schedules"][0])
    assert weekly["schedule"].cron == "0 3 * * 1"
    assert weekly["parameters"] == {"reason": "scheduled"}
    hourly = _schedule_config_to_deployment_schedule(d["drift-watch"]["schedules"][0])
    assert hourly["schedule"].interval.total_seconds() == 3600


# --- rendering for a config ------------------------------------------------------------------------------


def _config_with(
    tmp_path: Path, orchestration: dict[str, Any], model_name: str = "other-model"
) -> CtcdConfig:
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    raw["gates"]["data"]["suite"] = str(REPO / raw["gates"]["data"]["suite"])
    raw["orchestration"].update(orchestration)
    raw["model"]["registered_name"] = model_name
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(path)


def test_render_applies_the_configs_pools_schedules_trigger_and_environment(
    tmp_path: Path, workspace: Workspace
) -> None:
    cfg = _config_with(
        tmp_path,
        {
            "cpu_pool": "light",
            "gpu_pool": "heavy",
            "drift_event": "acme.drift",
            "schedules": {"monitor": {"interval_seconds": 30}, "training": {"cron": "0 4 * * 0"}},
        },
    )
    rendered = deployments.render_prefect_file(cfg, workspace, _prefect_yaml())
    d = _by_name(rendered)
    assert d["drift-watch"]["schedules"] == [{"interval": 30, "timezone": "UTC", "slug": "interval"}]
    assert d["retrain"]["schedules"][0]["cron"] == "0 4 * * 0"
    assert d["retrain"]["schedules"][0]["parameters"] == {"reason": "scheduled"}
    # ingest has no schedule in this config: the file's stays.
    assert d["ingest-validate"]["schedules"][0]["cron"] == "0 1 * * *"
    assert d["retrain"]["work_pool"]["name"] == "heavy"
    assert d["drift-watch"]["work_pool"]["name"] == "light"
    (trigger,) = d["retrain"]["triggers"]
    assert trigger["expect"] == ["acme.drift"]
    assert trigger["match"] == {"prefect.resource.id": "ctcd.model.other-model"}
    env = d["retrain"]["work_pool"]["job_variables"]["env"]
    assert env["CTCD_HOME"] == str(workspace.root)
    assert env["CTCD_CONFIG"] == str(cfg.source)
    assert env["MLFLOW_TRACKING_URI"] == workspace.mlflow_tracking_uri
    assert env["CUDA_VISIBLE_DEVICES"] == "0"
    assert d["deliver"]["work_pool"]["job_variables"]["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert "definitions" not in rendered
    # The source mapping is left untouched (anchors share mappings between deployments).
    assert _by_name(_prefect_yaml())["retrain"]["work_pool"]["name"] == "gpu-pool"


def test_written_file_is_accepted_by_prefects_model(tmp_path: Path, workspace: Workspace) -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    cfg = _config_with(tmp_path, {})
    path = deployments.write_rendered_file(cfg, workspace)
    assert path.parent == workspace.run
    model = PrefectYamlModel.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert len(model.deployments) == 4


def test_project_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    cfg = _config_with(tmp_path, {"project_dir": "my-project"})
    assert deployments.project_dir(cfg) == tmp_path / "my-project"
    assert deployments.prefect_file(cfg) == tmp_path / "my-project" / "deployments" / "prefect.yaml"
    assert deployments.project_dir(_config_with(tmp_path, {})) == REPO


def test_a_missing_prefect_file_is_a_config_error(tmp_path: Path) -> None:
    from ctcd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"prefect\.yaml not found"):
        deployments.load_prefect_file(tmp_path / "prefect.yaml")


# --- production work-pool templates ----------------------------------------------------------------------


def _template(name: str) -> dict[str, Any]:
    return json.loads((WORK_POOLS / name).read_text(encoding="utf-8"))


def _render(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    """Render a base job template for one flow run the way a worker does, with Prefect's own code."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.workers.base import BaseJobConfiguration
    from pydantic import ConfigDict

    class JobConfiguration(BaseJobConfiguration):
        # The docker / kubernetes workers' own subclasses declare these fields; keep them all.
        model_config = ConfigDict(extra="allow")

    config = asyncio.run(JobConfiguration.from_template_and_values(template, job_variables, client=object()))
    flow_run = FlowRun(id=uuid.uuid4(), name="brave-otter", flow_id=uuid.uuid4())
    config.prepare_for_flow_run(flow_run)
    return config.model_dump()


@pytest.mark.parametrize("name", ["docker-gpu.json", "kubernetes-gpu.json"])
def test_work_pool_templates_pass_prefects_validation(name: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.server.schemas.actions import DeploymentCreate

    template = _template(name)
    WorkPoolCreate(name="gpu-pool", type=name.split("-")[0], base_job_template=template)
    # The retrain deployment's job variables must fit the template's variables schema.
    job_variables = _by_name(_prefect_yaml())["retrain"]["work_pool"]["job_variables"]
    DeploymentCreate(
        name="retrain", flow_id=uuid.uuid4(), job_variables=job_variables
    ).check_valid_configuration(template)


def test_docker_template_requests_nvidia_gpus() -> None:
    import docker.types

    rendered = _render(_template("docker-gpu.json"), {"env": {"CTCD_HOME": "/data/ctcd"}})
    (request,) = rendered["container_create_kwargs"]["device_requests"]
    assert request == {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}
    assert rendered["env"]["CTCD_HOME"] == "/data/ctcd"
    assert rendered["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert rendered["image"].startswith("ctcd-worker-gpu")
    assert "prefect.io/flow-run-name" in rendered["labels"]
    # docker-py (what the Docker worker calls) turns the request into the Engine API's DeviceRequests.
    host = docker.types.HostConfig(version="1.44", device_requests=[request])
    assert host["DeviceRequests"] == [
        {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    two = _render(_template("docker-gpu.json"), {"gpu_count": 2})
    assert two["container_create_kwargs"]["device_requests"][0]["count"] == 2


def test_kubernetes_template_limits_gpus_and_selects_gpu_nodes() -> None:
    rendered = _render(
        _template("kubernetes-gpu.json"),
        {"gpu_count": 2, "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}},
    )
    pod = rendered["job_manifest"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["cpu"] == "2"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["restartPolicy"] == "Never"
    assert rendered["job_manifest"]["metadata"]["namespace"] == "ctcd"
    defaults = _render(_template("kubernetes-gpu.json"), {})
    limits = defaults["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert "PREFECT__FLOW_RUN_ID" in defaults["env"]


# --- docker/ -----------------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        parts = shlex.split(line.strip()) if line.strip().upper().startswith(("COPY ", "ADD ")) else []
        args = [p for p in parts[1:] if not p.startswith("--")]
        if parts and not any(p.startswith("--from") for p in parts):
            sources += args[:-1]
    return sources


def test_compose_builds_reference_existing_dockerfiles_and_copied_paths() -> None:
    compose = _compose()
    built = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert {"prefect-worker-cpu", "prefect-worker-gpu", "mlflow"} <= set(built)
    for name, build in built.items():
        context = (DOCKER / build["context"]).resolve()
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for source in _copy_sources(dockerfile):
            assert list(context.glob(source)), f"{name}: COPY {source} matches nothing in {context}"


def test_compose_services_reference_each_other_consistently() -> None:
    compose = _compose()
    services = compose["services"]
    assert {
        "postgres",
        "minio",
        "prefect-server",
        "mlflow",
        "prefect-worker-cpu",
        "prefect-worker-gpu",
        "bento",
    } <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} missing"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} not declared"
    gpu = services["prefect-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]


def test_compose_mlflow_allows_its_host_names_and_proxies_artifacts() -> None:
    command = _compose()["services"]["mlflow"]["command"]
    text = " ".join(command) if isinstance(command, list) else command
    allowed = re.search(r"--allowed-hosts[= ]([^ ]+)", text)
    assert allowed, "mlflow in compose must set --allowed-hosts"
    assert {"mlflow", "mlflow:5000", "localhost:5000"} <= set(allowed.group(1).split(","))
    assert "--artifacts-destination s3://" in text
    assert "postgresql" in text


def test_compose_config_loads_and_tracks_to_the_compose_mlflow() -> None:
    cfg = load_config(DOCKER / "ctcd.yaml")
    assert cfg.tracking.tracking_uri == "http://mlflow:5000"
    assert cfg.gates.data.suite.is_file()


def test_compose_deploy_job_creates_the_alert_automations() -> None:
    from typer.testing import CliRunner

    from ctcd.app.cli import app

    deploy = _compose()["services"]["deploy"]
    command = " ".join(deploy["command"])
    assert command.endswith("&& ctcd alerts sync"), command
    assert {"CTCD_CONFIG", "PREFECT_API_URL"} <= set(deploy["environment"])
    assert CliRunner().invoke(app, ["alerts", "sync", "--help"]).exit_code == 0
    assert load_config(DOCKER / "ctcd.yaml").alerts.block == "ctcd-alerts"


def test_compose_images_install_from_the_lock() -> None:
    for name in ("worker.Dockerfile", "worker-gpu.Dockerfile"):
        text = (DOCKER / name).read_text(encoding="utf-8")
        assert "requirements.lock" in text
    assert re.search(r"^FROM nvidia/cuda:\S+", (DOCKER / "worker-gpu.Dockerfile").read_text(), re.MULTILINE)
    mlflow_pin = re.search(r"^mlflow==(\S+)", (REPO / "requirements.lock").read_text(), re.MULTILINE)
    assert mlflow_pin and f"mlflow=={mlflow_pin.group(1)}" in (DOCKER / "mlflow.Dockerfile").read_text()
