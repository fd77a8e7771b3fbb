"""CLI commands: monitoring (`ctcd monitor`)."""

from __future__ import annotations

from pathlib import Path

import typer

from ctcd.app.commands import options


def monitor(
    as_json: bool = options.JsonOption,
    batch: str | None = typer.Option(
        None,
        "--batch",
        "--today",
        help="Monitor this batch: its id (2026-01-08, 2026-W03, 2008-05) or a date or time inside it "
        "(default: the latest batch with logged predictions); replays simulated batches.",
    ),
    config: Path | None = options.ConfigOption,
) -> None:
    """Run the monitoring flow once and print the verdict: retrain, alert or none.

    Compares the current window of logged predictions (the last `drift.window_batches` batches, and the
    labels arrived for the look-back) with the champion's reference.

    Keeps the Evidently report under $CTCD_HOME/reports; on `retrain` emits the drift event that triggers
    the training deployment.
    """
    cfg, _ = options.load(config)
    from ctcd.app.console import hide_expected_tracebacks
    from flows.monitoring import monitoring_flow
    from tasks.monitoring import verdict_rows

    hide_expected_tracebacks()
    outcome = monitoring_flow(str(cfg.source) if cfg.source else None, batch)
    if as_json:
        typer.echo(outcome.model_dump_json(indent=2))
        return
    d = outcome.decision
    typer.echo(f"{outcome.model} v{outcome.champion_version} on batch {outcome.batch}: {d.action.upper()}")
    for name, status, text in verdict_rows(outcome.signals):
        typer.echo(f"  {name:<17} {status:<14} {text}")
    typer.echo(f"reason: {d.reason}")
    if d.window_start:
        typer.echo(f"retrain on data from: {d.window_start}")
    if outcome.report:
        typer.echo(f"report: {outcome.report}")
    if outcome.event_id:
        typer.echo(f"event: {outcome.event_id} (triggers the training deployment)")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("monitor")(monitor)
