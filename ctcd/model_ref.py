"""The record of one registered model version as ctcd needs it (`ModelRef`), built from MLflow's, and what
every reader of a model needs to know about it (which `predict_proba` column is the positive label)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctcd.errors import WorkFailed

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig


class ChampionMoved(WorkFailed):
    """The champion changed while a candidate was being gated against it: the candidate is not promoted."""


@dataclass(frozen=True)
class ModelRef:
    """One registered model version, as ctcd needs to know it."""

    name: str
    version: str
    run_id: str | None
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created_at: datetime | None = None
    description: str = ""

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


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


def model_ref(mv: Any) -> ModelRef:
    """A `ModelRef` from an MLflow `ModelVersion`."""
    created = datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC) if mv.creation_timestamp else None
    return ModelRef(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        tags=dict(mv.tags or {}),
        aliases=tuple(getattr(mv, "aliases", []) or []),
        created_at=created,
        description=mv.description or "",
    )
