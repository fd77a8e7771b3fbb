"""CLI commands: monitoring (`ctcd monitor`)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import typer

from ctcd.commands import options


def _parse_day(value: str | None) -> date | None:
    from ctcd.errors import UsageError

    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise UsageError(f"--today expects a date as YYYY-MM-DD, got {value!r}") from exc


def monitor(
    as_json: bool = options.JsonOption,
    today: str | None = typer.Option(
        None,
        "--today",
        help="Monitor as of this date, YYYY-MM-DD (default: today, UTC); replays simulated days.",
    ),
    config: Path | None = options.ConfigOption,
) -> None:
    """Run the monitoring flow once and print the verdict: retrain, alert or none.

    Compares the current window of logged predictions (and arrived labels) with the champion's reference.

    Keeps the Evidently report under $CTCD_HOME/reports; on `retrain` emits the drift event that triggers
    the training deployment.
    """
    day = _parse_day(today)
    cfg, _ = options.load(config)
    from ctcd.console import hide_expected_tracebacks
    from flows.monitoring import monitoring_flow, verdict_rows

    hide_expected_tracebacks()
    outcome = monitoring_flow(str(cfg.source) if cfg.source else None, day.isoformat() if day else None)
    if as_json:
        typer.echo(outcome.model_dump_json(indent=2))
        return
    d = outcome.decision
    typer.echo(f"{outcome.model} v{outcome.champion_version} on {outcome.today}: {d.action.upper()}")
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
