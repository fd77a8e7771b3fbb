"""CLI commands: serving (`ctcd serve`, `ctcd deploy`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ctcd.app.commands import options


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("serve")
    def serve(
        config: Path | None = options.ConfigOption,
        port: int | None = typer.Option(None, "--port", "-p", help="Port (default: serving.port)."),
        host: str | None = typer.Option(
            None, "--host", help="Interface to bind (default: serving.host, 127.0.0.1). 0.0.0.0 exposes it."
        ),
    ) -> None:
        """Serve the champion with BentoML in the foreground until Ctrl-C (reloads on `ctcd deploy`)."""
        from ctcd import registry, settings
        from ctcd.serving.server import run_foreground

        cfg, ws = options.load(config)
        registry.Registry(cfg, ws).require_champion()
        port = port or cfg.serving.port
        host = host or cfg.serving.host
        if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key(cfg.serving.api_key_env):
            typer.secho(
                f"warning: serving on {host} with no API key: set {cfg.serving.api_key_env} to require one",
                fg=typer.colors.YELLOW,
                err=True,
            )
        typer.echo(f"serving {cfg.registered_model_name}@champion on http://{host}:{port} (Ctrl-C stops)")
        code = run_foreground(cfg, ws, port, host)
        if code not in (0, -2, 130, -15, 143):  # stopped by Ctrl-C or SIGTERM
            raise typer.Exit(code)

    @app.command("deploy")
    def deploy_command(
        config: Path | None = options.ConfigOption,
        version: str | None = typer.Option(None, "--version", help="Model version (default: the champion)."),
        start: bool = typer.Option(False, "--start", help="Start the live server if none runs."),
        build: bool = typer.Option(True, "--build/--no-build", help="Build the Bento first."),
        as_json: bool = options.JsonOption,
    ) -> None:
        """Smoke-test the champion in a second server, then switch the live server to it (or roll back)."""
        from ctcd.app.console import hide_expected_tracebacks
        from ctcd.errors import WorkFailed
        from flows.delivery import delivery_flow

        hide_expected_tracebacks()
        cfg, _ = options.load(config)
        report = delivery_flow(str(cfg.source), version=version, start_if_down=start, build=build)
        if as_json:
            typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
        else:
            typer.echo(f"{report.status}: {report.message}")
        if report.status != "deployed":
            raise WorkFailed(report.message)
