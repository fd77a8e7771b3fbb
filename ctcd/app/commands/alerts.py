"""CLI commands: the Prefect automations that send alerts (`ctcd alerts sync`, `ctcd alerts list`).

Both talk to PREFECT_API_URL when it is set (the compose stack's `deploy` job runs `ctcd alerts sync`),
else to the local stack `ctcd up` started.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ctcd.app.commands import options

if TYPE_CHECKING:
    from ctcd.alerts import AlertAutomation
    from ctcd.config import CtcdConfig

alerts_app = typer.Typer(
    help="The Prefect automations that send ctcd's alerts to the notification block `alerts.block`.",
    no_args_is_help=True,
)


def _print(cfg: CtcdConfig, api: str, automations: list[AlertAutomation], as_json: bool) -> None:
    if as_json:
        payload = {"prefect_api": api, "block": cfg.alerts.block, "alerts": [asdict(a) for a in automations]}
        typer.echo(json.dumps(payload, indent=2))
        return
    if not automations:
        typer.echo(
            f"alerts: off on {api} (set alerts.webhook_url, or make a notification block named "
            f"{cfg.alerts.block!r} in Prefect, then run `ctcd alerts sync`)"
        )
        return
    typer.echo(f"alert automations on {api} (to block {cfg.alerts.block}):")
    for a in automations:
        typer.echo(f"  {a.name:<44} {'enabled' if a.enabled else 'disabled'}")


@alerts_app.command("sync")
def sync(
    config: Path | None = options.ConfigOption,
    as_json: bool = options.JsonOption,
) -> None:
    """Create or update one automation per alert kind on the Prefect server, as `ctcd up` does.

    Idempotent: run it again after changing `alerts:` in the config or making the notification block.
    With `alerts.webhook_url` it also creates (or points) the Custom Webhook block `alerts.block`.
    """
    from ctcd.app import stack

    cfg, _ws = options.load(config)
    api = stack.prefect_api(cfg)
    _print(cfg, api, stack.sync_alerts(cfg, api), as_json)


@alerts_app.command("list")
def list_(
    config: Path | None = options.ConfigOption,
    as_json: bool = options.JsonOption,
) -> None:
    """Show this project's alert automations on the Prefect server (enabled or not)."""
    from ctcd import alerts
    from ctcd.app import stack

    cfg, _ws = options.load(config)
    api = stack.prefect_api(cfg)
    _print(cfg, api, alerts.list_alerts(cfg, api), as_json)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.add_typer(alerts_app, name="alerts")
