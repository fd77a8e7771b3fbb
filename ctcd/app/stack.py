"""The local stack behind `ctcd up` / `ctcd down`: Prefect server, one process worker per work pool, MLflow
server, the deployments of prefect.yaml, and the BentoML server of the champion.

Each service runs in its own session (so its whole process group can be signalled), writes its output to
`$CTCD_HOME/logs/<name>.log`, and is recorded in a PID file `$CTCD_HOME/run/<name>.json` holding its pid
and the process's start time. The start time tells a live service from a stale file whose pid the
system has since given to another process, so `ctcd down` stops exactly what `ctcd up` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
import psutil

from ctcd import settings
from ctcd.app import deployments
from ctcd.errors import CtcdError, DependencyUnavailable, UsageError
from ctcd.workspace import log_tail

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

PREFECT_SERVER = "prefect-server"
MLFLOW = "mlflow"
BENTO = "bento"
STOP_GRACE_SECONDS = 20.0
# Start order; `down` stops in the reverse order.
ORDER = {PREFECT_SERVER: 10, MLFLOW: 20, "worker": 30, BENTO: 40}

State = Literal["running", "starting", "unhealthy", "stale", "stopped", "external", "skipped"]


@dataclass(frozen=True)
class ServiceRecord:
    """A PID file: one process `ctcd up` started."""

    name: str
    pid: int
    create_time: float
    order: int
    command: list[str]
    log: str
    url: str | None = None
    health_url: str | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class ServiceStatus:
    """How one service of the stack stands."""

    name: str
    state: State
    url: str | None = None
    pid: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class StackReport:
    """What `up` left running, and the deployments on the Prefect server."""

    services: list[ServiceStatus]
    deployments: list[str]


def worker_service(pool: str) -> str:
    """The service name of the process worker of `pool`."""
    return f"worker-{pool}"


# --- PID files ------------------------------------------------------------------------------------------


def _pid_file(ws: Workspace, name: str) -> Path:
    return ws.run / f"{name}.json"


def read_record(ws: Workspace, name: str) -> ServiceRecord | None:
    """The PID file of service `name`, or None (an unreadable file counts as none)."""
    try:
        return ServiceRecord(**json.loads(_pid_file(ws, name).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def read_records(ws: Workspace) -> list[ServiceRecord]:
    """Every PID file in the workspace, in start order."""
    records = [read_record(ws, p.stem) for p in sorted(ws.run.glob("*.json"))]
    return sorted((r for r in records if r is not None), key=lambda r: (r.order, r.name))


def _write_record(ws: Workspace, record: ServiceRecord) -> None:
    path = _pid_file(ws, record.name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2), encoding="utf-8")
    tmp.replace(path)


def _process(record: ServiceRecord) -> psutil.Process | None:
    """The live process a record names, or None when it is gone or the pid now belongs to another one."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.5 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def is_alive(record: ServiceRecord) -> bool:
    """Whether the process of a PID file still runs (and is the one that was started)."""
    return _process(record) is not None


# --- starting and stopping processes ---------------------------------------------------------------------


def start_process(
    ws: Workspace,
    name: str,
    command: list[str],
    env: dict[str, str],
    *,
    order: int,
    cwd: Path,
    url: str | None = None,
    health_url: str | None = None,
) -> ServiceRecord:
    """Start `command` in its own session, logging to `logs/<name>.log`, and write its PID file."""
    log = ws.logs / f"{name}.log"
    with log.open("ab") as out:
        out.write(f"\n=== {datetime.now(UTC).isoformat()} {' '.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record = ServiceRecord(
        name=name,
        pid=proc.pid,
        create_time=psutil.Process(proc.pid).create_time(),
        order=order,
        command=command,
        log=str(log),
        url=url,
        health_url=health_url,
    )
    _write_record(ws, record)
    return record


def stop_record(ws: Workspace, record: ServiceRecord, grace: float = STOP_GRACE_SECONDS) -> bool:
    """Stop a recorded service and every process it started, then remove its PID file.

    SIGTERM goes to the service's process group and to the groups of its descendants (a Prefect worker
    runs each flow run in a session of its own); what still runs after `grace` seconds gets SIGKILL.
    Returns whether a live process was stopped (False: the PID file was stale).
    """
    root = _process(record)
    if root is not None:
        _terminate_tree(root, grace)
    _pid_file(ws, record.name).unlink(missing_ok=True)
    return root is not None


def _terminate_tree(root: psutil.Process, grace: float) -> None:
    known: dict[int, psutil.Process] = {root.pid: root}
    _collect_descendants(known)
    groups = {_pgid(p) for p in known.values()} - {None, os.getpgid(0)}
    _signal_all(known, groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _collect_descendants(known)  # shutdown hooks start processes too
        if not _living(known):
            return
        time.sleep(0.2)
    for _ in range(3):
        _collect_descendants(known)
        groups |= {_pgid(p) for p in _living(known)} - {None, os.getpgid(0)}
        _signal_all(known, groups, signal.SIGKILL)
        psutil.wait_procs(_living(known), timeout=5)
        if not _living(known):
            return


def _collect_descendants(known: dict[int, psutil.Process]) -> None:
    for proc in list(known.values()):
        try:
            for child in proc.children(recursive=True):
                known.setdefault(child.pid, child)
        except psutil.Error:
            pass


def _living(known: dict[int, psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in known.values():
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            pass
    return alive


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _signal_all(known: dict[int, psutil.Process], groups: set[int | None], sig: signal.Signals) -> None:
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, sig)  # type: ignore[arg-type]
    for proc in _living(known):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


# --- health ----------------------------------------------------------------------------------------------


def http_ok(url: str, expect: str | None = None) -> bool:
    """Whether `url` answers 200 (and its body contains `expect`, when given)."""
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and (expect is None or expect in response.text)


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    try:
        with socket.create_connection((deployments.client_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], record: ServiceRecord | None, what: str, deadline: float) -> None:
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


# --- the services ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """A service `up` asked for: how it stands and, when ctcd runs it, its PID file."""

    status: ServiceStatus
    record: ServiceRecord | None


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
        _pid_file(ws, service.name).unlink(missing_ok=True)
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
    _pid_file(ws, name).unlink(missing_ok=True)
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

    url = f"http://{deployments.client_host(cfg.serving.host)}:{cfg.serving.port}"
    record = read_record(ws, BENTO)
    if record is not None and is_alive(record):
        return ServiceStatus(BENTO, "running", url, record.pid, "already running")
    _pid_file(ws, BENTO).unlink(missing_ok=True)
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
    record = ServiceRecord(
        name=BENTO,
        pid=handle.pid,
        create_time=psutil.Process(handle.pid).create_time(),
        order=ORDER[BENTO],
        command=server.serve_command(cfg.serving.host, cfg.serving.port),
        log=str(handle.log_path),
        url=handle.url,
        health_url=f"{handle.url}/readyz",
    )
    _write_record(ws, record)
    handle.wait_ready(max(5.0, deadline - time.monotonic()))
    return ServiceStatus(BENTO, "running", handle.url, handle.pid, "serving the champion")


def check_ports(cfg: CtcdConfig, ws: Workspace) -> None:
    """Fail before starting anything when another program holds the Prefect or MLflow port."""
    for service in (_prefect_service(cfg), _mlflow_service(cfg)):
        _existing(cfg, ws, service)


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
    worker_statuses = [
        wait_worker(cfg, launch, pool, deadline) for launch, pool in zip(workers, pools, strict=True)
    ]
    statuses = [prefect_status]
    if mlflow is not None:
        statuses.append(wait_mlflow(cfg, mlflow, deadline))
        echo(f"MLflow server healthy at {statuses[-1].url}")
    bento = start_bento(cfg, ws, deadline)
    return StackReport([*statuses, *worker_statuses, bento], deployed.names)


def down(ws: Workspace, grace: float = STOP_GRACE_SECONDS) -> list[ServiceStatus]:
    """Stop every service `up` recorded, in the reverse order of starting, and remove the PID files.

    The prediction servers that delivery runs started (the live one, `run/serving.pid`, and the standby
    smoke-test server, `run/smoke.pid`) are stopped first.
    """
    stopped = []
    from ctcd.serving.server import PID_FILE, SMOKE_PID_FILE, running_server

    servers = ((PID_FILE, "started by a delivery"), (SMOKE_PID_FILE, "the standby smoke-test server"))
    for name, what in servers:
        server = running_server(ws, name)
        if server is not None:
            server.stop(timeout=grace)
            stopped.append(ServiceStatus(BENTO, "stopped", server.url, server.pid, f"stopped ({what})"))
        (ws.run / name).unlink(missing_ok=True)
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
    api = deployments.prefect_api_url(cfg)
    if http_ok(f"{api}/health", "true"):
        with contextlib.suppress(Exception):  # the processes' state matters more than the listing
            names = deployments.deployment_names(api)
    return StackReport(services, names)
