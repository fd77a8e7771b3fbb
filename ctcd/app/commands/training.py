"""CLI commands: training (`run`, `train`) and the registry's champion (`promote`, `rollback`, `status`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ctcd.app.commands import options

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.workspace import Workspace
    from tasks.training_run import TrainingReport


def _config_path(config: Path | None) -> str | None:
    return str(config) if config else None


def _print_training(report: TrainingReport) -> None:
    d = report.decision
    typer.echo(
        f"trained version {report.version} of {report.model_name!r} on {len(report.batches)} batch(es) "
        f"({report.batches[0]}..{report.batches[-1]}, rows {report.rows}) on {report.device} "
        f"in {report.seconds:.1f}s"
    )
    typer.echo(f"model gate: {d.summary()}")
    if report.promoted and report.baseline_version:
        typer.echo(
            f"champion: version {report.baseline_version}, the baseline "
            f"(was {report.previous_champion or 'none'}); version {report.version} stays the challenger"
        )
    elif report.promoted:
        typer.echo(f"champion: version {report.version} (was {report.previous_champion or 'none'})")
    else:
        typer.echo(
            f"champion unchanged: version {report.champion_version or 'none'}; "
            f"version {report.version} stays the challenger"
        )


def _training(config: Path | None, reason: str, window_start: str | None) -> TrainingReport:
    from ctcd.app.console import hide_expected_tracebacks
    from flows.training import training_flow

    hide_expected_tracebacks()
    return training_flow(_config_path(config), reason=reason, window_start=window_start)


def run(
    through: str | None = options.through_option("Land and validate"),
    config: Path | None = options.ConfigOption,
) -> None:
    """One CT cycle: ingest + validate new batches, then train, evaluate, gate, register and promote."""
    from ctcd.app.console import hide_expected_tracebacks
    from flows.ingest import ingest_flow

    hide_expected_tracebacks()
    options.load(config)  # fail fast on a bad config, before Prefect starts
    ingest = ingest_flow(_config_path(config), through=through)
    typer.echo(f"ingest: {len(ingest.accepted)} batch(es) validated, {len(ingest.rejected)} quarantined")
    _print_training(_training(config, "ctcd run", None))


def train(
    reason: str = typer.Option("manual", "--reason", help="Why this training runs (kept as a tag)."),
    window_start: str | None = typer.Option(
        None, "--window-start", help="Use no batch before this date or batch id."
    ),
    config: Path | None = options.ConfigOption,
) -> None:
    """Train on the validated window, register a challenger, gate it and promote it if blessed."""
    options.load(config)
    _print_training(_training(config, reason, window_start))


def promote(
    version: str = typer.Argument(..., help="The model version to make champion."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log and on the version)."),
    config: Path | None = options.ConfigOption,
) -> None:
    """Make VERSION the champion by hand; recorded with who, when and why."""
    from ctcd import registry

    cfg, ws = options.load(config)
    ref = registry.Registry(cfg, ws).version(version)
    gate = ref.tags.get("ctcd.gate")
    entry = registry.Registry(cfg, ws).promote(ref, reason, extra={"manual": True, "gate": gate})
    typer.echo(f"champion: version {entry['version']} (was {entry['previous'] or 'none'}); reason: {reason}")
    if gate != "passed":
        typer.secho(
            f"warning: version {version} did not pass the model gate ({ref.description or 'never judged'})",
            fg=typer.colors.YELLOW,
            err=True,
        )


def rollback(
    reason: str = typer.Option("rollback", "--reason", help="Why (kept in the audit log)."),
    config: Path | None = options.ConfigOption,
) -> None:
    """Move the champion back to the previous champion; recorded like a promotion."""
    from ctcd import registry
    from ctcd.app import stack

    cfg, ws = options.load(config)
    entry = registry.Registry(cfg, ws).rollback(reason)
    typer.echo(f"champion: version {entry['version']} (rolled back from {entry['from']}); reason: {reason}")
    summary = f"champion rolled back from version {entry['from']} to {entry['version']}: {reason}"
    episode = f"rollback:{entry['from']}->{entry['version']}@{entry['at']}"
    payload = {"version": entry["version"], "from": entry["from"], "reason": reason, "actor": entry["actor"]}
    stack.alert_from_cli(cfg, ws, "rollback", summary, payload, episode)


def status_record(cfg: CtcdConfig, ws: Workspace, decisions: int = 5) -> dict[str, Any]:
    """Champion, challenger, the last gate decisions and the last champion moves, as one dict."""
    from ctcd import audit, mlflow_connection, registry

    def describe(ref: registry.ModelRef | None) -> dict[str, Any] | None:
        if ref is None:
            return None
        t = ref.tags
        return {
            "version": ref.version,
            "run_id": ref.run_id,
            "created_at": ref.created_at.isoformat() if ref.created_at else None,
            "aliases": list(ref.aliases),
            "reason": t.get("ctcd.reason"),
            "window": t.get("ctcd.window"),
            "gate": t.get("ctcd.gate"),
            "delta": t.get("ctcd.delta"),
            "rollout": t.get("ctcd.rollout"),
            "description": ref.description,
        }

    all_versions = registry.Registry(cfg, ws).versions()
    return {
        "model": cfg.registered_model_name,
        "tracking_uri": mlflow_connection.tracking_uri(cfg, ws),
        "champion": describe(registry.Registry(cfg, ws).champion()),
        "challenger": describe(registry.Registry(cfg, ws).by_alias(registry.CHALLENGER)),
        "decisions": [describe(r) for r in all_versions[:decisions]],
        "history": audit.alias_history(ws, registry.CHAMPION)[-decisions:],
    }


def status(
    as_json: bool = options.JsonOption,
    config: Path | None = options.ConfigOption,
) -> None:
    """Show the champion, the challenger, the last gate decisions and the last champion moves."""
    cfg, ws = options.load(config)
    record = status_record(cfg, ws)
    if as_json:
        typer.echo(json.dumps(record, indent=2, default=str))
        return
    typer.echo(f"model {record['model']} ({record['tracking_uri']})")
    for role in ("champion", "challenger"):
        r = record[role]
        if r is None:
            typer.echo(f"{role}: none")
        else:
            gate = f"gate {r['gate']}: {r['delta']}" if r["gate"] else "not judged"
            typer.echo(f"{role}: version {r['version']} ({gate})")
    typer.echo("last decisions:")
    for r in record["decisions"]:
        typer.echo(f"  v{r['version']}: {r['description'] or 'no description'}")
    typer.echo("champion history:")
    for h in record["history"]:
        typer.echo(
            f"  {h['at']} v{h['previous'] or '-'} -> v{h['version']} by {h['actor']} "
            f"({h.get('action', 'promote')}): {h['reason']}"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("run")(run)
    app.command("train")(train)
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    app.command("status")(status)
