"""MLflow seam: tracking set-up, the model registry's aliases, and the promotion history MLflow lacks.

The embedded default keeps the SQLite database and the artifacts inside the workspace; `tracking.tracking_uri`
in the config points at an MLflow server instead. Every model version is a scikit-learn estimator logged
with `mlflow.sklearn` and carries `reference/reference.parquet` and `evaluation.json` for monitoring.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ctcd import settings
from ctcd.errors import DependencyUnavailable, NoChampion, UsageError, WorkFailed
from ctcd.workspace import file_lock


class ChampionMoved(WorkFailed):
    """The champion changed while a candidate was being gated against it: the candidate is not promoted."""


if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace

T = TypeVar("T")

CHAMPION = "champion"
CHALLENGER = "challenger"
REFERENCE_ARTIFACT = "reference/reference.parquet"
EVALUATION_ARTIFACT = "evaluation.json"
DECISION_ARTIFACT = "gate/decision.json"
CONFIG_ARTIFACT = "config.yaml"
PROMOTION_LOCK_TIMEOUT = 600.0
_UNCHECKED = object()


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
    if not cfg.tracking.tracking_uri:
        from ctcd.stores import ensure_mlflow_store

        ensure_mlflow_store(ws)  # created whole or not at all: MLflow's own creation is not crash-safe
    # MLflow's client retries every HTTP call for about this long; ctcd adds no retries of its own.
    settings.use_mlflow_retry_window(cfg.tracking.retry_seconds)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def ensure_experiment() -> None:
        experiment = client.get_experiment_by_name(cfg.experiment_name)
        if experiment is None:
            # The embedded store would otherwise put artifacts in ./mlruns of the working directory.
            location = None if cfg.tracking.tracking_uri else ws.mlflow_artifacts.as_uri()
            client.create_experiment(cfg.experiment_name, artifact_location=location)

    answered(ensure_experiment, f"MLflow at {uri}")
    mlflow.set_experiment(cfg.experiment_name)
    return client


def with_retries(fn: Callable[[], T], what: str, attempts: int = 3, delay_s: float = 0.5) -> T:
    """Call `fn`, retrying connection errors with exponential back-off; DependencyUnavailable at the end."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            if not _is_connection_error(exc):
                raise
            if attempt == attempts - 1:
                raise DependencyUnavailable(f"{what} did not answer: {_first_line(exc)}") from exc
            time.sleep(delay_s * 2**attempt)
    raise AssertionError("unreachable")


def answered(fn: Callable[[], T], what: str) -> T:
    """Call `fn` once (MLflow's client retries it); DependencyUnavailable when the server never answered."""
    return with_retries(fn, what, attempts=1)


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
            f"registered model {cfg.registered_model_name!r} has no '{CHAMPION}' alias yet: "
            "run `ctcd run` first"
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


def text_categories(cfg: CtcdConfig, ws: Workspace, ref: ModelRef) -> dict[str, bool]:
    """Which categorical features a model version takes as text (per its logged signature).

    A column the signature does not type as text (or a model without a signature) takes numbers.
    """
    import mlflow.models

    connect(cfg, ws)
    try:
        signature = mlflow.models.get_model_info(ref.uri).signature
    except Exception as exc:
        raise WorkFailed(
            f"cannot read the signature of model version {ref.version}: {_first_line(exc)}"
        ) from exc
    types = {}
    if signature is not None and signature.inputs is not None and signature.inputs.has_input_names():
        types = {str(k): getattr(v, "name", str(v)) for k, v in signature.inputs.input_types_dict().items()}
    return {c: types.get(c) == "string" for c in cfg.dataset.categorical_features}


def positive_class_index(cfg: CtcdConfig, ref: ModelRef, model: Any) -> int:
    """The column of `model.predict_proba` that holds `dataset.positive_label`, or WorkFailed."""
    import numpy as np

    classes = np.asarray(model.classes_)
    # Models are fitted on "label is positive_label" (tasks/model.py): class 1 is the positive label.
    matches = np.flatnonzero(classes == 1)
    if len(matches) != 1:
        raise WorkFailed(
            f"model version {ref.version} predicts classes {classes.tolist()}, not 0/1 (1: the label is "
            f"positive_label {cfg.dataset.positive_label!r}): it was not trained by ctcd"
        )
    return int(matches[0])


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


# --- Logging candidates, decisions and monitoring -------------------------------------------------------


@dataclass(frozen=True)
class LoggedBatch:
    """A batch a run used: logged with `mlflow.log_input` (name = batch id, digest from its sha256)."""

    batch_id: str
    sha256: str
    source: str
    frame: pd.DataFrame


@dataclass(frozen=True)
class ChildRun:
    """One candidate of a search, logged as a nested run."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]


@dataclass
class CandidateRun:
    """Everything one training run logs: model, parameters, metrics, lineage and artifacts."""

    model: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    evaluation: dict[str, Any]
    reference: pd.DataFrame
    input_example: pd.DataFrame
    batches: list[LoggedBatch]
    config_yaml: str
    tags: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    json_artifacts: dict[str, Any] = field(default_factory=dict)
    children: list[ChildRun] = field(default_factory=list)
    run_name: str | None = None


def git_commit() -> str:
    """The commit of the ctcd checkout that runs this code, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def data_digest(batches: list[LoggedBatch]) -> str:
    """One hash over the (batch id, sha256) pairs of a run's data."""
    pairs = sorted(f"{b.batch_id}:{b.sha256}" for b in batches)
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def _param_value(v: Any) -> str:
    return (v if isinstance(v, str) else json.dumps(v, default=str))[:6000]


def _log_run_contents(cfg: CtcdConfig, run: CandidateRun) -> Any:
    with warnings.catch_warnings():
        # MLflow hints about integer columns (ids, int-coded categoricals) and an ambiguous local
        # dataset source; both are harmless here and would otherwise print on every run.
        warnings.filterwarnings("ignore", message=".*(integer column|can be interpreted in multiple)")
        return _log_run_contents_loud(cfg, run)


def _log_run_contents_loud(cfg: CtcdConfig, run: CandidateRun) -> Any:
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.utils import _infer_schema

    mlflow.log_params({k: _param_value(v) for k, v in run.params.items()})
    mlflow.log_metrics(run.metrics)
    mlflow.log_text(run.config_yaml, CONFIG_ARTIFACT)
    if run.batches:
        datasets = [
            mlflow.data.from_pandas(b.frame, source=b.source, name=b.batch_id, digest=b.sha256[:32])
            for b in run.batches
        ]
        # Validated batches share one schema; MLflow would infer it row by row for each batch (seconds
        # on 100k rows), so infer it once on a sample and fill the datasets' cached property with it.
        schema = _infer_schema(run.batches[0].frame.head(1000))
        for ds in datasets:
            ds.__dict__["schema"] = schema
        mlflow.log_inputs(
            datasets,
            contexts=["training"] * len(datasets),
            tags_list=[{"batch_id": b.batch_id, "sha256": b.sha256} for b in run.batches],
        )
    mlflow.log_dict(run.evaluation, EVALUATION_ARTIFACT)
    for name, obj in run.json_artifacts.items():
        mlflow.log_dict(obj, name)
    for name, fig in run.figures.items():
        mlflow.log_figure(fig, f"plots/{name}.png")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REFERENCE_ARTIFACT).name
        run.reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=str(Path(REFERENCE_ARTIFACT).parent))
    for child in run.children:
        with mlflow.start_run(run_name=child.name, nested=True):
            mlflow.set_tag("ctcd.kind", "search-candidate")
            mlflow.log_params({k: _param_value(v) for k, v in child.params.items()})
            mlflow.log_metrics(child.metrics)
    example = run.input_example
    return mlflow.sklearn.log_model(
        run.model,
        name="model",
        signature=ModelSignature(
            inputs=input_schema(example), outputs=infer_signature(example, run.model.predict(example)).outputs
        ),
        input_example=example,
        registered_model_name=cfg.registered_model_name,
        serialization_format="skops",
        skops_trusted_types=trusted_types(run.model),
        # Given explicitly: inferring them imports the model in a subprocess (tens of seconds).
        pip_requirements=pip_requirements(),
    )


def input_schema(example: pd.DataFrame) -> Any:
    """The signature's inputs, typed from the model input's dtypes (not inferred from a few example values,
    which may all be missing): text columns `string`, the rest `double` (`text_categories` reads it back)."""
    from mlflow.types import ColSpec, Schema

    return Schema(
        [
            ColSpec("string" if example[c].dtype == object else "double", str(c), required=False)
            for c in example.columns
        ]
    )


def pip_requirements() -> list[str]:
    """The pinned packages a logged model needs to load and predict."""
    from importlib.metadata import version as installed

    names = ("mlflow", "scikit-learn", "xgboost", "skops", "numpy", "pandas", "scipy")
    return [f"{name}=={installed(name)}" for name in names]


_TRUSTED_MODULES = ("xgboost.", "sklearn.")
# Also held by scikit-learn models: SimpleImputer keeps a numpy.dtype (a descriptor, no code), and
# HistGradientBoosting's categorical support a functools.partial of sklearn's check_array (skops lists the
# function a partial wraps on its own, so a partial of anything else is still refused).
_TRUSTED_TYPES = frozenset({"numpy.dtype", "functools.partial"})


def trusted_types(model: Any) -> list[str]:
    """The types outside skops' default allow-list that a model holds; only XGBoost and scikit-learn pass."""
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    unknown = [t for t in found if not t.startswith(_TRUSTED_MODULES) and t not in _TRUSTED_TYPES]
    if unknown:
        raise WorkFailed(
            f"the model holds types {unknown} that ctcd will not register: use XGBoost or scikit-learn"
        )
    return found


def log_candidate(cfg: CtcdConfig, ws: Workspace, run: CandidateRun) -> ModelRef:
    """Log one trained candidate as a run, register it as a new version and point `challenger` at it."""
    import mlflow

    client = connect(cfg, ws)
    commit = git_commit()
    digest = data_digest(run.batches)
    with mlflow.start_run(run_name=run.run_name) as active:
        mlflow.set_tags(
            {**run.tags, "ctcd.kind": "training", "ctcd.git_commit": commit, "ctcd.data.digest": digest}
        )
        info = _log_run_contents(cfg, run)
        run_id = active.info.run_id
    number = str(info.registered_model_version)
    version_tags = {
        **run.tags,
        "ctcd.run_id": run_id,
        "ctcd.git_commit": commit,
        "ctcd.data.digest": digest,
        "ctcd.data.batches": ",".join(f"{b.batch_id}:{b.sha256[:12]}" for b in run.batches)[:4900],
        "ctcd.config_sha256": hashlib.sha256(run.config_yaml.encode()).hexdigest(),
        # The holdout metrics only (one registry call per tag); the run holds every metric.
        **{f"ctcd.metric.{k}": f"{v:.6f}" for k, v in sorted(run.metrics.items()) if k.startswith("test_")},
    }
    for key, value in version_tags.items():
        answered(
            lambda k=key, v=value: client.set_model_version_tag(cfg.registered_model_name, number, k, v),
            "MLflow",
        )
    ref = version(cfg, ws, number)
    move_alias(
        cfg, ws, CHALLENGER, ref, reason=run.tags.get("ctcd.reason", "candidate"), extra={"run_id": run_id}
    )
    return version(cfg, ws, number)


def record_decision(
    cfg: CtcdConfig, ws: Workspace, ref: ModelRef, decision: dict[str, Any], tags: dict[str, str]
) -> None:
    """Store a gate decision as `gate/decision.json` in the version's run and as tags on the version."""
    client = connect(cfg, ws)
    if ref.run_id:
        from mlflow.entities import RunTag

        run_id = ref.run_id
        answered(lambda: client.log_dict(run_id, decision, DECISION_ARTIFACT), "MLflow")
        run_tags = [RunTag(k, v) for k, v in tags.items()]
        answered(lambda: client.log_batch(run_id, tags=run_tags), "MLflow")
    for key, value in tags.items():
        answered(
            lambda k=key, v=value: client.set_model_version_tag(cfg.registered_model_name, ref.version, k, v),
            "MLflow",
        )


def load_decision(cfg: CtcdConfig, ws: Workspace, ref: ModelRef) -> dict[str, Any] | None:
    """The gate decision stored with a model version, or None when it was never judged."""
    import mlflow
    from mlflow.exceptions import MlflowException

    connect(cfg, ws)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=DECISION_ARTIFACT)
    except (MlflowException, OSError):
        return None
    return json.loads(Path(local).read_text(encoding="utf-8"))


def run_url(cfg: CtcdConfig, ws: Workspace, run_id: str) -> str:
    """Where a person can look at a run: the MLflow UI for a server, else the run's artifact folder."""
    client = connect(cfg, ws)
    run = client.get_run(run_id)
    if cfg.tracking.tracking_uri and cfg.tracking.tracking_uri.startswith("http"):
        base = cfg.tracking.tracking_uri.rstrip("/")
        return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
    return run.info.artifact_uri


def model_version_url(cfg: CtcdConfig, ws: Workspace, ref: ModelRef) -> str:
    """The MLflow UI page of a model version (server), or its `models:/` URI (embedded store)."""
    if cfg.tracking.tracking_uri and cfg.tracking.tracking_uri.startswith("http"):
        base = cfg.tracking.tracking_uri.rstrip("/")
        return f"{base}/#/models/{ref.name}/versions/{ref.version}"
    return ref.uri


def log_monitoring(
    cfg: CtcdConfig,
    ws: Workspace,
    metrics: dict[str, float],
    *,
    model_version: str | None = None,
    tags: dict[str, str] | None = None,
    artifacts: dict[str, Path] | None = None,
    run_name: str = "monitoring",
) -> str:
    """Log one monitoring check (metrics, tags, files by artifact folder) as a run; return its id."""
    import mlflow

    connect(cfg, ws)
    with mlflow.start_run(run_name=run_name) as active:
        mlflow.set_tags(
            {**(tags or {}), "ctcd.kind": "monitoring", "ctcd.model_version": model_version or "-"}
        )
        mlflow.log_metrics(metrics)
        for folder, path in (artifacts or {}).items():
            mlflow.log_artifact(str(path), artifact_path=folder)
        return active.info.run_id


# --- Champion moves: promotion and rollback --------------------------------------------------------------


@contextlib.contextmanager
def promotion_lock(ws: Workspace, timeout: float = PROMOTION_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the workspace's champion lock: one champion move at a time across processes on this machine."""
    with file_lock(ws.audit / "champion.lock", timeout, "another champion move"):
        yield


def promote(
    cfg: CtcdConfig,
    ws: Workspace,
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
    with promotion_lock(ws):
        if expected_champion is not _UNCHECKED:
            current = champion(cfg, ws)
            now = current.version if current else None
            if now != expected_champion:
                raise ChampionMoved(
                    f"the champion moved from version {expected_champion} to {now} while version "
                    f"{ref.version} was gated against it: not promoted; retrain to gate it against {now}"
                )
        return move_alias(cfg, ws, CHAMPION, ref, reason, actor, {"action": "promote", **(extra or {})})


def champion_stack(ws: Workspace) -> list[str]:
    """The champion versions in promotion order, with rolled-back ones removed (last = current)."""
    stack: list[str] = []
    for entry in alias_history(ws, CHAMPION):
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry["version"])
    return stack


def rollback(cfg: CtcdConfig, ws: Workspace, reason: str, actor: str | None = None) -> dict[str, Any]:
    """Move `champion` back to the champion before the current one; recorded like a promotion."""
    with promotion_lock(ws):
        return _rollback(cfg, ws, reason, actor)


def _rollback(cfg: CtcdConfig, ws: Workspace, reason: str, actor: str | None) -> dict[str, Any]:
    stack = champion_stack(ws)
    current = champion(cfg, ws)
    if current is None or len(stack) < 2 or stack[-1] != current.version:
        raise UsageError(
            "there is no earlier champion to roll back to (see `ctcd status`); use `ctcd promote VERSION`"
        )
    target = version(cfg, ws, stack[-2])
    return move_alias(
        cfg, ws, CHAMPION, target, reason, actor, {"action": "rollback", "from": current.version}
    )
