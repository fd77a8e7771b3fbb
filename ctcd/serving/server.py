"""Start, wait for and stop a real `bentoml serve` process of the champion service.

The server runs as its own process group, logs to `$CTCD_HOME/logs/serving-<port>.log`, and gets its
config and workspace through `CTCD_CONFIG` / `CTCD_HOME`, `OMP_NUM_THREADS=1` (XGBoost threads would fight
the server's), and BentoML's home inside the workspace. `write_pid_file` records a detached one in a PID
file (`ctcd.processes`); `stop()` sends SIGTERM first, so workers write their buffered predictions before
they exit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ctcd import processes, settings
from ctcd.errors import DependencyUnavailable
from ctcd.net import client_host, http_ok
from ctcd.processes import ProcessRecord
from ctcd.workspace import log_tail

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

SERVICE_TARGET = "ctcd.serving.service:ChampionService"
STARTUP_TIMEOUT = 120.0
# The names of the PID files (`run/<name>.json`, `ctcd.processes`) of the servers deliveries start.
PID_FILE = "serving"  # the live server
SMOKE_PID_FILE = "smoke"  # the standby smoke-test server (`serving.keep_smoke_server`)
# Start order of a recorded server: after the stack's services (ctcd.app.stack.ORDER), so stopped first.
SERVER_ORDER = 50


@dataclass
class ServerHandle:
    """A running `bentoml serve` process and where it answers."""

    url: str
    port: int
    record: ProcessRecord
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.record.pid

    @property
    def log_path(self) -> Path:
        return Path(self.record.log)

    def alive(self) -> bool:
        """Whether the server process still runs."""
        if self.process is not None:
            return self.process.poll() is None
        with contextlib.suppress(OSError):
            # Reap it when it is an exited child of this process: a zombie would look alive forever.
            os.waitpid(self.pid, os.WNOHANG)
        return processes.is_alive(self.record)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT, probe: str = "/readyz") -> None:
        """Block until `probe` answers 200; raise DependencyUnavailable with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise DependencyUnavailable(
                    f"the prediction server on port {self.port} exited during startup; "
                    f"see {self.log_path}: {log_tail(self.log_path)}"
                )
            if http_ok(f"{self.url}{probe}"):
                return
            try:
                info = httpx.get(f"{self.url}/model", timeout=2.0).json()
            except (httpx.HTTPError, ValueError):
                info = {}
            if info.get("pinned") and info.get("reload_error"):
                raise DependencyUnavailable(
                    f"the prediction server on port {self.port}: {info['reload_error']}"
                )
            time.sleep(0.3)
        raise DependencyUnavailable(
            f"the prediction server on port {self.port} was not ready in {timeout:.0f}s; see {self.log_path}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and its workers gracefully (SIGTERM), then by force after `timeout` seconds."""
        if not self.alive():
            return
        processes.stop(self.record, timeout)
        if self.process is not None:
            self.process.wait(timeout=10)


def reload_channel(ws: Workspace, port: int) -> Path:
    """The file through which a reload request reaches every worker of the server on `port`."""
    return ws.run / f"serving-{port}.reload.json"


def serve_command(
    host: str, port: int, version: str | None = None, log_predictions: bool = True
) -> list[str]:
    """The `bentoml serve` command line for the champion service (or a pinned `version`)."""
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_TARGET,
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(settings.project_root()),
        "--arg",
        f"port={port}",
    ]
    if version is not None:
        cmd += ["--arg", f"version={version}"]
    if not log_predictions:
        cmd += ["--arg", "log_predictions=false"]
    return cmd


def server_environment(cfg: CtcdConfig, ws: Workspace) -> dict[str, str]:
    """The environment of a server process: config, workspace, one OpenMP thread, no telemetry."""
    return settings.server_environment(
        cfg.source,
        ws.root,
        {
            "OMP_NUM_THREADS": "1",
            "BENTOML_HOME": str(ws.root / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        },
        mlflow_retry_seconds=cfg.tracking.retry_seconds,
    )


def start_server(
    cfg: CtcdConfig,
    ws: Workspace,
    port: int | None = None,
    *,
    host: str | None = None,
    version: str | None = None,
    log_predictions: bool = True,
    wait: bool = True,
    require_model: bool = True,
    timeout: float = STARTUP_TIMEOUT,
) -> ServerHandle:
    """Start `bentoml serve` in the background and (by default) wait until it is ready.

    `version` pins a model version and turns off reloads (the smoke test of a candidate); without it the
    server serves the champion and follows `POST /admin/reload`. `require_model=False` returns once the
    server is up even before the registry has a champion (it then loads the first one by itself).
    """
    if cfg.source is None:
        raise DependencyUnavailable("the config was not loaded from a file, so a server cannot load it")
    host = host or cfg.serving.host
    port = port or cfg.serving.port
    # A reload request left by an earlier server on this port must not steer the new one.
    reload_channel(ws, port).unlink(missing_ok=True)
    log_path = ws.logs / f"serving-{port}.log"
    process = processes.spawn(
        serve_command(host, port, version, log_predictions),
        cwd=settings.project_root(),
        env=server_environment(cfg, ws),
        log=log_path,
    )
    url = f"http://{client_host(host)}:{port}"
    probe = "/readyz" if require_model else "/healthz"
    record = processes.record_of(
        f"serving-{port}", process, log_path, url=url, health_url=f"{url}{probe}", port=port
    )
    handle = ServerHandle(url, port, record, process)
    if wait:
        try:
            handle.wait_ready(timeout, probe)
        except BaseException:
            handle.stop()
            raise
    return handle


def run_foreground(cfg: CtcdConfig, ws: Workspace, port: int, host: str) -> int:
    """Run the server attached to this terminal until Ctrl-C or SIGTERM (as a supervisor stops it: passed on,
    so the server drains and flushes its prediction log rather than outliving us); return its exit code."""
    if cfg.source is None:
        raise DependencyUnavailable("the config was not loaded from a file, so a server cannot load it")
    reload_channel(ws, port).unlink(missing_ok=True)
    process = subprocess.Popen(
        serve_command(host, port), cwd=settings.project_root(), env=server_environment(cfg, ws)
    )
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: process.send_signal(signum))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait(timeout=60)
    finally:
        signal.signal(signal.SIGTERM, previous)


def live_server_url(cfg: CtcdConfig) -> str:
    """Where the configured live server answers."""
    return f"http://{client_host(cfg.serving.host)}:{cfg.serving.port}"


def is_serving(url: str) -> bool:
    """Whether a server answers `/readyz` with 200 at `url`."""
    return http_ok(f"{url}/readyz")


def write_pid_file(ws: Workspace, handle: ServerHandle, name: str = PID_FILE) -> Path:
    """Record a detached server (the live one by default) so `running_server` (or `ctcd down`) finds it."""
    return processes.write_record(ws, replace(handle.record, name=name, order=SERVER_ORDER))


def running_server(ws: Workspace, name: str = PID_FILE) -> ServerHandle | None:
    """The server recorded in the workspace's PID file `name` (the live one), if its process still runs."""
    record = processes.read_record(ws, name)
    if record is None or record.url is None or record.port is None:
        return None
    handle = ServerHandle(record.url, record.port, record)
    return handle if handle.alive() else None
