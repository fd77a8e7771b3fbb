"""The record of one CT/CD cycle (`flows/pipeline.py`): each part is the typed report of its own flow."""

from __future__ import annotations

from pydantic import BaseModel

from tasks.delivery import DeliveryReport
from tasks.ingest import IngestReport
from tasks.monitoring import MonitoringOutcome
from tasks.training_run import TrainingReport


class PipelineReport(BaseModel):
    """What one CT/CD cycle did; each part is the typed report of its own flow."""

    today: str | None
    ingest: IngestReport
    training: TrainingReport | None = None
    delivery: DeliveryReport | None = None
    monitoring: MonitoringOutcome | None = None
    notes: list[str] = []

    def summary(self) -> str:
        """One line: what happened in this cycle."""
        parts = [f"{len(self.ingest.accepted)} batch(es) validated, {len(self.ingest.rejected)} quarantined"]
        if self.training:
            verdict = "promoted" if self.training.promoted else "not promoted"
            if self.training.rollout:
                verdict = f"to a {self.training.rollout} rollout (v{self.training.rollout_version})"
            parts.append(f"trained v{self.training.version} ({self.training.reason}): {verdict}")
        if self.delivery:
            rollout = f" in {self.delivery.rollout}" if self.delivery.rollout else ""
            parts.append(f"delivery {self.delivery.status} v{self.delivery.version}{rollout}")
        if self.monitoring:
            parts.append(f"monitor: {self.monitoring.decision.action} ({self.monitoring.decision.reason})")
        return "; ".join(parts + self.notes)
