"""Typed configuration: one YAML file loaded once into `CtcdConfig`, validated at load time.

Nothing in ctcd assumes the default dataset's column names: every column name comes from `dataset`.
Relative paths inside the file are resolved against the file's own directory.

`root` holds `CtcdConfig` and `load_config`, `sections` the sections (dataset, stream, model, training,
gates, drift, serving, tracking, orchestration,
alerts), `sources` the `dataset.source` kinds; import any of them
from `ctcd.config`.
"""

from ctcd.config.operations import AlertsConfig, OrchestrationConfig, ScheduleConfig, TrackingConfig
from ctcd.config.root import DEFAULT_CONFIG, RENAMED_KEYS, CtcdConfig, load_config
from ctcd.config.sections import (
    Corruption,
    DataGateConfig,
    DatasetConfig,
    DriftPolicyConfig,
    GatesConfig,
    ModelConfig,
    ModelGateConfig,
    OnlineGateConfig,
    ScenarioEvent,
    SearchConfig,
    ServingConfig,
    StreamConfig,
    TrainingConfig,
)
from ctcd.config.sources import (
    FileSource,
    FilesSource,
    Source,
    SourceLabels,
    SplitConfig,
    SqlSource,
    StreamSource,
)

__all__ = [
    "DEFAULT_CONFIG",
    "RENAMED_KEYS",
    "AlertsConfig",
    "Corruption",
    "CtcdConfig",
    "DataGateConfig",
    "DatasetConfig",
    "DriftPolicyConfig",
    "FileSource",
    "FilesSource",
    "GatesConfig",
    "ModelConfig",
    "ModelGateConfig",
    "OnlineGateConfig",
    "OrchestrationConfig",
    "ScenarioEvent",
    "ScheduleConfig",
    "SearchConfig",
    "ServingConfig",
    "Source",
    "SourceLabels",
    "SplitConfig",
    "SqlSource",
    "StreamConfig",
    "StreamSource",
    "TrackingConfig",
    "TrainingConfig",
    "load_config",
]
