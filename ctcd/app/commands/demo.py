"""CLI commands: `ctcd demo`, the whole CT/CD loop on the built-in drifting stream."""

from __future__ import annotations

from pathlib import Path

import typer

from ctcd.app.commands import options


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command()
    def demo(
        config: Path | None = options.ConfigOption,
        days: int | None = typer.Option(
            None,
            "--days",
            min=3,
            help="Simulated days to replay [default: through the first day served by the model retrained "
            "after the scenario's last drift: 22 of the default's 30].",
        ),
        rows_per_day: int | None = typer.Option(None, "--rows-per-day", min=100, help="Applications a day."),
        fast: bool = typer.Option(False, "--fast", help="A one-candidate search with fewer trees."),
        verbose: bool = typer.Option(False, "--verbose", help="Also print Prefect's per-run log lines."),
        keep_running: bool = typer.Option(
            False, "--keep-running", help="Leave the stack up afterwards to browse the UIs (stop: ctcd down)."
        ),
    ) -> None:
        """Replay the drifting scenario through the real stack, one simulated day at a time.

        Each day: live traffic is scored by the BentoML server and logged, the day's batch lands and
        passes (or fails) the data gate, the monitor compares live data with the champion's reference,
        and a drift verdict becomes a Prefect event that starts the retrain deployment on the GPU pool
        (train, gate, promote, smoke test, zero-downtime reload). The weekly training schedule runs on
        the simulated calendar. An existing workspace is moved aside first, never deleted.
        """
        from ctcd import settings
        from ctcd.app.demo import DemoOptions, run_demo
        from ctcd.config import load_config
        from ctcd.workspace import Workspace

        if not verbose:
            settings.quiet_console()
        load_config(config)  # fail fast on a bad config, before moving anything
        ws = Workspace(Workspace.open().root)
        summary = run_demo(
            config,
            ws,
            DemoOptions(days=days, rows_per_day=rows_per_day, fast=fast, keep_running=keep_running),
            typer.echo,
        )
        typer.echo("")
        typer.echo(f"done in {summary['seconds']} s over {summary['days']} simulated days")
        typer.echo(f"model versions: {', '.join(summary['versions'])}; champion: v{summary['champion']}")
        for p in summary["promotions"]:
            typer.echo(f"  champion -> v{p['version']} (from v{p['previous'] or '-'}): {p['reason'][:110]}")
        typer.echo(f"quarantined batches: {', '.join(summary['quarantined']) or 'none'}")
        typer.echo(f"mean live accuracy: {summary['mean_live_accuracy']}")
        typer.echo(f"timeline: {summary['timeline']['png']} and {summary['timeline']['html']}")
        root = summary["workspace"]
        typer.echo("where to look next:")
        typer.echo(f"  CTCD_HOME={root} ctcd up          # Prefect UI (runs, artifacts) and MLflow UI again")
        typer.echo(f"  PREFECT_HOME={root}/prefect prefect server start")
        typer.echo(f"  mlflow ui --backend-store-uri sqlite:///{root}/mlflow/mlflow.db")
        typer.echo(f"  CTCD_HOME={root} ctcd status     # champion, challenger, decisions")
