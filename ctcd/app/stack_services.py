"""The services of the local stack, one by one: how `ctcd up` starts (or reuses) the Prefect server, the
MLflow server, a process worker per work pool and the BentoML server of the champion, and waits until each
is healthy. `ctcd.app.stack` runs them together (`up`, `down`, `status`).

Each service runs in its own session, writes its output to `$CTCD_HOME/logs/<name>.log`, and is recorded
in a PID file (`ctcd.processes`), so `ctcd down` stops exactly what `ctcd up` started.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ctcd import processes, settings
from ctcd.app import deployments
from ctcd.errors import DependencyUnavailable, UsageError
from ctcd.net import client_host, http_ok, port_in_use
from ctcd.processes import ProcessRecord, is_alive, read_record, start_process
from ctcd.workspace import log_tail

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

PREFECT_SERVER = "prefect-server"
MLFLOW = "mlflow"
BENTO = "bento"
# Start order; `down` stops in the reverse order.
ORDER = {PREFECT_SERVER: 10, MLFLOW: 20, "worker": 30, BENTO: 40}

State = Literal["running", "starting", "unhealthy", "stale", "stopped", "external", "skipped"]


@dataclass(frozen=True)
class ServiceStatus:
    """How one service of the stack stands."""

    name: str
    state: State
    url: str | None = None
    pid: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class Launch:
    """A service `up` asked for: how it stands and, when ctcd runs it, its PID file."""

    status: ServiceStatus
    record: ProcessRecord | None


def worker_service(pool: str) -> str:
    """The service name of the process worker of `pool`."""
    return f"worker-{pool}"


def wait_until(check: Callable[[], bool], record: ProcessRecord | None, what: str, deadline: float) -> None:
    """Poll `check` until it holds; raise DependencyUnavailable when the process dies or time runs out."""
    while True:
        if check():
            return
        if record is not None and not is_alive(record):
            raise DependencyUnavailable(
                f"{what} exited during startup; see {record.log}: {log_tail(Path(record.log))}"
            )
        if time.monotonic() > deadline:
            log = f"; see {record.log}" if record else ""
            raise DependencyUnavailable(
                f"{what} was not healthy in time (orchestration.startup_timeout_seconds){log}"
            )
        time.sleep(0.5)


def _python_command(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


def prefect_env(cfg: CtcdConfig, ws: Workspace) -> dict[str, str]:
    """Environment of every Prefect process of the stack: its API, its home, short polls, no telemetry."""
    extra = {
        "PREFECT_API_URL": deployments.prefect_api_url(cfg),
        "PREFECT_UI_API_URL": deployments.prefect_api_url(cfg),
        "PREFECT_HOME": str(ws.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": str(cfg.orchestration.worker_poll_seconds),
        "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, round(cfg.orchestration.worker_poll_seconds))),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    if cfg.orchestration.prefect_database_url:
        extra["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = cfg.orchestration.prefect_database_url
    return settings.server_environment(
        cfg.source, ws.root, extra, mlflow_retry_seconds=cfg.tracking.retry_seconds
    )


@dataclass(frozen=True)
class _HttpService:
    name: str
    port: int
    port_key: str
    url: str
    health_url: str
    health_text: str


def _prefect_service(cfg: CtcdConfig) -> _HttpService:
    api = deployments.prefect_api_url(cfg)
    return _HttpService(
        PREFECT_SERVER,
        cfg.orchestration.prefect_port,
        "prefect_port",
        deployments.prefect_url(cfg),
        f"{api}/health",
        "true",
    )


def _mlflow_service(cfg: CtcdConfig) -> _HttpService:
    url = deployments.mlflow_url(cfg)
    return _HttpService(MLFLOW, cfg.orchestration.mlflow_port, "mlflow_port", url, f"{url}/health", "OK")


def _existing(cfg: CtcdConfig, ws: Workspace, service: _HttpService) -> Launch | None:
    """The running service to reuse (ours, or a healthy one ctcd did not start), or None to start one.

    Removes a stale PID file; raises UsageError when another program holds the port.
    """
    record = read_record(ws, service.name)
    if record is not None and is_alive(record):
        return Launch(
            ServiceStatus(service.name, "running", service.url, record.pid, "already running"), record
        )
    if record is not None:
        processes.pid_file(ws, service.name).unlink(missing_ok=True)
    if not port_in_use(cfg.orchestration.host, service.port):
        return None
    if http_ok(service.health_url, service.health_text):
        detail = "already running, not started by ctcd (left alone by `ctcd down`)"
        return Launch(ServiceStatus(service.name, "external", service.url, None, detail), None)
    raise UsageError(
        f"port {service.port} is taken by a program that is not {service.name}: "
        f"stop it or set orchestration.{service.port_key}"
    )


def _launch(ws: Workspace, service: _HttpService, command: list[str], env: dict[str, str]) -> Launch:
    record = start_process(
        ws,
        service.name,
        command,
        env,
        order=ORDER[service.name],
        cwd=ws.root,
        url=service.url,
        health_url=service.health_url,
    )
    return Launch(ServiceStatus(service.name, "starting", service.url, record.pid, "started"), record)


def start_prefect_server(cfg: CtcdConfig, ws: Workspace) -> Launch:
    """Start `prefect server start` (or reuse the running one); does not wait for it."""
    service = _prefect_service(cfg)
    o = cfg.orchestration
    command = _python_command("prefect", "server", "start", "--host", o.host, "--port", str(o.prefect_port))
    return _existing(cfg, ws, service) or _launch(ws, service, command, prefect_env(cfg, ws))


def start_mlflow(cfg: CtcdConfig, ws: Workspace) -> Launch:
    """Start `mlflow server` on the workspace's store (or reuse the running one); does not wait for it."""
    from ctcd.stores import ensure_mlflow_store

    service = _mlflow_service(cfg)
    o = cfg.orchestration
    # The server would otherwise create the store in place, which a crash can leave half-made.
    ensure_mlflow_store(ws)
    # The same SQLite store and artifact folder the flows write to. Host-header protection stays on: its
    # default allows localhost and private addresses (compose sets --allowed-hosts for its host names).
    command = _python_command(
        "mlflow",
        "server",
        "--backend-store-uri",
        ws.mlflow_tracking_uri,
        "--default-artifact-root",
        ws.mlflow_artifacts.as_uri(),
        "--artifacts-destination",
        ws.mlflow_artifacts.as_uri(),
        "--host",
        o.host,
        "--port",
        str(o.mlflow_port),
        "--workers",
        "1",
    )
    env = settings.server_environment(
        cfg.source, ws.root, {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    )
    return _existing(cfg, ws, service) or _launch(ws, service, command, env)


def start_worker(cfg: CtcdConfig, ws: Workspace, pool: str) -> Launch:
    """Start a process worker for `pool` (or reuse the running one); does not wait for it."""
    name = worker_service(pool)
    pools = [cfg.orchestration.cpu_pool, cfg.orchestration.gpu_pool]
    order = ORDER["worker"] + (pools.index(pool) if pool in pools else len(pools))
    record = read_record(ws, name)
    if record is not None and is_alive(record):
        return Launch(
            ServiceStatus(name, "running", None, record.pid, f"pool {pool}; already running"), record
        )
    processes.pid_file(ws, name).unlink(missing_ok=True)
    command = _python_command(
        "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", f"ctcd-{pool}"
    )
    record = start_process(
        ws, name, command, prefect_env(cfg, ws), order=order, cwd=deployments.project_dir(cfg)
    )
    return Launch(ServiceStatus(name, "starting", None, record.pid, f"pool {pool}"), record)


def wait_healthy(launch: Launch, check: Callable[[], bool], what: str, deadline: float) -> ServiceStatus:
    """Wait until `check` holds for a launched service; return its status as running."""
    wait_until(check, launch.record, what, deadline)
    status = launch.status
    if status.state != "starting":
        return status
    return ServiceStatus(status.name, "running", status.url, status.pid, status.detail)


def wait_prefect(cfg: CtcdConfig, launch: Launch, deadline: float) -> ServiceStatus:
    """Wait until the Prefect server answers its health check."""
    service = _prefect_service(cfg)
    return wait_healthy(launch, lambda: http_ok(service.health_url, "true"), "the Prefect server", deadline)


def wait_mlflow(cfg: CtcdConfig, launch: Launch, deadline: float) -> ServiceStatus:
    """Wait until the MLflow server answers its health check."""
    service = _mlflow_service(cfg)
    return wait_healthy(launch, lambda: http_ok(service.health_url, "OK"), "the MLflow server", deadline)


def wait_worker(cfg: CtcdConfig, launch: Launch, pool: str, deadline: float) -> ServiceStatus:
    """Wait until the worker of `pool` is ONLINE on the Prefect server (a heartbeat since it started)."""
    api = deployments.prefect_api_url(cfg)
    since = datetime.fromtimestamp(launch.record.create_time, UTC) if launch.record else None
    return wait_healthy(
        launch, lambda: bool(deployments.online_workers(api, pool, since)), f"the worker of {pool}", deadline
    )


def start_bento(cfg: CtcdConfig, ws: Workspace, deadline: float) -> ServiceStatus:
    """Serve the champion with `ctcd.serving.server.start_server` when there is one, and wait for it."""
    from ctcd import registry

    url = f"http://{client_host(cfg.serving.host)}:{cfg.serving.port}"
    record = read_record(ws, BENTO)
    if record is not None and is_alive(record):
        return ServiceStatus(BENTO, "running", url, record.pid, "already running")
    processes.pid_file(ws, BENTO).unlink(missing_ok=True)
    try:
        from ctcd.serving import server
    except ImportError:
        return ServiceStatus(BENTO, "skipped", None, None, "ctcd.serving is not available")
    if registry.Registry(cfg, ws).champion() is None:
        return ServiceStatus(BENTO, "skipped", None, None, "no champion yet: train one, then `ctcd up` again")
    if port_in_use(cfg.serving.host, cfg.serving.port):
        if server.is_serving(url):
            return ServiceStatus(BENTO, "external", url, None, "already running, not started by ctcd")
        raise UsageError(f"port {cfg.serving.port} is taken by another program: stop it or set serving.port")
    handle = server.start_server(cfg, ws, cfg.serving.port, wait=False)
    processes.write_record(ws, replace(handle.record, name=BENTO, order=ORDER[BENTO]))
    handle.wait_ready(max(5.0, deadline - time.monotonic()))
    return ServiceStatus(BENTO, "running", handle.url, handle.pid, "serving the champion")


def check_ports(cfg: CtcdConfig, ws: Workspace) -> None:
    """Fail before starting anything when another program holds the Prefect or MLflow port."""
    for service in (_prefect_service(cfg), _mlflow_service(cfg)):
        _existing(cfg, ws, service)
