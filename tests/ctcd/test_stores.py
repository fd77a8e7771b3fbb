"""The workspace's MLflow SQLite store: created whole or not at all; a half-made one repaired or refused."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from ctcd import registry, stores
from ctcd.config import CtcdConfig
from ctcd.errors import WorkFailed
from ctcd.workspace import Workspace

BEFORE_WEBHOOKS = "de4033877273"  # the revision before MLflow's "add webhooks" migration


def half_migrated(db: Path) -> None:
    """What a kill inside MLflow's own first migration leaves: the initial tables, the migrations up to
    BEFORE_WEBHOOKS committed one by one, and the webhooks migration's first table committed unstamped."""
    from alembic import command
    from mlflow.store.db.utils import InitialBase, _get_alembic_config
    from sqlalchemy import create_engine

    db.parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db}"
    engine = create_engine(uri)
    InitialBase.metadata.create_all(engine)
    config = _get_alembic_config(uri)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, BEFORE_WEBHOOKS)
    engine.dispose()
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE webhooks (webhook_id VARCHAR(256) PRIMARY KEY)")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_store_is_created_whole_and_then_left_alone(workspace: Workspace) -> None:
    stores.ensure_mlflow_store(workspace)
    state = stores.inspect_store(workspace.mlflow_db)
    assert state.complete and state.revision == stores.head_revision() and not state.holds_records
    assert not list(workspace.mlflow_db.parent.glob(f"{stores.TMP_PREFIX}*"))
    inode = workspace.mlflow_db.stat().st_ino
    stores.ensure_mlflow_store(workspace)
    assert workspace.mlflow_db.stat().st_ino == inode, "a complete store is never recreated"


def test_leftovers_of_a_killed_creation_are_cleared(workspace: Workspace) -> None:
    folder = workspace.mlflow_db.parent
    (folder / f"{stores.TMP_PREFIX}999.mlflow.db").write_bytes(b"half")
    (folder / f"{stores.TMP_PREFIX}999.mlflow.db-journal").write_bytes(b"hot")
    Path(f"{workspace.mlflow_db}-journal").write_bytes(b"a stale journal of a store that is gone")
    stores.ensure_mlflow_store(workspace)
    assert stores.inspect_store(workspace.mlflow_db).complete
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["mlflow.db", "store.lock"]


def test_an_empty_store_file_is_recreated(workspace: Workspace) -> None:
    workspace.mlflow_db.write_bytes(b"")
    stores.ensure_mlflow_store(workspace)
    assert stores.inspect_store(workspace.mlflow_db).complete


def test_a_half_migrated_store_without_records_is_set_aside_and_made_anew(
    default_config: CtcdConfig, workspace: Workspace
) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    half_migrated(workspace.mlflow_db)
    # The bug: MLflow itself cannot open it again, ever.
    probe = workspace.root / "probe.db"
    probe.write_bytes(workspace.mlflow_db.read_bytes())
    with pytest.raises(Exception, match="webhooks already exists"):
        SqlAlchemyStore(f"sqlite:///{probe}", workspace.mlflow_artifacts.as_uri())
    state = stores.inspect_store(workspace.mlflow_db)
    assert not state.complete and state.revision == BEFORE_WEBHOOKS and not state.holds_records
    original = sha256(workspace.mlflow_db)

    client = registry.Registry(default_config, workspace).client  # what every command does first
    assert client.get_experiment_by_name(default_config.experiment_name) is not None
    assert stores.inspect_store(workspace.mlflow_db).complete
    (aside,) = workspace.mlflow_db.parent.glob("mlflow.db.incomplete-*")
    assert sha256(aside) == original, "the half-made store is kept, untouched"


def test_an_incomplete_store_that_holds_records_is_refused_and_kept(
    default_config: CtcdConfig, workspace: Workspace
) -> None:
    import mlflow

    registry.Registry.open(default_config, workspace)
    with mlflow.start_run():
        mlflow.log_param("kept", "yes")
    with sqlite3.connect(workspace.mlflow_db) as connection:  # as an older MLflow would have left it
        connection.execute("UPDATE alembic_version SET version_num = ?", (BEFORE_WEBHOOKS,))
    original = sha256(workspace.mlflow_db)

    with pytest.raises(WorkFailed, match=r"holds records \(1 runs.*mlflow db upgrade sqlite:///") as exc:
        stores.ensure_mlflow_store(workspace)
    assert "\n" not in str(exc.value)
    assert sha256(workspace.mlflow_db) == original, "nothing recorded is touched"
    (backup,) = workspace.mlflow_db.parent.glob("mlflow.db.backup-*")
    assert sha256(backup) == original
