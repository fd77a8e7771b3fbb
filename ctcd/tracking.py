"""What ctcd logs to MLflow tracking: candidate runs (model, lineage, artifacts) and monitoring runs, and
what a model version shows in the registry (a few tags and a one-line description).

`Registry.log_candidate` and `Registry.log_monitoring` (ctcd/registry.py) call these with their experiment
already chosen; nothing here connects to MLflow or touches MLflow's global settings beyond the active run.
skops (the model's serialization) is imported only when a model is logged: it costs seconds per process.

A version's run carries every `ctcd.*` tag (lineage, device, the gate's numbers); the version itself only
`VERSION_TAGS` and a one-line description (`version_description`), so the registry's versions table stays
readable. The full gate decision is the run's `gate/decision.json`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctcd.errors import WorkFailed

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ctcd.config import CtcdConfig

REFERENCE_ARTIFACT = "reference/reference.parquet"
EVALUATION_ARTIFACT = "evaluation.json"
DECISION_ARTIFACT = "gate/decision.json"
CONFIG_ARTIFACT = "config.yaml"

VERSION_TAGS = ("ctcd.reason", "ctcd.trigger", "ctcd.window", "ctcd.gate", "ctcd.delta", "ctcd.rollout")
"""The tags a model version carries: why it was trained (reason, the monitored batch that triggered it, the
training window), the gate's verdict (passed | first-model | rejected) and delta, and the rollout outcome."""
_DESCRIBED_REASON = 160


def version_tags(tags: dict[str, str]) -> dict[str, str]:
    """The few of `tags` a model version carries (`VERSION_TAGS`); its run carries them all."""
    return {k: v for k, v in tags.items() if k in VERSION_TAGS}


def version_description(tags: dict[str, str], run_tags: dict[str, str]) -> str:
    """A model version's one line, from its tags and its run's: what was trained on which window and why,
    the gate's verdict and delta, and the rollout outcome once known."""
    kind = run_tags.get("ctcd.model_kind", "model")
    if run_tags.get("ctcd.role") == "baseline":
        kind += " baseline"
    reason = tags.get("ctcd.reason", "?")
    if len(reason) > _DESCRIBED_REASON:
        reason = reason[: _DESCRIBED_REASON - 3] + "..."
    parts = [f"{kind} trained on {tags.get('ctcd.window', '?')} ({reason})"]
    if "ctcd.gate" in tags:
        parts.append(f"gate {tags['ctcd.gate']}: {tags.get('ctcd.delta', '-')}")
    else:
        parts.append("not judged yet")
    if "ctcd.rollout" in tags:
        parts.append(tags["ctcd.rollout"])
    return " ".join("; ".join(parts).split())


def window_of(batches: list[LoggedBatch]) -> str:
    """The training window as `first..last` batch id (one id for one batch, "-" for none)."""
    ids = [b.batch_id for b in batches]
    if not ids:
        return "-"
    return ids[0] if len(ids) == 1 else f"{ids[0]}..{ids[-1]}"


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


@dataclass(frozen=True)
class LoggedCandidate:
    """What `log_candidate_run` left in MLflow: the run, the new version and the few tags that version gets
    (`version_tags`; the run has every tag)."""

    run_id: str
    version: str
    version_tags: dict[str, str]


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


def log_candidate_run(cfg: CtcdConfig, experiment_id: str, run: CandidateRun) -> LoggedCandidate:
    """Log one trained candidate as a run of `experiment_id` and register its model as a new version
    (created with `version_tags`)."""
    import mlflow

    tags = {
        **run.tags,
        "ctcd.kind": "training",
        "ctcd.window": window_of(run.batches),
        "ctcd.git_commit": git_commit(),
        "ctcd.data.digest": data_digest(run.batches),
        "ctcd.data.batches": ",".join(f"{b.batch_id}:{b.sha256[:12]}" for b in run.batches)[:4900],
        "ctcd.config_sha256": hashlib.sha256(run.config_yaml.encode()).hexdigest(),
    }
    # The run is created with its tags and the version with its own (one call each, not one per tag).
    with mlflow.start_run(experiment_id=experiment_id, run_name=run.run_name, tags=tags) as active:
        info = _log_run_contents(cfg, experiment_id, run)
        run_id = active.info.run_id
    kept = version_tags(tags)
    return LoggedCandidate(run_id, register_version(cfg, info.model_uri, kept), kept)


def register_version(cfg: CtcdConfig, model_uri: str, tags: dict[str, str]) -> str:
    """Register a logged model as a new version of the project's model, created with its tags in one call
    (one transaction: no version without its tags, no round trip per tag); return its number."""
    import mlflow

    return str(mlflow.register_model(model_uri, cfg.registered_model_name, tags=tags).version)


def log_monitoring_run(
    experiment_id: str,
    metrics: dict[str, float],
    *,
    model_version: str | None,
    tags: dict[str, str] | None,
    artifacts: dict[str, Path] | None,
    run_name: str,
) -> str:
    """Log one monitoring check (metrics, tags, files by artifact folder) as a run; return its id."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as active:
        mlflow.set_tags(
            {**(tags or {}), "ctcd.kind": "monitoring", "ctcd.model_version": model_version or "-"}
        )
        mlflow.log_metrics(metrics)
        for folder, path in (artifacts or {}).items():
            mlflow.log_artifact(str(path), artifact_path=folder)
        return active.info.run_id


def _param_value(v: Any) -> str:
    return (v if isinstance(v, str) else json.dumps(v, default=str))[:6000]


def _log_batch(run_id: str, params: dict[str, Any], metrics: dict[str, float]) -> None:
    """A run's parameters and metrics in one call: each fluent `log_params`/`log_metrics` is a round trip
    that also reads the whole run back."""
    import mlflow
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, _param_value(v)) for k, v in params.items()],
    )


def _log_run_contents(cfg: CtcdConfig, experiment_id: str, run: CandidateRun) -> Any:
    with warnings.catch_warnings():
        # MLflow hints about integer columns (ids, int-coded categoricals) and an ambiguous local
        # dataset source; both are harmless here and would otherwise print on every run.
        warnings.filterwarnings("ignore", message=".*(integer column|can be interpreted in multiple)")
        return _log_run_contents_loud(cfg, experiment_id, run)


def _log_run_contents_loud(cfg: CtcdConfig, experiment_id: str, run: CandidateRun) -> Any:
    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.utils import _infer_schema

    _log_batch(mlflow.active_run().info.run_id, run.params, run.metrics)
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
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=child.name,
            nested=True,
            tags={"ctcd.kind": "search-candidate"},
        ) as nested:
            _log_batch(nested.info.run_id, child.params, child.metrics)
    example = run.input_example
    return mlflow.sklearn.log_model(
        run.model,
        name="model",
        signature=ModelSignature(
            inputs=input_schema(example), outputs=infer_signature(example, run.model.predict(example)).outputs
        ),
        input_example=example,
        # Registered after the run (`register_version`), with the version's tags in the same call.
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
    """The types outside skops' default allow-list that a model holds; only XGBoost and scikit-learn pass.

    skops is imported here, when a model is about to be logged (which needs it anyway), never at import time.
    """
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    unknown = [t for t in found if not t.startswith(_TRUSTED_MODULES) and t not in _TRUSTED_TYPES]
    if unknown:
        raise WorkFailed(
            f"the model holds types {unknown} that ctcd will not register: use XGBoost or scikit-learn"
        )
    return found
