"""The local stack behind `ctcd up` / `ctcd down` / `ctcd stack status`: Prefect server, one process worker
per work pool, MLflow server, the deployments of prefect.yaml, the alert automations (`ctcd.alerts`), and
the BentoML server of the champion.

How each service starts and is waited for is in `ctcd.app.stack_services`. Every process of the stack (and
every prediction server a delivery started) has a PID file in `$CTCD_HOME/run/` (`ctcd.processes`), which
holds the process's start time: that tells a live service from a stale file whose pid the system has
since given to another process, so `ctcd down` stops exactly what ctcd started.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctcd import alerts, events
from ctcd.app import deployments
from ctcd.app.stack_services import (
    BENTO,
    MLFLOW,
    PREFECT_SERVER,
    ServiceStatus,
    check_ports,
    start_bento,
    start_mlflow,
    start_prefect_server,
    start_worker,
    wait_mlflow,
    wait_prefect,
    wait_worker,
    worker_service,
)
from ctcd.errors import CtcdError, DependencyUnavailable
from ctcd.net import http_ok
from ctcd.processes import STOP_GRACE_SECONDS, is_alive, read_records, stop_record

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace


@dataclass(frozen=True)
class StackReport:
    """What `up` left running, the deployments and the alert automations on the Prefect server."""

    services: list[ServiceStatus]
    deployments: list[str]
    alerts: list[alerts.AlertAutomation] = field(default_factory=list)


def up(
    cfg: CtcdConfig, ws: Workspace, echo: Callable[[str], None] = lambda _: None, with_mlflow: bool = True
) -> StackReport:
    """Start (or reuse) every service of the local stack, wait until each is healthy, deploy prefect.yaml.

    `with_mlflow=False` leaves out the MLflow server (the flows write to the SQLite store directly; the
    server is only there for its UI and for remote clients).
    """
    try:
        return _up(cfg, ws, echo, with_mlflow)
    except CtcdError as exc:
        if not read_records(ws):
            raise
        raise type(exc)(
            f"{exc} (what started keeps running: `ctcd stack status` shows it, `ctcd down` stops it)"
        ) from exc


def _up(cfg: CtcdConfig, ws: Workspace, echo: Callable[[str], None], with_mlflow: bool) -> StackReport:
    deadline = time.monotonic() + cfg.orchestration.startup_timeout_seconds
    pools = [cfg.orchestration.cpu_pool, cfg.orchestration.gpu_pool]
    check_ports(cfg, ws)
    # The two servers start side by side: each takes 15-30 s on a small machine.
    prefect = start_prefect_server(cfg, ws)
    mlflow = start_mlflow(cfg, ws) if with_mlflow else None
    mlflow_detail = mlflow.status.detail if mlflow else "not asked for"
    echo(f"{PREFECT_SERVER}: {prefect.status.detail}; {MLFLOW}: {mlflow_detail}")
    prefect_status = wait_prefect(cfg, prefect, deadline)
    echo(f"Prefect server healthy at {prefect_status.url}")

    deployments.ensure_work_pools(deployments.prefect_api_url(cfg), pools)
    workers = [start_worker(cfg, ws, pool) for pool in pools]
    echo(f"deploying {deployments.prefect_file(cfg)}")
    deployed = deployments.deploy(cfg, ws, deployments.prefect_api_url(cfg))
    automations = sync_alerts(cfg, deployments.prefect_api_url(cfg))
    echo(
        f"alert automations: {len(automations)} (to block {cfg.alerts.block})"
        if automations
        else "alerts: off"
    )
    worker_statuses = [
        wait_worker(cfg, launch, pool, deadline) for launch, pool in zip(workers, pools, strict=True)
    ]
    statuses = [prefect_status]
    if mlflow is not None:
        statuses.append(wait_mlflow(cfg, mlflow, deadline))
        echo(f"MLflow server healthy at {statuses[-1].url}")
    bento = start_bento(cfg, ws, deadline)
    return StackReport([*statuses, *worker_statuses, bento], deployed.names, automations)


def down(ws: Workspace, grace: float = STOP_GRACE_SECONDS) -> list[ServiceStatus]:
    """Stop every process with a PID file in the workspace, in the reverse order of starting, and remove
    the PID files: the stack's services and the prediction servers that deliveries started (the live one
    and the standby smoke-test server, stopped first)."""
    stopped = []
    for record in reversed(read_records(ws)):
        was_alive = stop_record(ws, record, grace)
        detail = "stopped" if was_alive else "was not running (stale PID file removed)"
        stopped.append(ServiceStatus(record.name, "stopped", record.url, record.pid, detail))
    return stopped


def status(cfg: CtcdConfig, ws: Workspace) -> StackReport:
    """How each service of the stack stands now, and the deployments the Prefect server holds."""
    records = {r.name: r for r in read_records(ws)}
    expected = [
        PREFECT_SERVER,
        MLFLOW,
        worker_service(cfg.orchestration.cpu_pool),
        worker_service(cfg.orchestration.gpu_pool),
        BENTO,
    ]
    services = []
    for name in [*expected, *(n for n in records if n not in expected)]:
        record = records.get(name)
        if record is None:
            services.append(ServiceStatus(name, "stopped"))
        elif not is_alive(record):
            detail = f"stale PID file (process gone); see {record.log}"
            services.append(ServiceStatus(name, "stale", record.url, record.pid, detail))
        elif record.health_url and not http_ok(record.health_url):
            services.append(ServiceStatus(name, "unhealthy", record.url, record.pid, f"see {record.log}"))
        else:
            services.append(
                ServiceStatus(name, "running", record.url, record.pid, f"since {record.started_at}")
            )
    names: list[str] = []
    automations: list[alerts.AlertAutomation] = []
    api = deployments.prefect_api_url(cfg)
    if http_ok(f"{api}/health", "true"):
        with contextlib.suppress(Exception):  # the processes' state matters more than the listing
            names = deployments.deployment_names(api)
            automations = alerts.list_alerts(cfg, api)
    return StackReport(services, names, automations)


def prefect_api(cfg: CtcdConfig) -> str:
    """The Prefect API a command talks to: PREFECT_API_URL when set (the compose stack, a remote server),
    else the local stack's; a DependencyUnavailable error when no server answers there."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value() or deployments.prefect_api_url(cfg)
    if not http_ok(f"{api}/health", "true"):
        raise DependencyUnavailable(
            f"no Prefect server answers at {api}: start the stack (`ctcd up`) or set PREFECT_API_URL"
        )
    return api


def sync_alerts(cfg: CtcdConfig, api: str) -> list[alerts.AlertAutomation]:
    """Create or update the alert automations on the Prefect server at `api` (`ctcd up`, `ctcd alerts
    sync`); empty when alerts are off."""
    try:
        return alerts.ensure_alerts(cfg, api)
    except Exception as exc:  # Prefect's HTTP and validation errors: say which setting to look at
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        message = f"could not create the alert automations (see `alerts:` in the config): {detail}"
        raise DependencyUnavailable(message) from exc


def alert_from_cli(
    cfg: CtcdConfig, ws: Workspace, kind: str, summary: str, payload: dict[str, Any], episode: str
) -> None:
    """Send an alert from a CLI command: to PREFECT_API_URL when set, else to the local stack's Prefect
    server when it runs (else nothing: no automations could see it)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        events.emit_alert(cfg, kind, summary, payload, episode, ws=ws)
        return
    api = deployments.prefect_api_url(cfg)
    if not http_ok(f"{api}/health", "true"):
        return

    with temporary_settings({PREFECT_API_URL: api}):
        events.emit_alert(cfg, kind, summary, payload, episode, ws=ws)
