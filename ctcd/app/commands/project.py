"""CLI commands about the project itself: check the configuration and show the workspace."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ctcd.app.commands import options


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    config_app = typer.Typer(help="Check and show the configuration.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @config_app.command("check")
    def check(config: Path | None = options.ConfigOption) -> None:
        """Validate the config file (exit 2 with the file and key when it is invalid)."""
        cfg, ws = options.load(config)
        suite = cfg.gates.data.suite
        typer.echo(f"ok: {cfg.source} (dataset {cfg.dataset.name!r}, {len(cfg.dataset.features)} features)")
        typer.echo(f"workspace: {ws.root}")
        if not suite.exists():
            typer.echo(
                f"note: expectation suite {suite} does not exist yet: create it with `ctcd suite init`"
            )

    @config_app.command("show")
    def show(config: Path | None = options.ConfigOption) -> None:
        """Print the effective configuration, defaults filled in, as JSON."""
        cfg, _ = options.load(config)
        typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
