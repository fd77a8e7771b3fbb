"""Shared set-up of the reliability suite: the `slow` marker and a served champion in its own workspace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctcd import registry
from ctcd.config import CtcdConfig, load_config
from ctcd.net import free_port
from ctcd.serving.server import ServerHandle
from ctcd.workspace import Workspace
from tests.integration.test_serving import API_KEY_ENV, register_version, write_project

API_KEY = "reliability-key-4f1c9e2b7a"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: runs for a fixed time (sustained load); CI shortens it")


@dataclass(frozen=True)
class Served:
    """A live prediction server of champion version 1, and where its state lives."""

    config: Path
    cfg: CtcdConfig
    ws: Workspace
    handle: ServerHandle
    champion: registry.ModelRef

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {API_KEY}"}


@contextlib.contextmanager
def served_champion(root: Path, **serving: object) -> Iterator[Served]:
    """Register and promote a small model in a fresh workspace under `root`, serve it, stop it after.

    The server gets the API key from the environment (as in production) and binds the config's host.
    """
    from ctcd.serving.server import start_server

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        mp.setenv("PREFECT_HOME", str(root / "home" / "prefect"))
        mp.setenv(API_KEY_ENV, API_KEY)
        config = write_project(root, free_port(), **serving)
        cfg = load_config(config)
        ws = Workspace.open(root / "home")
        first = register_version(cfg, ws, seed=1)
        registry.Registry(cfg, ws).promote(first, reason="first champion")
        handle = start_server(cfg, ws, cfg.serving.port)
        try:
            yield Served(config, cfg, ws, handle, first)
        finally:
            handle.stop()


@pytest.fixture(scope="package")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One served champion shared by the fuzzing and security modules (the load test has its own)."""
    with served_champion(tmp_path_factory.mktemp("champion"), log_flush_seconds=0.5) as served:
        yield served


def write_stack_config(root: Path, tracking_uri: str | None = None, **orchestration: object) -> Path:
    """The default config with the local stack's ports (and other orchestration keys) replaced."""
    import yaml

    from tests.conftest import REPO

    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    raw["gates"]["data"]["suite"] = str(REPO / "configs" / "expectations" / "agrawal-loans.json")
    raw["orchestration"] = {**raw["orchestration"], **orchestration}
    raw["tracking"] = {**(raw.get("tracking") or {}), "tracking_uri": tracking_uri}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def listening_addresses(pid: int) -> set[str]:
    """The IP addresses a process and all its descendants accept TCP connections on."""
    import psutil

    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found |= {c.laddr.ip for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    return found


@contextlib.contextmanager
def stack_mlflow(cfg: CtcdConfig, ws: Workspace, timeout: float = 180.0) -> Iterator[object]:
    """`mlflow server` exactly as `ctcd up` starts it (ctcd.app.stack.start_mlflow); stopped afterwards."""
    from ctcd.app import deployments, stack
    from ctcd.net import wait_http

    launch = stack.start_mlflow(cfg, ws)
    assert launch.record is not None, f"an MLflow server already answers: {launch.status}"
    try:
        wait_http(f"{deployments.mlflow_url(cfg)}/health", timeout=timeout)
        yield launch.record
    finally:
        stack.stop_record(ws, launch.record)
