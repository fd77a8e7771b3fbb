"""The model rollout in progress (shadow or canary), kept in `$CTCD_HOME/run/rollout.json`.

A rollout serves a candidate version beside the champion (`serving.rollout`): in shadow the candidate scores
every row but the champion answers; in canary the candidate answers the rows whose id hashes under
`fraction` (`routes_to_candidate`), the champion the rest. Both models score every row either way, and the
prediction log keeps both probabilities, so the online gate compares them on the same rows.
`ctcd.serving.deploy` starts, advances and ends rollouts and tells the live server.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from ctcd.workspace import write_json_atomic

if TYPE_CHECKING:
    from ctcd.workspace import Workspace

ROLLOUT_FILE = "rollout.json"
_HASH_SPACE = float(2**64)


class RolloutState(BaseModel):
    """A candidate version served beside the champion."""

    candidate_version: str
    champion_version: str
    mode: Literal["shadow", "canary"]
    step: int = Field(default=0, ge=0, description="index into `serving.canary_steps` (0 for shadow)")
    fraction: float = Field(default=0.0, ge=0.0, le=1.0, description="share of rows the candidate answers")
    started_at: datetime
    started_batch: str | None = None
    metric: str | None = Field(
        default=None,
        description="the metric the candidate passed the model gate on; the online gate judges on it "
        "(None: `gates.model.primary_metric`)",
    )


def read_rollout(ws: Workspace) -> RolloutState | None:
    """The rollout in progress, or None."""
    path = ws.run / ROLLOUT_FILE
    try:
        return RolloutState.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def write_rollout(ws: Workspace, state: RolloutState) -> None:
    """Record the rollout in progress (replaces the previous record atomically)."""
    write_json_atomic(ws.run / ROLLOUT_FILE, state.model_dump(mode="json"))


def clear_rollout(ws: Workspace) -> None:
    """Forget the rollout: no candidate is served any more."""
    (ws.run / ROLLOUT_FILE).unlink(missing_ok=True)


def routes_to_candidate(row_id: object, fraction: float) -> bool:
    """Whether the candidate answers this row: a stable hash of the id's text, the same in every process."""
    if fraction <= 0.0:
        return False
    if fraction >= 1.0:
        return True
    digest = hashlib.blake2b(str(row_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE < fraction
