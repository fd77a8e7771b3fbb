"""CLI commands: validation (`ctcd validate`, `ctcd suite init`, `ctcd batch list|show|release`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ctcd.app.commands.options import ConfigOption, JsonOption, load

suite_app = typer.Typer(
    help="Expectation suites: the data contract, reviewed like code.", no_args_is_help=True
)
batch_app = typer.Typer(help="Validated and quarantined batches.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("validate")(validate)
    app.add_typer(suite_app, name="suite")
    app.add_typer(batch_app, name="batch")


def validate(
    paths: list[Path] = typer.Argument(
        ..., help="Batch files (.parquet or .csv); the file stem is the batch id."
    ),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Run the data gate on batch files, moving each to validated/ or quarantine/; exit 1 on a rejection."""
    from ctcd.batches import ingest_lock
    from ctcd.errors import BatchRejected, UsageError
    from tasks.ingest import judge_batch_file, open_data_gate
    from tasks.validation import failure_lines

    cfg, ws = load(config)
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path} is not a file")
        if path.resolve().parent in (ws.validated.resolve(), ws.quarantine.resolve()):
            raise UsageError(f"{path} was already judged: use `ctcd batch show` or `ctcd batch release`")
    with ingest_lock(ws):  # the gate's GX project and the data areas: one writer at a time
        gate = open_data_gate(cfg, ws)
        records = [judge_batch_file(cfg, ws, path, gate) for path in paths]
        gate.publish_docs()
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json", exclude={"result"}) for r in records], indent=2))
    else:
        for r in records:
            typer.echo(f"{r.batch_id}: {r.status} -> {r.path(ws)}")
            typer.echo(f"  {r.reason}")
            for line in failure_lines(r.batch_id, [*r.failures, *r.warnings]):
                typer.echo(f"  {line}")
            if r.data_docs:
                typer.echo(f"  data docs: {r.data_docs}")
    rejected = [r.batch_id for r in records if r.status != "validated"]
    if rejected:
        raise BatchRejected(
            f"{len(rejected)} of {len(records)} batch(es) rejected and quarantined: {', '.join(rejected)} "
            "(see `ctcd batch show ID`)"
        )


@suite_app.command("init")
def suite_init(
    references: list[str] = typer.Option(
        ...,
        "--from",
        help="Trusted, clean batches to derive the suite from: repeat --from, or give a glob (quoted).",
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Where to write (default: gates.data.suite)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing, different suite file."),
    config: Path | None = ConfigOption,
) -> None:
    """Bootstrap an expectation suite from trusted batches: columns, types, nulls, ranges, categories."""
    from ctcd.batches import batch_id_of, read_batch
    from ctcd.errors import UsageError
    from ctcd.gx_gate import check_suite
    from tasks.suite import bootstrap_suite, dump_suite

    cfg, _ = load(config)
    paths = reference_paths(references)
    frames = [read_batch(path, cfg) for path in paths]
    ids = [batch_id_of(path) for path in paths]
    name = ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]} ({len(ids)} batches)"
    suite = bootstrap_suite(frames, cfg.dataset, cfg.gates.data, reference_name=name)
    target = output or cfg.gates.data.suite
    text = dump_suite(suite)
    check_suite(suite, where=str(target))
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        typer.echo(f"{target}: unchanged ({len(suite['expectations'])} expectations)")
        return
    if target.is_file() and not force:
        raise UsageError(f"{target} exists and differs: review it, then pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    critical = sum(1 for e in suite["expectations"] if e["severity"] == "critical")
    typer.echo(
        f"{target}: {len(suite['expectations'])} expectations ({critical} critical, "
        f"{len(suite['expectations']) - critical} warning) from {sum(map(len, frames))} rows of "
        f"{len(paths)} batch(es): {name}"
    )


def reference_paths(patterns: list[str]) -> list[Path]:
    """The files named by `--from` values (paths or globs), each once, in the order given (globs sorted)."""
    import glob

    from ctcd.errors import UsageError

    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matched = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
            if not matched:
                raise UsageError(f"--from {pattern!r} matches no file")
            found += matched
        elif Path(pattern).is_file():
            found.append(Path(pattern))
        else:
            raise UsageError(f"{pattern} is not a file")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique]


@batch_app.command("list")
def batch_list(
    status: str | None = typer.Option(None, "--status", help="Only `validated` or `quarantined` batches."),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """List validated and quarantined batches with their decision's reason."""
    from ctcd.batches import quarantined_batches, validated_batches
    from ctcd.errors import UsageError

    _, ws = load(config)
    if status not in (None, "validated", "quarantined"):
        raise UsageError(f"--status must be validated or quarantined (got {status!r})")
    records = []
    if status in (None, "validated"):
        records += validated_batches(ws)
    if status in (None, "quarantined"):
        records += quarantined_batches(ws)
    records.sort(key=lambda r: r.batch_id)
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json", exclude={"result"}) for r in records], indent=2))
        return
    if not records:
        typer.echo("no validated or quarantined batches yet")
        return
    for r in records:
        released = " (released)" if r.release else ""
        rows = "-" if r.rows is None else str(r.rows)
        typer.echo(f"{r.batch_id:<14} {r.status + released:<22} {rows:>8} rows  {r.reason}")


@batch_app.command("show")
def batch_show(
    batch_id: str = typer.Argument(..., help="The batch id (file stem)."),
    as_json: bool = JsonOption,
    config: Path | None = ConfigOption,
) -> None:
    """Show one batch's record: where it is, its hash, and every failed expectation."""
    from ctcd.batches import find_batch
    from tasks.validation import failure_lines

    _, ws = load(config)
    r = find_batch(ws, batch_id)
    if as_json:
        typer.echo(r.model_dump_json(indent=2))
        return
    typer.echo(f"{r.batch_id}: {r.status} at {r.path(ws)}")
    typer.echo(
        f"  sha256 {r.sha256}, {r.bytes} bytes, {'-' if r.rows is None else r.rows} rows, suite {r.suite}"
    )
    typer.echo(f"  {r.reason}")
    for line in failure_lines(r.batch_id, [*r.failures, *r.warnings]):
        typer.echo(f"  {line}")
    if r.release:
        how = "force-admitted" if r.release.forced else "re-validated"
        typer.echo(f"  {how} at {r.release.released_at:%Y-%m-%d %H:%M} UTC: {r.release.reason}")
        typer.echo(f"  (quarantined for: {r.release.quarantine_reason})")
    if r.data_docs:
        typer.echo(f"  data docs: {r.data_docs}")


@batch_app.command("release")
def batch_release(
    batch_id: str = typer.Argument(..., help="A quarantined batch id."),
    force: bool = typer.Option(False, "--force", help="Admit without re-validation (needs --reason)."),
    reason: str = typer.Option("", "--reason", help="Why a batch is force-admitted (recorded)."),
    config: Path | None = ConfigOption,
) -> None:
    """Re-validate a quarantined batch against the current suite, or force-admit it with a recorded reason."""
    from ctcd.batches import force_release
    from ctcd.errors import BatchRejected, UsageError
    from tasks.ingest import revalidate

    cfg, ws = load(config)
    if reason and not force:
        raise UsageError("--reason is for --force; without --force the batch is re-validated")
    record = force_release(ws, batch_id, reason) if force else revalidate(cfg, ws, batch_id)
    if record.status != "validated":
        raise BatchRejected(f"batch {batch_id} is still rejected and stays in quarantine: {record.reason}")
    typer.echo(f"{record.batch_id}: validated -> {record.path(ws)} ({record.reason})")
