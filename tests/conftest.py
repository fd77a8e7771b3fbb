"""Fixtures shared by every test: each test gets its own workspace and Prefect home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace
from tests.live_stack import PrefectServer, prefect_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A fresh workspace under tmp_path, also exported as CTCD_HOME."""
    root = tmp_path / "ctcd-home"
    monkeypatch.setenv("CTCD_HOME", str(root))
    monkeypatch.setenv("PREFECT_HOME", str(root / "prefect"))
    return Workspace.open(root)


@pytest.fixture(scope="session")
def default_config() -> CtcdConfig:
    """The embedded default configuration."""
    return load_config(REPO / "configs" / "default.yaml")


@pytest.fixture(scope="session")
def shared_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server for the whole session, started when a test first asks for it (see
    tests/live_stack.py for which tests may share it)."""
    with prefect_server(tmp_path_factory.mktemp("shared-prefect")) as server:
        yield server
