"""Config sections of operations: where runs are tracked (`tracking`), the local stack and its schedules
(`orchestration`), and where alerts go (`alerts`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ctcd.config.base import Strict


class TrackingConfig(Strict):
    """MLflow: the embedded SQLite store by default, a server when `tracking_uri` is set."""

    tracking_uri: str | None = None
    experiment: str | None = None
    retry_seconds: int = Field(
        default=120,
        ge=0,
        description="how long one MLflow call waits for an unreachable server before failing (0: no retry)",
    )


class ScheduleConfig(Strict):
    cron: str | None = None
    interval_seconds: int | None = Field(default=None, ge=10)

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleConfig:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron or interval_seconds")
        return self


class OrchestrationConfig(Strict):
    """Prefect schedules and work pools, and the local stack `ctcd up` starts."""

    cpu_pool: str = "cpu-pool"
    gpu_pool: str = "gpu-pool"
    schedules: dict[Literal["ingest", "monitor", "training"], ScheduleConfig] = Field(default_factory=dict)
    drift_event: str = "ctcd.drift.detected"
    host: str = Field(default="127.0.0.1", description="address the local Prefect and MLflow servers bind")
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    prefect_database_url: str | None = Field(
        default=None, description="e.g. postgresql+asyncpg://user:pw@host:5432/prefect; null: SQLite"
    )
    worker_poll_seconds: float = Field(default=5.0, gt=0, description="how often workers ask for runs")
    startup_timeout_seconds: float = Field(default=90.0, gt=0)
    project_dir: Path | None = Field(
        default=None,
        description="holds flows/ and deployments/prefect.yaml (relative to this file; null: the checkout)",
    )
    dask: Literal["off", "local"] = Field(
        default="off",
        description="local: training (xgboost.dask) and the data gate run on a local Dask cluster "
        "of dask_workers processes (the dask extra); dask_address, when set, is used instead",
    )
    dask_workers: int = Field(default=2, ge=1, description="worker processes of the local Dask cluster")
    dask_address: str | None = Field(
        default=None,
        description="a Dask scheduler (tcp://host:8786) for training and the data gate; workers must reach "
        "the workspace's files; null: dask decides",
    )

    @field_validator("dask", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML reads a bare `off` as false

    @property
    def uses_dask(self) -> bool:
        """Whether training and the data gate run on a Dask cluster (an address, or a local one)."""
        return self.dask_address is not None or self.dask == "local"


class AlertsConfig(Strict):
    """Alerts through Prefect: `ctcd up` creates one automation per alert kind that sends the
    `ctcd.alert.<kind>` events to a Prefect notification block."""

    webhook_url: str | None = Field(
        default=None,
        description=(
            "POST each alert as JSON here (a Custom Webhook block named `block` is created); null: no "
            "automations unless a notification block named `block` already exists (e.g. Slack, email)"
        ),
    )
    block: str = Field(
        default="ctcd-alerts",
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="the Prefect notification block the alerts go to (lowercase letters, digits, dashes)",
    )
