"""Servers shared by several test modules, so that the suite starts each kind once instead of once per module.

`prefect_server` starts a real `prefect server start` exactly as `ctcd up` does (`ctcd.app.stack`), with
its UI, on free ports, in its own workspace. tests/conftest.py holds one for the whole session
(`shared_prefect`), started on first use. It is for tests that need *a* Prefect API, read back only
their own runs (by id, by tags, or as children of their run), and leave nothing that acts on other runs:
their flow runs end (completed, failed, resumed from a pause, or left Running by a process the test
killed), and they create no deployment, automation or work pool. A test that deploys, counts everything
on the server, depends on its scheduler or triggers, or stops it keeps a server of its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace


@dataclass(frozen=True)
class PrefectServer:
    """A live Prefect server: its UI's `url`, its `api` (what PREFECT_API_URL is set to), its workspace and
    the pid of the `prefect server start` process."""

    cfg: CtcdConfig
    ws: Workspace
    url: str
    api: str
    pid: int


@contextlib.contextmanager
def prefect_server(root: Path, timeout: float = 300.0) -> Iterator[PrefectServer]:
    """`prefect server start` as `ctcd up` starts it, its state under `root`; stopped (with its process
    group) afterwards."""
    from ctcd.app import deployments, stack
    from tests.integration.test_prefect_stack import write_config

    root.mkdir(parents=True, exist_ok=True)
    cfg = write_config(root, {})
    ws = Workspace.open(root / "home")
    try:
        launch = stack.start_prefect_server(cfg, ws)
        assert launch.record is not None, f"a Prefect server already answers: {launch.status}"
        stack.wait_prefect(cfg, launch, time.monotonic() + timeout)
        url, api = deployments.prefect_url(cfg), deployments.prefect_api_url(cfg)
        yield PrefectServer(cfg, ws, url, api, launch.record.pid)
    finally:
        stack.down(ws, grace=10)


@contextlib.contextmanager
def reporting_to(server: PrefectServer) -> Iterator[str]:
    """Flows run in this process report to `server` (what `prefect_test_harness` does with a server of its
    own); yields its API URL. Subprocesses get it as PREFECT_API_URL in their environment.

    Prefect's log and event workers are per process and keep the API URL they were started with, so they
    are drained on the way in and out, as the harness does: an event worker started here would otherwise
    send a later test's events to this server (a drift event that never reached its own test's server).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _drain_prefect_workers()
    with temporary_settings({PREFECT_API_URL: server.api}):
        try:
            yield server.api
        finally:
            _drain_prefect_workers()


def _drain_prefect_workers() -> None:
    """Send what Prefect's log and event workers hold, and stop them (the next use starts fresh ones)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)
    EventsWorker.drain_all(timeout=30)
