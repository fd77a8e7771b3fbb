"""The root of the configuration, `CtcdConfig`, and `load_config`: one YAML file loaded once, validated at
load time, relative paths inside it resolved against the file's own directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from ctcd.config.base import Strict
from ctcd.config.operations import AlertsConfig, OrchestrationConfig, TrackingConfig
from ctcd.config.sections import (
    DatasetConfig,
    DriftPolicyConfig,
    GatesConfig,
    ModelConfig,
    ServingConfig,
    StreamConfig,
    TrainingConfig,
)
from ctcd.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


class CtcdConfig(Strict):
    """The whole configuration of one ctcd project (one dataset)."""

    dataset: DatasetConfig
    stream: StreamConfig | None = None
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    gates: GatesConfig
    drift: DriftPolicyConfig = DriftPolicyConfig()
    serving: ServingConfig = ServingConfig()
    tracking: TrackingConfig = TrackingConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()
    alerts: AlertsConfig = AlertsConfig()
    source: Path | None = Field(default=None, exclude=True, description="the file this was loaded from")

    @model_validator(mode="after")
    def _source_fits(self) -> CtcdConfig:
        src = self.dataset.source
        if src is None:
            return self
        if src.kind == "stream" and self.stream is None:
            raise ValueError("dataset.source kind stream needs the `stream` section")
        labels = getattr(src, "labels", None)
        if src.kind in ("files", "file") and labels is not None and (labels.table or labels.query):
            raise ValueError(f"labels of a {src.kind} source come from its batches or a path, not SQL")
        if src.kind == "sql" and src.batch_column == self.dataset.target:
            raise ValueError("dataset.source.batch_column cannot be the target")
        return self

    @property
    def registered_model_name(self) -> str:
        return self.model.registered_name or self.dataset.name

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or self.dataset.name


# Windows count batches (ctcd/cadence.py), not days: the old keys fail with their new name.
RENAMED_KEYS = {
    ("dataset", "label_delay_days"): "label_delay_batches",
    ("training", "window_days"): "window_batches",
    ("drift", "window_days"): "window_batches",
    ("drift", "cooldown_days"): "cooldown_batches",
    ("drift", "covariate_persistence_days"): "covariate_persistence_batches",
}


def _renamed_key(path: Path, raw: dict) -> str | None:
    for (section, old), new in RENAMED_KEYS.items():
        if isinstance(raw.get(section), dict) and old in raw[section]:
            return (
                f"{path}: {section}.{old} is now {section}.{new}: windows count batches "
                "(for daily batches the same number)"
            )
    return None


def _format_error(path: Path, err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        what = "unknown key"
    elif first["type"] == "missing":
        what = "required key is missing"
    else:
        got = first.get("input")
        what = first["msg"] + (f" (got {got!r})" if not isinstance(got, dict | list) else "")
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{path}: {key}: {what}{more}"


def load_config(path: Path | str | None = None) -> CtcdConfig:
    """Load and validate a config file; raise ConfigError with file, key and problem in one line."""
    from ctcd import settings

    cfg_path = Path(path) if path else (settings.config_path() or DEFAULT_CONFIG)
    if not cfg_path.is_file():
        raise ConfigError(f"{cfg_path}: config file not found")
    try:
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: expected a mapping at the top level")
    renamed = _renamed_key(cfg_path, raw)
    if renamed:
        raise ConfigError(renamed)
    base = cfg_path.resolve().parent
    suite = raw.get("gates", {}).get("data", {}).get("suite") if isinstance(raw.get("gates"), dict) else None
    try:
        cfg = CtcdConfig.model_validate({**raw, "source": cfg_path.resolve()})
    except ValidationError as exc:
        raise ConfigError(_format_error(cfg_path, exc)) from exc
    cfg = _resolve_source_paths(cfg, base)
    if suite is not None:
        suite_path = Path(suite) if Path(suite).is_absolute() else base / suite
        cfg = cfg.model_copy(
            update={
                "gates": cfg.gates.model_copy(
                    update={"data": cfg.gates.data.model_copy(update={"suite": suite_path})}
                )
            }
        )
    return cfg


def _local_path(value: str, base: Path) -> str:
    """A relative local path made absolute against the config's folder; URLs and absolute paths as given."""
    if "://" in value or Path(value).is_absolute():
        return value
    return os.path.normpath(base / value)  # normpath, not resolve: a glob's `*` must stay as written


def _sqlite_url(url: str, base: Path) -> str:
    """A SQLite URL with a relative database path made absolute against the config's folder."""
    if not url.startswith("sqlite"):
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:") or Path(db).is_absolute():
        return url
    return parsed.set(database=os.path.normpath(base / db)).render_as_string(hide_password=False)


def _resolve_source_paths(cfg: CtcdConfig, base: Path) -> CtcdConfig:
    src = cfg.dataset.source
    if src is None or src.kind == "stream":
        return cfg
    if src.kind == "sql":
        update: dict[str, Any] = {"url": _sqlite_url(src.url, base)}
        return cfg.model_copy(
            update={"dataset": cfg.dataset.model_copy(update={"source": src.model_copy(update=update)})}
        )
    update = {"path": _local_path(src.path, base)}
    if src.labels is not None and src.labels.path is not None:
        update["labels"] = src.labels.model_copy(update={"path": _local_path(src.labels.path, base)})
    dataset = cfg.dataset.model_copy(update={"source": src.model_copy(update=update)})
    return cfg.model_copy(update={"dataset": dataset})
