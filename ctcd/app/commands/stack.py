"""CLI commands: the local stack (`ctcd up`, `ctcd down`, `ctcd stack status`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ctcd.app.commands import options

if TYPE_CHECKING:
    from ctcd.app.stack import ServiceStatus, StackReport

stack_app = typer.Typer(
    help="The local stack `ctcd up` started: Prefect server, workers, MLflow, the prediction server.",
    no_args_is_help=True,
)


def _service_line(s: ServiceStatus) -> str:
    where = s.url or ""
    pid = f"pid {s.pid}" if s.pid else ""
    return f"  {s.name:<22} {s.state:<10} {where:<28} {pid:<11} {s.detail}".rstrip()


def _print_report(report: StackReport, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "services": [asdict(s) for s in report.services],
                    "deployments": report.deployments,
                    "alerts": [asdict(a) for a in report.alerts],
                },
                indent=2,
            )
        )
        return
    for service in report.services:
        typer.echo(_service_line(service))
    if report.deployments:
        typer.echo("deployments: " + ", ".join(report.deployments))
    if report.alerts:
        typer.echo("alert automations:")
        for a in report.alerts:
            typer.echo(f"  {a.name:<44} {'enabled' if a.enabled else 'disabled'}")


def up(
    config: Path | None = options.ConfigOption,
    as_json: bool = options.JsonOption,
) -> None:
    """Start the local stack on 127.0.0.1 and wait until every service is healthy.

    Starts a Prefect server (SQLite in the workspace, or orchestration.prefect_database_url), creates the
    CPU and GPU work pools with one process worker each, starts the MLflow tracking server and UI, deploys
    deployments/prefect.yaml, and serves the champion with BentoML when there is one. Services that already
    run are reused. Logs go to $CTCD_HOME/logs/, PID files to $CTCD_HOME/run/; `ctcd down` stops it all.
    """
    from ctcd.app import stack

    cfg, ws = options.load(config)
    report = stack.up(cfg, ws, echo=(lambda _: None) if as_json else typer.echo)
    _print_report(report, as_json)
    if not as_json:
        typer.echo(f"logs: {ws.logs}    stop everything with: ctcd down")


def down(
    config: Path | None = options.ConfigOption,
    as_json: bool = options.JsonOption,
) -> None:
    """Stop every service `ctcd up` started in this workspace (and nothing else), newest first."""
    from ctcd.app import stack
    from ctcd.app.stack import StackReport

    _cfg, ws = options.load(config)
    stopped = stack.down(ws)
    if not stopped and not as_json:
        typer.echo(f"nothing to stop: no PID files in {ws.run}")
        return
    _print_report(StackReport(stopped, []), as_json)


@stack_app.command("status")
def status(
    config: Path | None = options.ConfigOption,
    as_json: bool = options.JsonOption,
) -> None:
    """Show each service of the local stack (running, stale PID file, stopped) and the deployments."""
    from ctcd.app import stack

    cfg, ws = options.load(config)
    _print_report(stack.status(cfg, ws), as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("up")(up)
    app.command("down")(down)
    app.add_typer(stack_app, name="stack")
