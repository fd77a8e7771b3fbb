"""The human approval of a blessed candidate (`gates.model.approval: manual`): what the paused training run
is found by, what a decision says, and how it reads in the promotion reason.

Plain functions and a record, no I/O and no Prefect: `flows/approval.py` pauses the run and records the
decision (`ctcd/approvals.py`), `ctcd approve` / `ctcd reject` resume it.
"""

from __future__ import annotations

from pydantic import BaseModel

from ctcd.config import CtcdConfig

TIMEOUT_ACTOR = "ctcd-timeout"


class ApprovalDecision(BaseModel):
    """A person's (or the time-out's) decision on one blessed model version."""

    model: str
    version: str
    approved: bool
    actor: str
    reason: str
    timed_out: bool = False

    def verdict(self) -> str:
        verb = "approved" if self.approved else "rejected"
        return f"{verb} by {self.actor}" + (f": {self.reason}" if self.reason else "")

    def summary(self) -> str:
        return f"version {self.version} {self.verdict()}"


def needs_approval(cfg: CtcdConfig, blessed: bool) -> bool:
    """Whether a gate verdict waits for a person: only a blessed candidate, only with `approval: manual`."""
    return blessed and cfg.gates.model.approval == "manual"


def run_tags(model: str, version: str) -> list[str]:
    """The tags a paused training run carries, so `ctcd approve VERSION` finds the run waiting for it."""
    return [f"ctcd.model:{model}", f"ctcd.version:{version}"]


def pause_key(model: str, version: str) -> str:
    """The pause key of the approval of `version` (one approval pause per version and run)."""
    return f"ctcd-approval-{model}-{version}"


def prompt(model: str, version: str, gate_summary: str) -> str:
    """The Markdown the Prefect UI shows above the approval form."""
    return (
        f"**Approve version {version} of `{model}`?**\n\n"
        f"Model gate: {gate_summary}\n\n"
        f"Approve to promote it (or start its rollout); reject to keep the champion. "
        f"From a shell: `ctcd approve {version}` or `ctcd reject {version} --reason TEXT`."
    )


def decided(model: str, version: str, approve: bool, actor: str, reason: str) -> ApprovalDecision:
    """The decision a person sent (an empty actor reads as `unknown`)."""
    return ApprovalDecision(
        model=model,
        version=version,
        approved=approve,
        actor=actor.strip() or "unknown",
        reason=reason.strip(),
    )


def timed_out(model: str, version: str, timeout_s: int) -> ApprovalDecision:
    """No decision within the time-out: a rejection, with that reason."""
    return ApprovalDecision(
        model=model,
        version=version,
        approved=False,
        actor=TIMEOUT_ACTOR,
        reason=f"no decision within {timeout_s} s (gates.model.approval_timeout_s)",
        timed_out=True,
    )


def promotion_reason(reason: str, decision: ApprovalDecision) -> str:
    """The promotion reason of an approved version: the gate's reason, then who approved it and why."""
    return f"{reason}; {decision.verdict()}"


def version_tag(decision: ApprovalDecision) -> dict[str, str]:
    """The one MLflow tag that records the decision on the version."""
    return {"ctcd.approval": decision.verdict()}
