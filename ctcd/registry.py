"""MLflow seam: tracking set-up, the model registry's aliases, and the promotion history MLflow lacks.

The embedded default keeps the SQLite database and the artifacts inside the workspace; `tracking.tracking_uri`
in the config points at an MLflow server instead. Every model version is a scikit-learn estimator logged
with `mlflow.sklearn` and carries `reference/reference.parquet` and `evaluation.json` for monitoring.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctcd.errors import DependencyUnavailable, NoChampion, UsageError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

CHAMPION = "champion"
CHALLENGER = "challenger"
REFERENCE_ARTIFACT = "reference/reference.parquet"
EVALUATION_ARTIFACT = "evaluation.json"


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, as ctcd needs to know it."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: datetime | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def tracking_uri(cfg: CtcdConfig, ws: Workspace) -> str:
    """The MLflow tracking URI: the configured server, or the workspace's SQLite file."""
    return cfg.tracking.tracking_uri or ws.mlflow_tracking_uri


def connect(cfg: CtcdConfig, ws: Workspace) -> MlflowClient:
    """Point MLflow at this project's store, make sure the experiment exists, and return a client."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(cfg, ws)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        if experiment is None:
            # The embedded store would otherwise put artifacts in ./mlruns of the working directory.
            location = None if cfg.tracking.tracking_uri else ws.mlflow_artifacts.as_uri()
            client.create_experiment(cfg.experiment_name, artifact_location=location)
    except Exception as exc:
        if _is_connection_error(exc):
            raise DependencyUnavailable(f"MLflow at {uri} did not answer: {_first_line(exc)}") from exc
        raise
    mlflow.set_experiment(cfg.experiment_name)
    return client


def _is_connection_error(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(s in text for s in ("ConnectionError", "Connection refused", "Max retries", "ConnectTimeout"))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _ref(client: MlflowClient, mv: Any) -> ModelRef:
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
    return ModelRef(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        tags=dict(mv.tags or {}),
        aliases=tuple(getattr(mv, "aliases", []) or []),
        created_at=created,
    )


def by_alias(cfg: CtcdConfig, ws: Workspace, alias: str) -> ModelRef | None:
    """The version an alias points at, or None when the model or alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    client = connect(cfg, ws)
    try:
        mv = client.get_model_version_by_alias(cfg.registered_model_name, alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise
    return _ref(client, mv)


def champion(cfg: CtcdConfig, ws: Workspace) -> ModelRef | None:
    """The current champion, or None before the first promotion."""
    return by_alias(cfg, ws, CHAMPION)


def require_champion(cfg: CtcdConfig, ws: Workspace) -> ModelRef:
    """The current champion, or NoChampion with what to do about it."""
    ref = champion(cfg, ws)
    if ref is None:
        raise NoChampion(
            f"registered model {cfg.registered_model_name!r} has no '{CHAMPION}' alias yet: run `ctcd run` first"
        )
    return ref


def version(cfg: CtcdConfig, ws: Workspace, number: str | int) -> ModelRef:
    """One version of the registered model, by number."""
    from mlflow.exceptions import MlflowException

    client = connect(cfg, ws)
    try:
        mv = client.get_model_version(cfg.registered_model_name, str(number))
    except MlflowException as exc:
        raise UsageError(f"model {cfg.registered_model_name!r} has no version {number}") from exc
    return _ref(client, mv)


def versions(cfg: CtcdConfig, ws: Workspace) -> list[ModelRef]:
    """Every version of the registered model, newest first."""
    client = connect(cfg, ws)
    found = client.search_model_versions(f"name = '{cfg.registered_model_name}'")
    refs = [_ref(client, mv) for mv in found]
    return sorted(refs, key=lambda r: int(r.version), reverse=True)


def load_model(cfg: CtcdConfig, ws: Workspace, ref: ModelRef) -> Any:
    """The scikit-learn estimator of a model version (predict_proba on the dataset's features)."""
    import mlflow.sklearn

    connect(cfg, ws)
    return mlflow.sklearn.load_model(ref.uri)


def load_reference(cfg: CtcdConfig, ws: Workspace, ref: ModelRef) -> pd.DataFrame:
    """The reference sample stored with a model version (features, target, probability, prediction)."""
    import mlflow
    import pandas as pd

    connect(cfg, ws)
    local = mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=REFERENCE_ARTIFACT)
    return pd.read_parquet(local)


def load_evaluation(cfg: CtcdConfig, ws: Workspace, ref: ModelRef) -> dict[str, Any]:
    """The holdout evaluation stored with a model version (`{"metrics": {...}, ...}`)."""
    import mlflow

    connect(cfg, ws)
    local = mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=EVALUATION_ARTIFACT)
    return json.loads(Path(local).read_text(encoding="utf-8"))


def move_alias(
    cfg: CtcdConfig,
    ws: Workspace,
    alias: str,
    ref: ModelRef,
    reason: str,
    actor: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Point `alias` at `ref`, tag the version, and append the move to the audit log; return the entry."""
    client = connect(cfg, ws)
    previous = by_alias(cfg, ws, alias)
    client.set_registered_model_alias(cfg.registered_model_name, alias, ref.version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    entry = {
        "at": now,
        "model": cfg.registered_model_name,
        "alias": alias,
        "version": ref.version,
        "previous": previous.version if previous else None,
        "reason": reason,
        "actor": actor or _actor(),
        **(extra or {}),
    }
    if alias == CHAMPION:
        client.set_model_version_tag(cfg.registered_model_name, ref.version, "ctcd.champion_since", now)
        client.set_model_version_tag(cfg.registered_model_name, ref.version, "ctcd.promotion_reason", reason)
    _append_audit(ws, entry)
    return entry


def _actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _audit_file(ws: Workspace) -> Path:
    return ws.audit / "promotions.jsonl"


def _append_audit(ws: Workspace, entry: dict[str, Any]) -> None:
    with _audit_file(ws).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def alias_history(ws: Workspace, alias: str | None = CHAMPION) -> list[dict[str, Any]]:
    """Every recorded alias move, oldest first (only `alias` when given)."""
    path = _audit_file(ws)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in entries if alias is None or e["alias"] == alias]
