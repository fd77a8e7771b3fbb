"""The record of a human approval decision, kept like a promotion: an entry in the workspace's audit log
(`audit/promotions.jsonl`, with who and why), the decision's tags on the version's run, and the decision
as the version's `ctcd.rollout` line (one of the six version tags; a promotion that follows replaces it).

A rejected version keeps its `challenger` alias; an approved one is then promoted by the caller (that move
is recorded by `Registry.promote` as usual).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ctcd.audit import append_move
from ctcd.mlflow_connection import answered
from ctcd.registry import CHALLENGER, ModelRef, Registry

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace


def record_approval(
    cfg: CtcdConfig,
    ws: Workspace,
    ref: ModelRef,
    approved: bool,
    actor: str,
    reason: str,
    tags: dict[str, str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tag the version's run with `tags`, show the decision on the version and append it to the audit log;
    return the entry."""
    reg = Registry.open(cfg, ws)
    client = reg.client
    if ref.run_id:
        run_id = ref.run_id
        for key, value in tags.items():
            answered(lambda k=key, v=value: client.set_tag(run_id, k, v), "MLflow")
    reg.record_rollout(ref, "; ".join(tags.values()) or ("approved" if approved else "rejected"))
    entry = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": reg.model_name,
        "alias": CHALLENGER,
        "version": ref.version,
        "previous": None,
        "action": "approve" if approved else "reject",
        "reason": reason,
        "actor": actor,
        **(extra or {}),
    }
    append_move(ws, entry)
    return entry
