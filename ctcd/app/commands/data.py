"""CLI commands: data (`dataset.source` or the built-in drifting stream: generate, land, status)."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ctcd.app.commands import options

if TYPE_CHECKING:
    from ctcd.config import CtcdConfig
    from ctcd.stream.landing import LandingReport
    from ctcd.workspace import Workspace

data_app = typer.Typer(
    help=(
        "Your batches from `dataset.source` (files, one split file, SQL), or the built-in data stream: daily "
        "Agrawal loan applications with scheduled drifts (the `stream` section), landed into the workspace "
        "as they would arrive in production."
    ),
    no_args_is_help=True,
)


def _parse_day(value: str) -> date:
    from ctcd.errors import UsageError

    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError as exc:
        raise UsageError(f"--through expects a date as YYYY-MM-DD, got {value!r}") from exc


def _print_landing(report: LandingReport, ws: Workspace) -> None:
    """One summary line of what was landed."""
    typer.echo(
        f"landed {len(report.features_landed)} feature batch(es) into {ws.landing} and "
        f"{len(report.labels_landed)} label file(s) into {ws.labels} (through {report.through}; "
        f"{report.features_already_there} already landed, {len(report.features_pending)} batch(es) and "
        f"{len(report.labels_pending)} label file(s) not due yet)"
    )


@data_app.command("generate")
def generate(
    days: int | None = typer.Option(None, "--days", min=1, help="Days to generate (default: stream.days)."),
    rows_per_day: int | None = typer.Option(
        None, "--rows-per-day", min=10, help="Rows per daily batch (default: stream.rows_per_day)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Stream seed (default: stream.seed)."),
    land: bool = typer.Option(
        True,
        "--land/--no-land",
        help="Also land everything due as of the last generated day into landing/ and labels/.",
    ),
    config: Path | None = options.ConfigOption,
) -> None:
    """Write the daily batches (features and delayed labels, Parquet) to $CTCD_HOME/stream."""
    from ctcd.config import StreamConfig
    from ctcd.stream.landing import StreamEntry, generate_stream, land_due, stream_dir
    from ctcd.stream.scenario import describe_event, stream_config

    cfg, ws = options.load(config)
    if _pulls_from_source(cfg):
        from ctcd.errors import UsageError

        raise UsageError(
            f"dataset.source is a {cfg.dataset.source.kind} source: `ctcd data land` pulls its batches "
            "(`generate` writes the built-in stream)"
        )
    base = stream_config(cfg)
    overrides = {k: v for k, v in {"rows_per_day": rows_per_day, "seed": seed}.items() if v is not None}
    if overrides:
        cfg = cfg.model_copy(
            update={"stream": StreamConfig.model_validate({**base.model_dump(), **overrides})}
        )
    stream = stream_config(cfg)
    n_days = days or stream.days
    typer.echo(
        f"generating {n_days} day(s) x {stream.rows_per_day} rows (Agrawal, seed {stream.seed}, "
        f"function {stream.function}) into {stream_dir(ws)}"
    )
    target, positive = cfg.dataset.target, cfg.dataset.positive_label

    def progress(entry: StreamEntry) -> None:
        events = ", ".join(describe_event(ev) for ev in entry.events) or "-"
        typer.echo(
            f"  {entry.batch_id}  day {entry.day:>3}  {entry.rows:>7} rows  "
            f"{target}={positive} {entry.positive_rate:6.1%}  function {entry.function}  {events}"
        )

    entries = generate_stream(cfg, ws, days=n_days, on_batch=progress)
    typer.echo(f"wrote {len(entries)} batch(es) and {stream_dir(ws) / 'manifest.json'}")
    if land:
        from ctcd.batches import ingest_lock

        with ingest_lock(ws):
            landing = land_due(cfg, ws, entries[-1].date)
        _print_landing(landing, ws)
    else:
        typer.echo("nothing landed (--no-land): run `ctcd data land --through YYYY-MM-DD`")


def _pulls_from_source(cfg: CtcdConfig) -> bool:
    source = cfg.dataset.source
    return source is not None and source.kind != "stream"


@data_app.command("land")
def land(
    through: str | None = options.through_option("Land"),
    config: Path | None = options.ConfigOption,
) -> None:
    """Copy new batches (ids up to --through) into landing/, and the labels that have arrived."""
    from ctcd.batches import ingest_lock
    from ctcd.errors import UsageError
    from ctcd.stream.landing import land_due, read_manifest, stream_dir
    from ctcd.stream.scenario import stream_config

    cfg, ws = options.load(config)
    if _pulls_from_source(cfg):
        from ctcd.sources import pull

        with ingest_lock(ws):
            pulled = pull(cfg, ws, through)
        _echo_landed(pulled.landed, pulled.labels_landed)
        typer.echo(
            f"landed {len(pulled.landed)} batch(es) into {ws.landing} and {len(pulled.labels_landed)} "
            f"label file(s) into {ws.labels} (through {through or 'the last batch'}; "
            f"{pulled.already_there} already landed, {len(pulled.not_yet)} batch(es) after --through, "
            f"labels of {len(pulled.labels_pending)} batch(es) not due yet)"
        )
        return
    day = _parse_day(through) if through else None
    stream_config(cfg)
    manifest = read_manifest(ws)
    if manifest is None or not manifest.batches:
        raise UsageError(f"no generated stream in {stream_dir(ws)}: run `ctcd data generate` first")
    today = day or manifest.batches[-1].date
    with ingest_lock(ws):
        report = land_due(cfg, ws, today)
    _echo_landed(report.features_landed, report.labels_landed)
    _print_landing(report, ws)


def _echo_landed(features: list[str], labels: list[str]) -> None:
    for batch_id in features:
        typer.echo(f"  landed features {batch_id}")
    for batch_id in labels:
        typer.echo(f"  landed labels   {batch_id}")


@data_app.command("status")
def status(
    as_json: bool = options.JsonOption,
    config: Path | None = options.ConfigOption,
) -> None:
    """Show every batch and where it is: at the source (or stream), landing, validated or quarantine."""
    from ctcd.stream.landing import stream_status

    cfg, ws = options.load(config)
    if (cfg.dataset.source is None and cfg.stream is None) or _pulls_from_source(cfg):
        _source_status(cfg, ws, as_json)
        return
    report = stream_status(ws)
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
        return
    counts = ", ".join(f"{name} {n}" for name, n in report.files.items())
    if not report.generated:
        typer.echo(f"no generated stream in {report.stream_dir} (run `ctcd data generate`); files: {counts}")
        return
    typer.echo(f"stream: {len(report.batches)} batch(es) in {report.stream_dir}; files: {counts}")
    typer.echo(f"  {'batch':<10}  {'day':>3}  {'features at':<11}  labels  events")
    for b in report.batches:
        labels = "yes" if b.labels_landed else "no"
        typer.echo(
            f"  {b.batch_id:<10}  {b.day:>3}  {b.features_at:<11}  {labels:<6}  {', '.join(b.events) or '-'}"
        )


def _source_status(cfg: CtcdConfig, ws: Workspace, as_json: bool) -> None:
    """`ctcd data status` for `dataset.source`, or for files landed by hand when there is none."""
    from ctcd.sources import source_status

    report = source_status(cfg, ws)
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
        return
    counts = {place: sum(b.at == place for b in report.batches) for place in ("source", "landing")}
    counts |= {place: sum(b.at == place for b in report.batches) for place in ("validated", "quarantine")}
    summary = ", ".join(f"{name} {n}" for name, n in counts.items())
    labelled = sum(b.labels for b in report.batches)
    if report.kind == "landing":
        typer.echo(
            f"no dataset.source configured: batches are the files landed in {report.location}; "
            f"{len(report.batches)} batch(es) ({summary}), labels for {labelled}"
        )
    else:
        typer.echo(
            f"source ({report.kind}): {report.location}; {len(report.batches)} batch(es) ({summary}), "
            f"labels for {labelled}"
        )
    if report.batches:
        width = max(10, *(len(b.batch_id) for b in report.batches))
        typer.echo(f"  {'batch':<{width}}  {'at':<10}  labels")
        for b in report.batches:
            typer.echo(f"  {b.batch_id:<{width}}  {b.at:<10}  {'yes' if b.labels else 'no'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.add_typer(data_app, name="data")
