"""MLflow seam: the `Registry` object (versions, aliases, loading, logging, locked champion moves).

The embedded default keeps the SQLite database and the artifacts inside the workspace; `tracking.tracking_uri`
in the config points at an MLflow server instead. Every model version is a scikit-learn estimator logged
with `mlflow.sklearn` and carries `reference/reference.parquet` and `evaluation.json` for monitoring.

`Registry(cfg, ws)` is cheap: it connects on first use, once per process and store (the client, the
experiment and MLflow's global tracking/registry URI are kept, not set again per call). Its methods come in
three groups: reading (champion, version, load_model, ...), tracking (log_candidate, record_decision,
record_rollout, describe, log_monitoring; what a run logs and a version shows is `ctcd/tracking.py`: a
version carries only `tracking.VERSION_TAGS` and a one-line description) and alias moves under the
promotion lock (promote, move_alias, rollback), recorded in the workspace's audit log (ctcd/audit.py:
`alias_history`, `champion_stack`).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ctcd.audit import (
    CHALLENGER,
    CHAMPION,
    PROMOTION_LOCK_TIMEOUT,
    actor_name,
    alias_history,
    append_move,
    champion_stack,
    promotion_lock,
)
from ctcd.errors import NoChampion, UsageError, WorkFailed
from ctcd.mlflow_connection import (
    Connection,
    answered,
    connect,
    first_line,
    is_connection_error,
    tracking_uri,
)
from ctcd.model_ref import ChampionMoved, ModelRef, model_ref
from ctcd.tracking import (
    DECISION_ARTIFACT,
    EVALUATION_ARTIFACT,
    REFERENCE_ARTIFACT,
    CandidateRun,
    log_candidate_run,
    log_monitoring_run,
    version_description,
    version_tags,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

# What callers take from here: the Registry and the names of its own interface (the versions its methods
# return and take, the aliases they move, the error `promote` raises). Everything else is imported from
# the module that defines it (ctcd.audit, ctcd.model_ref, ctcd.tracking, ctcd.mlflow_connection).
__all__ = ["CHALLENGER", "CHAMPION", "ChampionMoved", "ModelRef", "Registry"]

F = TypeVar("F", bound=Callable[..., Any])

_UNCHECKED = object()


# --- The registry object ------------------------------------------------------------------------------------


def _answered(method: F) -> F:
    """Server calls of this method end in DependencyUnavailable, naming the server, when it is down."""

    @functools.wraps(method)
    def call(self: Registry, *args: Any, **kwargs: Any) -> Any:
        return answered(lambda: method(self, *args, **kwargs), f"MLflow at {self.uri}")

    return call  # type: ignore[return-value]


class Registry:
    """One project's registered model in MLflow, plus the workspace's audit log of alias moves.

    Cheap to make (`Registry(cfg, ws)`); the first method that needs MLflow connects, once per process.
    `Registry.open(cfg, ws)` connects at once (to fail early when MLflow does not answer).
    """

    def __init__(self, cfg: CtcdConfig, ws: Workspace) -> None:
        self.cfg = cfg
        self.ws = ws

    @classmethod
    def open(cls, cfg: CtcdConfig, ws: Workspace) -> Registry:
        registry = cls(cfg, ws)
        registry.client  # noqa: B018 - connects now
        return registry

    @property
    def uri(self) -> str:
        return tracking_uri(self.cfg, self.ws)

    @property
    def model_name(self) -> str:
        return self.cfg.registered_model_name

    @property
    def client(self) -> MlflowClient:
        """MLflow's client for this store (connected once per process; MLflow's globals point here)."""
        return self._connection().client

    @property
    def experiment_id(self) -> str:
        return self._connection().experiment_id

    def _connection(self) -> Connection:
        return connect(self.cfg, self.ws)

    # --- reading ------------------------------------------------------------------------------------------

    @_answered
    def by_alias(self, alias: str) -> ModelRef | None:
        """The version an alias points at, or None when the model or alias does not exist yet."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException as exc:
            missing = "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower()
            if missing and not is_connection_error(exc):
                return None
            raise
        return model_ref(mv)

    def champion(self) -> ModelRef | None:
        """The current champion, or None before the first promotion."""
        return self.by_alias(CHAMPION)

    def require_champion(self) -> ModelRef:
        """The current champion, or NoChampion with what to do about it."""
        ref = self.champion()
        if ref is None:
            raise NoChampion(
                f"registered model {self.model_name!r} has no '{CHAMPION}' alias yet: run `ctcd run` first"
            )
        return ref

    @_answered
    def version(self, number: str | int) -> ModelRef:
        """One version of the registered model, by number."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(self.model_name, str(number))
        except MlflowException as exc:
            if is_connection_error(exc):
                raise
            raise UsageError(f"model {self.model_name!r} has no version {number}") from exc
        return model_ref(mv)

    @_answered
    def versions(self) -> list[ModelRef]:
        """Every version of the registered model, newest first."""
        found = self.client.search_model_versions(f"name = '{self.model_name}'")
        return sorted((model_ref(mv) for mv in found), key=lambda r: int(r.version), reverse=True)

    @_answered
    def load_model(self, ref: ModelRef) -> Any:
        """The scikit-learn estimator of a model version (predict_proba on the dataset's features)."""
        import mlflow.sklearn

        self._connection()
        return mlflow.sklearn.load_model(ref.uri)

    @_answered
    def text_categories(self, ref: ModelRef) -> dict[str, bool]:
        """Which categorical features a model version takes as text (per its logged signature).

        A column the signature does not type as text (or a model without a signature) takes numbers.
        """
        import mlflow.models

        self._connection()
        try:
            signature = mlflow.models.get_model_info(ref.uri).signature
        except Exception as exc:
            if is_connection_error(exc):
                raise
            raise WorkFailed(
                f"cannot read the signature of model version {ref.version}: {first_line(exc)}"
            ) from exc
        types = {}
        if signature is not None and signature.inputs is not None and signature.inputs.has_input_names():
            types = {
                str(k): getattr(v, "name", str(v)) for k, v in signature.inputs.input_types_dict().items()
            }
        return {c: types.get(c) == "string" for c in self.cfg.dataset.categorical_features}

    def _download(self, ref: ModelRef, artifact: str) -> Path:
        import mlflow

        self._connection()
        return Path(mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=artifact))

    @_answered
    def load_reference(self, ref: ModelRef) -> pd.DataFrame:
        """The reference sample stored with a model version (features, target, probability, prediction)."""
        import pandas as pd

        return pd.read_parquet(self._download(ref, REFERENCE_ARTIFACT))

    @_answered
    def load_evaluation(self, ref: ModelRef) -> dict[str, Any]:
        """The holdout evaluation stored with a model version (`{"metrics": {...}, ...}`)."""
        return json.loads(self._download(ref, EVALUATION_ARTIFACT).read_text(encoding="utf-8"))

    @_answered
    def load_decision(self, ref: ModelRef) -> dict[str, Any] | None:
        """The gate decision stored with a model version, or None when it was never judged."""
        from mlflow.exceptions import MlflowException

        try:
            local = self._download(ref, DECISION_ARTIFACT)
        except (MlflowException, OSError) as exc:
            if is_connection_error(exc):
                raise
            return None
        return json.loads(local.read_text(encoding="utf-8"))

    def _server_ui(self) -> str | None:
        configured = self.cfg.tracking.tracking_uri
        return configured.rstrip("/") if configured and configured.startswith("http") else None

    @_answered
    def run_url(self, run_id: str) -> str:
        """Where a person can look at a run: the MLflow UI for a server, else the run's artifact folder."""
        run = self.client.get_run(run_id)
        base = self._server_ui()
        if base:
            return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
        return run.info.artifact_uri

    def model_version_url(self, ref: ModelRef) -> str:
        """The MLflow UI page of a model version (server), or its `models:/` URI (embedded store)."""
        base = self._server_ui()
        return f"{base}/#/models/{ref.name}/versions/{ref.version}" if base else ref.uri

    # --- tracking -----------------------------------------------------------------------------------------

    @_answered
    def log_candidate(self, run: CandidateRun) -> ModelRef:
        """Log one trained candidate as a run, register it as a new version and point `challenger` at it."""
        # The version is created with its tags (`LoggedCandidate.version_tags`) in one call.
        logged = log_candidate_run(self.cfg, self.experiment_id, run)
        reason = run.tags.get("ctcd.reason", "candidate")
        ref = ModelRef(self.model_name, logged.version, logged.run_id)
        self.describe(ref)
        self.move_alias(CHALLENGER, ref, reason=reason, extra={"run_id": logged.run_id})
        return self.version(logged.version)

    @_answered
    def record_decision(
        self, ref: ModelRef, decision: dict[str, Any], tags: dict[str, str], artifact: str = DECISION_ARTIFACT
    ) -> None:
        """Store a gate decision as `artifact` (default `gate/decision.json`) and `tags` in the version's run;
        the version gets the verdict tags among them (`tracking.VERSION_TAGS`) and its description says it."""
        client = self.client
        if ref.run_id:
            run_id = ref.run_id
            answered(lambda: client.log_dict(run_id, decision, artifact), "MLflow")
            self._tag_run(run_id, tags)
        self._tag_version(ref.version, version_tags(tags))
        self.describe(ref)

    @_answered
    def record_rollout(self, ref: ModelRef, outcome: str) -> None:
        """Record how the version's rollout ended (`ctcd.rollout`, one short line such as "shadow: promoted
        by the online gate, roc_auc +0.012 on 840 rows") on the version and in its description."""
        self._tag_version(ref.version, {"ctcd.rollout": outcome})
        self.describe(ref)

    @_answered
    def describe(self, ref: ModelRef, text: str | None = None) -> str:
        """Set the version's one-line MLflow description: `text`, or by default composed from its tags and
        its run's (`tracking.version_description`); return it."""
        client = self.client
        if text is None:
            current = self.version(ref.version)
            run_tags = dict(client.get_run(current.run_id).data.tags) if current.run_id else {}
            text = version_description(current.tags, run_tags)
        line = " ".join(text.split())[:4900]
        client.update_model_version(self.model_name, ref.version, description=line)
        return line

    def _tag_version(self, version: str, tags: dict[str, str]) -> None:
        client = self.client
        for key, value in tags.items():
            answered(
                lambda k=key, v=value: client.set_model_version_tag(self.model_name, version, k, v), "MLflow"
            )

    def _tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        run_tags = [RunTag(k, v) for k, v in tags.items()]
        answered(lambda: self.client.log_batch(run_id, tags=run_tags), "MLflow")

    @_answered
    def log_monitoring(
        self,
        metrics: dict[str, float],
        *,
        model_version: str | None = None,
        tags: dict[str, str] | None = None,
        artifacts: dict[str, Path] | None = None,
        run_name: str = "monitoring",
    ) -> str:
        """Log one monitoring check (metrics, tags, files by artifact folder) as a run; return its id."""
        return log_monitoring_run(
            self.experiment_id,
            metrics,
            model_version=model_version,
            tags=tags,
            artifacts=artifacts,
            run_name=run_name,
        )

    # --- alias moves and their audit log ------------------------------------------------------------------

    def promotion_lock(
        self, timeout: float = PROMOTION_LOCK_TIMEOUT
    ) -> contextlib.AbstractContextManager[None]:
        """Hold the workspace's champion lock (see `promotion_lock`)."""
        return promotion_lock(self.ws, timeout)

    @_answered
    def move_alias(
        self,
        alias: str,
        ref: ModelRef,
        reason: str,
        actor: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Point `alias` at `ref`, append the move to the audit log and return the entry; a new champion's
        version says so (`ctcd.rollout`, its description) and its run keeps when and why."""
        client = self.client
        previous = self.by_alias(alias)
        client.set_registered_model_alias(self.model_name, alias, ref.version)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        entry = {
            "at": now,
            "model": self.model_name,
            "alias": alias,
            "version": ref.version,
            "previous": previous.version if previous else None,
            "reason": reason,
            "actor": actor or actor_name(),
            **(extra or {}),
        }
        if alias == CHAMPION:
            if ref.run_id:
                self._tag_run(ref.run_id, {"ctcd.champion_since": now, "ctcd.promotion_reason": reason})
            restored = entry.get("action") == "rollback"
            outcome = f"champion again {now} (rollback from v{entry.get('from')})" if restored else None
            self.record_rollout(ref, outcome or f"promoted {now}")
        append_move(self.ws, entry)
        return entry

    @_answered
    def promote(
        self,
        ref: ModelRef,
        reason: str,
        actor: str | None = None,
        extra: dict[str, Any] | None = None,
        expected_champion: str | None | object = _UNCHECKED,
    ) -> dict[str, Any]:
        """Make `ref` the champion, recorded in tags and the audit log.

        With `expected_champion` (a version, or None for "no champion yet") this is a compare-and-set: under
        the promotion lock, ChampionMoved is raised instead when the champion is no longer that version.
        """
        with self.promotion_lock():
            if expected_champion is not _UNCHECKED:
                current = self.champion()
                now = current.version if current else None
                if now != expected_champion:
                    raise ChampionMoved(
                        f"the champion moved from version {expected_champion} to {now} while version "
                        f"{ref.version} was gated against it: not promoted; retrain to gate it against {now}"
                    )
            return self.move_alias(CHAMPION, ref, reason, actor, {"action": "promote", **(extra or {})})

    @_answered
    def rollback(self, reason: str, actor: str | None = None) -> dict[str, Any]:
        """Move `champion` back to the champion before the current one; recorded like a promotion."""
        with self.promotion_lock():
            stack = self.champion_stack()
            current = self.champion()
            if current is None or len(stack) < 2 or stack[-1] != current.version:
                raise UsageError(
                    "there is no earlier champion to roll back to (see `ctcd status`); "
                    "use `ctcd promote VERSION`"
                )
            target = self.version(stack[-2])
            extra = {"action": "rollback", "from": current.version}
            entry = self.move_alias(CHAMPION, target, reason, actor, extra)
            self.record_rollout(current, f"rolled back {entry['at']}: {reason}")
            return entry

    @_answered
    def remove_alias(self, alias: str, reason: str, actor: str | None = None) -> dict[str, Any] | None:
        """Delete `alias` when it is set and append the removal to the audit log; return the entry."""
        current = self.by_alias(alias)
        if current is None:
            return None
        self.client.delete_registered_model_alias(self.model_name, alias)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        entry = {"at": at, "model": self.model_name, "alias": alias, "version": current.version}
        entry |= {
            "previous": current.version,
            "reason": reason,
            "actor": actor or actor_name(),
            "action": "remove",
        }
        append_move(self.ws, entry)
        return entry

    def alias_history(self, alias: str | None = CHAMPION) -> list[dict[str, Any]]:
        """Every recorded alias move, oldest first (see `alias_history`)."""
        return alias_history(self.ws, alias)

    def champion_stack(self) -> list[str]:
        """The champion versions in promotion order, rolled-back ones removed (see `champion_stack`)."""
        return champion_stack(self.ws)
