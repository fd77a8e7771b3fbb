"""Fixtures shared by every test: each test gets its own workspace and Prefect home."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctcd.config import CtcdConfig, load_config
from ctcd.workspace import Workspace

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
