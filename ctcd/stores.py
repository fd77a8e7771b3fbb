"""Crash-safe creation of the workspace's embedded MLflow store (SQLite), and repair of a half-made one.

MLflow creates its SQLite schema with about a hundred migrations, each committed on its own (pysqlite
commits every DDL statement): a process killed during the first minute leaves a database that every later
MLflow call fails on ("table webhooks already exists"). ctcd therefore never lets MLflow create the store in
place. Under a lock in the workspace, it builds the whole schema in a temporary file next to the store and
renames it into place (`os.replace`, atomic on one file system): at any instant there is either no store or
a complete one.

A store left incomplete (by an older ctcd, or by MLflow itself) is recognised by its schema revision not
being MLflow's head, or by alembic's `_alembic_tmp_*` tables:
- holding no records (no run, experiment of ours, registered model, model version, logged model or trace),
  it is moved aside as `mlflow.db.incomplete-<UTC time>` and created anew (nothing recorded is lost);
- holding records, it is copied to `mlflow.db.backup-<UTC time>` and ctcd stops with one line that says to
  run `mlflow db upgrade` (or to move it away), because guessing at a user's data is worse than stopping.

Prefect's own SQLite database (`PREFECT_HOME/prefect.db`) needs none of this: Prefect runs each migration in
its own SQLite transaction (`BEGIN IMMEDIATE`, transaction_per_migration), so a kill leaves it at the last
finished revision and the next server start carries on (checked by killing its first migration at many
points; see RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ctcd.errors import WorkFailed

if TYPE_CHECKING:
    from ctcd.workspace import Workspace

LOCK_TIMEOUT = 600.0
TMP_PREFIX = ".init-"  # the store is built in `<db dir>/.init-<pid>.<db name>` and renamed into place
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")
# Tables whose rows a user (or ctcd for a user) recorded. The default experiment (id 0) and the default
# workspace are made by MLflow itself and are no record.
RECORD_TABLES = ("runs", "registered_models", "model_versions", "logged_models", "trace_info")


@dataclass(frozen=True)
class StoreState:
    """What an MLflow SQLite file holds, read without MLflow."""

    path: Path
    exists: bool
    tables: frozenset[str] = frozenset()
    revision: str | None = None
    records: dict[str, int] = field(default_factory=dict)

    @property
    def leftovers(self) -> list[str]:
        """Alembic's temporary tables: a batch migration was interrupted."""
        return sorted(t for t in self.tables if t.startswith("_alembic_tmp_"))

    @property
    def complete(self) -> bool:
        return self.exists and self.revision == head_revision() and not self.leftovers

    @property
    def holds_records(self) -> bool:
        return any(self.records.values())

    def describe(self) -> str:
        parts = [f"schema revision {self.revision or 'none'}, MLflow needs {head_revision()}"]
        if self.leftovers:
            parts.append(f"tables {', '.join(self.leftovers)} left by an interrupted migration")
        return "; ".join(parts)


@functools.cache
def head_revision() -> str:
    """The schema revision this MLflow creates and expects (alembic head of its migrations)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def inspect_store(path: Path) -> StoreState:
    """Read the tables and schema revision of the SQLite file at `path`, and for an incomplete store its
    record counts (never creates the file)."""
    if not path.exists():
        return StoreState(path, exists=False)
    # mode=rw: never create the file, but do roll back a hot journal a killed writer left.
    connection = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, timeout=60)
    try:
        tables = frozenset(
            r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        )
        revision = None
        if "alembic_version" in tables:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
        complete = revision == head_revision() and not any(t.startswith("_alembic_tmp_") for t in tables)
        # Counting is only needed to decide about an incomplete store: a complete one costs no scan.
        records = {
            t: connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in RECORD_TABLES
            if t in tables and not complete
        }
        if "experiments" in tables and not complete:
            records["experiments"] = connection.execute(
                "SELECT count(*) FROM experiments WHERE experiment_id != 0"
            ).fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise WorkFailed(
            f"the MLflow store {path} is not a readable SQLite database ({exc}): move it away to start an "
            "empty store, or restore it from a backup"
        ) from None
    finally:
        connection.close()
    return StoreState(path, True, tables, revision, records)


def store_lock(ws: Workspace, timeout: float = LOCK_TIMEOUT) -> contextlib.AbstractContextManager[None]:
    """One creation or repair of the workspace's stores at a time, across processes on this machine."""
    from ctcd.workspace import file_lock

    return file_lock(
        ws.mlflow_db.parent / "store.lock", timeout, "another ctcd process creating the MLflow store"
    )


def ensure_mlflow_store(ws: Workspace) -> None:
    """Make sure the workspace's MLflow SQLite store exists and is complete, creating it atomically.

    Cheap when the store is complete (one read of its schema revision, no lock).
    """
    if inspect_store(ws.mlflow_db).complete:
        return
    with store_lock(ws):
        state = inspect_store(ws.mlflow_db)  # another process may have created it meanwhile
        if state.complete:
            return
        if state.exists:
            _set_aside(state)
        _create(ws)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _move_with_side_files(source: Path, target: Path) -> None:
    for suffix in ("", *SQLITE_SIDE_FILES):
        side = Path(f"{source}{suffix}")
        if side.exists():
            os.replace(side, f"{target}{suffix}")


def _set_aside(state: StoreState) -> None:
    """Move an incomplete store without records out of the way; refuse one that holds records."""
    db = state.path
    if state.holds_records:
        backup = db.with_name(f"{db.name}.backup-{_stamp()}")
        shutil.copy2(db, backup)
        held = ", ".join(f"{n} {t}" for t, n in state.records.items() if n)
        raise WorkFailed(
            f"the MLflow store {db} holds records ({held}) but its schema is incomplete "
            f"({state.describe()}); a copy is at {backup}: run `mlflow db upgrade sqlite:///{db}` to finish "
            f"the migration, or move {db} away to start an empty store"
        )
    if not state.tables:
        # An empty file (killed before the first table): nothing to keep.
        for suffix in ("", *SQLITE_SIDE_FILES):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return
    aside = db.with_name(f"{db.name}.incomplete-{_stamp()}")
    _move_with_side_files(db, aside)
    logging.getLogger(__name__).warning(
        "the MLflow store %s was left half-created (%s) and held no records: moved to %s, creating it anew",
        db,
        state.describe(),
        aside,
    )


def _create(ws: Workspace) -> None:
    """Build the complete schema in a temporary file next to the store, then rename it into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db = ws.mlflow_db
    folder = db.parent
    folder.mkdir(parents=True, exist_ok=True)
    # Leftovers of killed creations (we hold the lock: nobody else writes them), and side files of a store
    # that is gone (a stale journal must never be applied to the new store).
    for stale in folder.glob(f"{TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
    for suffix in SQLITE_SIDE_FILES:
        Path(f"{db}{suffix}").unlink(missing_ok=True)

    tmp = folder / f"{TMP_PREFIX}{os.getpid()}.{db.name}"
    uri = f"sqlite:///{tmp}"
    try:
        SqlAlchemyStore(uri, ws.mlflow_artifacts.as_uri())
    finally:
        # MLflow caches one engine per URI (a private map): close the temporary file's before renaming it.
        engine = getattr(SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
        if engine is not None:
            engine.dispose()
    state = inspect_store(tmp)
    if not state.complete or any(Path(f"{tmp}{s}").exists() for s in SQLITE_SIDE_FILES):
        raise WorkFailed(f"MLflow did not finish creating its store in {tmp} ({state.describe()})")
    with tmp.open("rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, db)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
