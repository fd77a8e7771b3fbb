"""The connection to MLflow, made once per process and store, and how "no answer" becomes one error.

`connect(cfg, ws)` opens this project's store on first use in a process: the crash-safe creation of the
embedded SQLite store (ctcd/stores.py), the client, the experiment (created when missing). Later calls reuse
it and make no server call; MLflow's global tracking/registry URI and active experiment are set only when
they do not point at this store already (a second workspace in the same process, as tests have).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ctcd import settings
from ctcd.errors import DependencyUnavailable

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

T = TypeVar("T")


def tracking_uri(cfg: CtcdConfig, ws: Workspace) -> str:
    """The MLflow tracking URI: the configured server, or the workspace's SQLite file."""
    return cfg.tracking.tracking_uri or ws.mlflow_tracking_uri


def with_retries(fn: Callable[[], T], what: str, attempts: int = 3, delay_s: float = 0.5) -> T:
    """Call `fn`, retrying connection errors with exponential back-off; DependencyUnavailable at the end."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            # One that already says which server did not answer is passed on as it is.
            if isinstance(exc, DependencyUnavailable) or not is_connection_error(exc):
                raise
            if attempt == attempts - 1:
                raise DependencyUnavailable(f"{what} did not answer: {first_line(exc)}") from exc
            time.sleep(delay_s * 2**attempt)
    raise AssertionError("unreachable")


def answered(fn: Callable[[], T], what: str) -> T:
    """Call `fn` once (MLflow's client retries it); DependencyUnavailable when the server never answered."""
    return with_retries(fn, what, attempts=1)


def is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` says the server never answered (refused, timed out, out of retries)."""
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("ConnectionError", "Connection refused", "Max retries", "ConnectTimeout"))


def first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


@dataclass(frozen=True)
class Connection:
    """A connected MLflow client and the id of the project's experiment."""

    client: MlflowClient
    experiment_id: str


_CONNECTIONS: dict[tuple[str, str], Connection] = {}  # (tracking URI, experiment name) -> connection
_pointed_at: tuple[str, str] | None = None  # the (URI, experiment id) ctcd last set MLflow's globals to
_CONNECTING = threading.Lock()


def connect(cfg: CtcdConfig, ws: Workspace) -> Connection:
    """This store's connection, opened on first use in this process; MLflow's globals pointed at it."""
    global _pointed_at
    import mlflow

    # MLflow's client retries every HTTP call for about this long; ctcd adds no retries of its own.
    settings.use_mlflow_retry_window(cfg.tracking.retry_seconds)
    uri = tracking_uri(cfg, ws)
    key = (uri, cfg.experiment_name)
    with _CONNECTING:
        connection = _CONNECTIONS.get(key)
        if connection is None:
            connection = _CONNECTIONS[key] = _open(cfg, ws, uri)
        target = (uri, connection.experiment_id)
        # Set again only when something else was pointed at since (a second workspace, as tests have).
        if _pointed_at != target or mlflow.get_tracking_uri() != uri or mlflow.get_registry_uri() != uri:
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            # For MLflow's fluent API (`mlflow.start_run()` without an experiment) after connecting.
            mlflow.set_experiment(experiment_id=connection.experiment_id)
            _pointed_at = target
    return connection


def _open(cfg: CtcdConfig, ws: Workspace, uri: str) -> Connection:
    from mlflow import MlflowClient

    if not cfg.tracking.tracking_uri:
        from ctcd.stores import ensure_mlflow_store

        ensure_mlflow_store(ws)  # created whole or not at all: MLflow's own creation is not crash-safe
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def ensure_experiment() -> str:
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        if experiment is not None:
            return str(experiment.experiment_id)
        # The embedded store would otherwise put artifacts in ./mlruns of the working directory.
        location = None if cfg.tracking.tracking_uri else ws.mlflow_artifacts.as_uri()
        return str(client.create_experiment(cfg.experiment_name, artifact_location=location))

    return Connection(client, answered(ensure_experiment, f"MLflow at {uri}"))
