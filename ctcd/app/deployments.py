"""Prefect deployments seam: work pools and `deployments/prefect.yaml`, through Prefect's own API and CLI.

The repository's `prefect.yaml` holds the defaults of `configs/default.yaml`. Deploying renders a copy
with the running config's schedules, pool names, drift trigger and environment into
`$CTCD_HOME/run/prefect.yaml`, then runs `prefect --no-prompt deploy --all` on it from the project root, so
the deployments are exactly what `prefect deploy` makes of a prefect.yaml.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ctcd import settings
from ctcd.errors import ConfigError, DependencyUnavailable, WorkFailed
from ctcd.net import client_host

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

PREFECT_FILE = Path("deployments") / "prefect.yaml"
# The pool names prefect.yaml uses; they stand for the config's `orchestration.cpu_pool` / `gpu_pool`.
FILE_CPU_POOL = "cpu-pool"
FILE_GPU_POOL = "gpu-pool"
# The event name prefect.yaml's drift trigger expects; replaced by the config's drift trigger.
FILE_DRIFT_EVENT = "ctcd.drift.detected"
# Which deployment each schedule of `orchestration.schedules` belongs to.
SCHEDULED_DEPLOYMENTS = {"ingest": "ingest-validate", "monitor": "drift-watch", "training": "retrain"}
DEPLOY_TIMEOUT = 180.0


@dataclass(frozen=True)
class DeployResult:
    """What a deploy created or updated, as `flow/deployment` names, and where its output went."""

    names: list[str]
    log: Path


def project_dir(cfg: CtcdConfig) -> Path:
    """The directory holding `flows/` and `deployments/prefect.yaml` (entrypoints are relative to it)."""
    configured = cfg.orchestration.project_dir
    if configured is None:
        return settings.project_root()
    if configured.is_absolute() or cfg.source is None:
        return configured.resolve()
    return (cfg.source.parent / configured).resolve()


def prefect_file(cfg: CtcdConfig) -> Path:
    """The project's prefect.yaml."""
    return project_dir(cfg) / PREFECT_FILE


def prefect_url(cfg: CtcdConfig) -> str:
    """The Prefect server (and UI) of the local stack."""
    return f"http://{client_host(cfg.orchestration.host)}:{cfg.orchestration.prefect_port}"


def prefect_api_url(cfg: CtcdConfig) -> str:
    """The Prefect API of the local stack (what PREFECT_API_URL is set to)."""
    return f"{prefect_url(cfg)}/api"


def mlflow_url(cfg: CtcdConfig) -> str:
    """The MLflow tracking server (and UI) of the local stack."""
    return f"http://{client_host(cfg.orchestration.host)}:{cfg.orchestration.mlflow_port}"


def load_prefect_file(path: Path) -> dict[str, Any]:
    """Read a prefect.yaml into a mapping; raise ConfigError naming the file when it cannot be used."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: prefect.yaml not found (set orchestration.project_dir)") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("deployments"), list):
        raise ConfigError(f"{path}: expected a prefect.yaml with a `deployments:` list")
    return raw


def deployment_env(cfg: CtcdConfig, ws: Workspace) -> dict[str, str]:
    """The environment every deployment's runs get on top of the worker's: config, workspace, MLflow."""
    from ctcd.mlflow_connection import tracking_uri

    env = {"CTCD_HOME": str(ws.root), "MLFLOW_TRACKING_URI": tracking_uri(cfg, ws)}
    if cfg.source is not None:
        env["CTCD_CONFIG"] = str(cfg.source)
    return env


def render_prefect_file(cfg: CtcdConfig, ws: Workspace, source: dict[str, Any]) -> dict[str, Any]:
    """The prefect.yaml `source` with this config's pools, schedules, drift trigger and environment."""
    from ctcd.events import drift_trigger_spec

    rendered = copy.deepcopy(source)
    pools = {FILE_CPU_POOL: cfg.orchestration.cpu_pool, FILE_GPU_POOL: cfg.orchestration.gpu_pool}
    schedules_by_deployment = {
        SCHEDULED_DEPLOYMENTS[key]: schedule for key, schedule in cfg.orchestration.schedules.items()
    }
    env = deployment_env(cfg, ws)
    for deployment in rendered["deployments"]:
        # YAML anchors share one mapping between deployments: give each its own before editing.
        pool = dict(deployment.get("work_pool") or {})
        pool["name"] = pools.get(pool.get("name"), pool.get("name"))
        job_variables = dict(pool.get("job_variables") or {})
        job_variables["env"] = {**(job_variables.get("env") or {}), **env}
        pool["job_variables"] = job_variables
        deployment["work_pool"] = pool

        schedule = schedules_by_deployment.get(deployment.get("name"))
        if schedule is not None:
            deployment["schedules"] = [_with_schedule(deployment.get("schedules") or [], schedule)]

        triggers = deployment.get("triggers") or []
        deployment["triggers"] = [
            drift_trigger_spec(cfg) if FILE_DRIFT_EVENT in (t.get("expect") or []) else t for t in triggers
        ]
        if not deployment["triggers"]:
            del deployment["triggers"]
    rendered.pop("definitions", None)
    return rendered


def _with_schedule(existing: list[dict[str, Any]], schedule: Any) -> dict[str, Any]:
    """The file's first schedule (timezone, slug, parameters kept) with the config's cron or interval."""
    base = {
        k: v for k, v in (existing[0] if existing else {}).items() if k not in ("cron", "interval", "rrule")
    }
    base.setdefault("timezone", "UTC")
    if schedule.cron is not None:
        return {"cron": schedule.cron, **base}
    return {"interval": schedule.interval_seconds, **base}


def write_rendered_file(cfg: CtcdConfig, ws: Workspace) -> Path:
    """Render the project's prefect.yaml for this config into `$CTCD_HOME/run/prefect.yaml`."""
    rendered = render_prefect_file(cfg, ws, load_prefect_file(prefect_file(cfg)))
    target = ws.run / "prefect.yaml"
    target.write_text(
        "# Rendered by ctcd from "
        + str(prefect_file(cfg))
        + " for "
        + str(cfg.source)
        + "\n"
        + yaml.safe_dump(rendered, sort_keys=False),
        encoding="utf-8",
    )
    return target


def connect(api_url: str) -> SyncPrefectClient:
    """A Prefect client for the server at `api_url` (use as a context manager)."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api_url)


def ensure_work_pools(api_url: str, pools: list[str]) -> list[str]:
    """Create the process work pools that do not exist yet; return the names created."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    created = []
    with connect(api_url) as client:
        for name in pools:
            try:
                client.read_work_pool(name)
                continue
            except ObjectNotFound:
                pass
            try:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type=ProcessWorker.type,
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
                created.append(name)
            except ObjectAlreadyExists:  # a worker starting at the same moment created it
                pass
    return created


def online_workers(api_url: str, pool: str, since: datetime | None = None) -> list[str]:
    """Names of the workers of `pool` that are ONLINE (with a heartbeat after `since`, when given)."""
    from prefect.exceptions import ObjectNotFound

    with connect(api_url) as client:
        try:
            workers = client.read_workers_for_work_pool(pool)
        except ObjectNotFound:
            return []
    return [
        w.name
        for w in workers
        if str(w.status).upper().endswith("ONLINE")
        and (since is None or (w.last_heartbeat_time is not None and w.last_heartbeat_time >= since))
    ]


def deployment_names(api_url: str) -> list[str]:
    """Every deployment on the server, as sorted `flow/deployment` names."""
    with connect(api_url) as client:
        flows = {f.id: f.name for f in client.read_flows(limit=200)}
        return sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in client.read_deployments(limit=200))


def deploy(cfg: CtcdConfig, ws: Workspace, api_url: str, timeout: float = DEPLOY_TIMEOUT) -> DeployResult:
    """Deploy the project's prefect.yaml (rendered for `cfg`) with `prefect deploy --all` to `api_url`."""
    rendered = write_rendered_file(cfg, ws)
    log = ws.logs / "deploy.log"
    command = [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(rendered),
    ]
    env = settings.server_environment(
        cfg.source,
        ws.root,
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(ws.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        },
    )
    with log.open("ab") as out:
        out.write(f"\n=== {datetime.now(UTC).isoformat()} {' '.join(command)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                command,
                cwd=project_dir(cfg),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DependencyUnavailable(
                f"`prefect deploy` did not finish in {timeout:.0f}s; see {log}"
            ) from exc
    expected = _expected_names(rendered)
    present = set(deployment_names(api_url))
    missing = [name for name in expected if not any(p.endswith("/" + name) for p in present)]
    if done.returncode != 0 or missing:
        raise WorkFailed(
            f"deploying {prefect_file(cfg)} failed (exit {done.returncode}, missing {missing}): "
            f"{_tail(log)} (full output in {log})"
        )
    return DeployResult(sorted(p for p in present if p.split("/", 1)[1] in expected), log)


def _expected_names(rendered: Path) -> list[str]:
    raw = yaml.safe_load(rendered.read_text(encoding="utf-8"))
    return [d["name"] for d in raw["deployments"]]


def _tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    # prefect's error panels are drawn with box characters; keep the words.
    words = [line.strip(" │╭╮╰╯─") for line in text if line.strip(" │╭╮╰╯─")]
    return " | ".join(words[-lines:])[-600:]
