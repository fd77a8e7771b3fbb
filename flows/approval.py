"""Prefect wiring of the human approval (`gates.model.approval: manual`): the training flow run pauses with a
typed form (`ApprovalInput`) until `ctcd approve` / `ctcd reject` or the Prefect UI resumes it.

The pause is in-process (`pause_flow_run`): the flow's process waits, polling the server, and goes on where
it stopped. The decision's logic is `tasks/approval.py`; its record, `ctcd/approvals.py`.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.states import Running
from prefect.tasks import exponential_backoff

from ctcd import approvals, events, registry
from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace
from tasks import approval

POLL_SECONDS = 5


class ApprovalInput(RunInput):
    """What a person answers: approve or not, why, and who they are."""

    approve: bool
    reason: str = ""
    actor: str = ""


def _tag_run(flow_run_id: object, tags: list[str]) -> None:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)  # type: ignore[arg-type]
        client.update_flow_run(flow_run_id, tags=sorted({*run.tags, *tags}))  # type: ignore[arg-type]


def await_approval(
    cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, gate_summary: str
) -> approval.ApprovalDecision:
    """Pause this flow run until a person decides on `ref` (or the time-out, a rejection)."""
    logger = get_run_logger()
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("await_approval runs inside a flow run")
    model, version, timeout = ref.name, ref.version, cfg.gates.model.approval_timeout_s
    _tag_run(context.flow_run.id, approval.run_tags(model, version))
    events.emit_alert(
        cfg,
        "approval-needed",
        f"version {version} of {model} passed the model gate and waits for approval: "
        f"ctcd approve {version} / ctcd reject {version} --reason TEXT",
        {"model": model, "version": version, "flow_run_id": str(context.flow_run.id), "gate": gate_summary},
        f"{model}-{version}",
        ws=ws,
    )
    logger.info(
        "version %s waits for approval (up to %s s): `ctcd approve %s` or `ctcd reject %s --reason TEXT`",
        version,
        timeout,
        version,
        version,
    )
    form = ApprovalInput.with_initial_data(
        description=approval.prompt(model, version, gate_summary), approve=False, reason="", actor=""
    )
    try:
        answer = pause_flow_run(
            wait_for_input=form,
            timeout=timeout,
            poll_interval=min(POLL_SECONDS, timeout),
            key=approval.pause_key(model, version),
        )
    except FlowPauseTimeout:
        # The server fails a pause that expired; the run goes on (to record the rejection and report).
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(context.flow_run.id, Running(), force=True)
        decision = approval.timed_out(model, version, timeout)
    else:
        decision = approval.decided(model, version, answer.approve, answer.actor, answer.reason)
    logger.info("approval: %s", decision.summary())
    return decision


@task(
    name="record-approval",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
)
def record_approval(
    cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, decision: approval.ApprovalDecision
) -> None:
    """Record the decision like a promotion: the audit log entry and the version's tag."""
    approvals.record_approval(
        cfg,
        ws,
        ref,
        decision.approved,
        decision.actor,
        decision.reason,
        approval.version_tag(decision),
        {"timed_out": True} if decision.timed_out else None,
    )
