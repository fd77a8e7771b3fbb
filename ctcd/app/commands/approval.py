"""CLI commands: the human approval of a blessed candidate (`ctcd approve`, `ctcd reject`).

With `gates.model.approval: manual` a training run whose candidate passed the model gate pauses (Paused in
the Prefect UI) until a person decides. These commands find the paused run waiting for VERSION on the
Prefect server (PREFECT_API_URL, the one the training runs report to) and resume it with the decision.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import typer

from ctcd.app.commands import options
from ctcd.errors import WorkFailed

VersionArgument = typer.Argument(..., help="The model version whose paused training run waits.")
ActorOption = typer.Option(
    None, "--actor", help="Who decides (kept in the audit log and on the version; default: your user name)."
)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def waiting_run(model: str, version: str) -> Any | None:
    """The paused training flow run waiting for the approval of `version` of `model` (None if none)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    from tasks import approval

    paused = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        tags=FlowRunFilterTags(all_=approval.run_tags(model, version)),
    )
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=paused, limit=5)
    key = approval.pause_key(model, version)
    runs = [r for r in runs if r.state and r.state.state_details.pause_key == key]
    return runs[0] if runs else None


def _decide(config: Path | None, version: str, approve: bool, reason: str, actor: str | None) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL

    cfg, _ = options.load(config)
    run = waiting_run(cfg.registered_model_name, version)
    if run is None:
        raise WorkFailed(
            f"no paused training run waits for the approval of version {version} of "
            f"{cfg.registered_model_name!r} on the Prefect server "
            f"{PREFECT_API_URL.value() or '(ephemeral)'}: check the version and PREFECT_API_URL"
        )
    who = actor or _user()
    try:
        resume_flow_run(run.id, run_input={"approve": approve, "reason": reason, "actor": who})
    except Exception as exc:  # not paused any more, timed out, or the input was refused
        raise WorkFailed(f"could not resume flow run {run.name} for version {version}: {exc}") from exc
    verb = "approved" if approve else "rejected"
    typer.echo(
        f"version {version} {verb} by {who}"
        + (f": {reason}" if reason else "")
        + f"; flow run {run.name} resumed"
    )


def approve(
    version: str = VersionArgument,
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit log and on the version)."),
    actor: str | None = ActorOption,
    config: Path | None = options.ConfigOption,
) -> None:
    """Approve VERSION: its paused training run resumes and promotes it (or starts its rollout).

    Needs `gates.model.approval: manual` and a training run Paused for VERSION (the Prefect UI shows it);
    exit 1 when nothing waits for VERSION.
    """
    _decide(config, version, True, reason, actor)


def reject(
    version: str = VersionArgument,
    reason: str = typer.Option(..., "--reason", help="Why not (required; kept in the audit log)."),
    actor: str | None = ActorOption,
    config: Path | None = options.ConfigOption,
) -> None:
    """Reject VERSION: its paused training run resumes without promoting it; it stays the challenger.

    Needs `gates.model.approval: manual` and a training run Paused for VERSION (the Prefect UI shows it);
    exit 1 when nothing waits for VERSION.
    """
    _decide(config, version, False, reason, actor)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("approve")(approve)
    app.command("reject")(reject)
