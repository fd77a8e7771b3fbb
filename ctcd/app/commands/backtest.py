"""CLI command: `ctcd backtest` (what would retraining policies have done on this history?)."""

from __future__ import annotations

from pathlib import Path

import typer

from ctcd.app.commands import options


def backtest(
    policies: str = typer.Option(
        "never,weekly,daily,ctcd",
        "--policies",
        help="Comma-separated: never, daily (every batch), weekly (every 7 daily batches), ctcd (the "
        "config's drift policy), every-K (every K batches); any of them with +shadow or +canary (e.g. "
        "ctcd+shadow): a candidate that passes the model gate goes to that rollout and the online gate "
        "promotes it on live labels.",
    ),
    history: str = typer.Option(
        "auto",
        "--history",
        help="auto (dataset.source if the config has one, else the built-in stream), stream, sea "
        "(river's SEA generator, 3 numeric features), source.",
    ),
    batches: int | None = typer.Option(
        None, "--batches", min=2, help="Replay this many batches (default: all)."
    ),
    rows_per_batch: int | None = typer.Option(
        None, "--rows-per-batch", min=10, help="Rows per generated batch (stream, sea)."
    ),
    warmup: int | None = typer.Option(
        None, "--warmup", min=1, help="The batch the first champion is trained on (default: 4)."
    ),
    metric: str = typer.Option(
        "accuracy",
        "--metric",
        help="What the table and targets judge: accuracy or the config's primary metric.",
    ),
    frontier: bool = typer.Option(
        True, "--frontier/--no-frontier", help="Also run never and every-1..8 (the frontier)."
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a config value, e.g. --set drift.accuracy_drop=0.03 (repeatable)."
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=0,
        help="XGBoost threads per fit unless the config sets model.params.n_jobs (0: XGBoost's default).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write backtest.json, timeline.png and timeline.html into this folder."
    ),
    json_out: bool = options.JsonOption,
    config: Path | None = options.ConfigOption,
) -> None:
    """Replay the config's history under retraining policies: metric, trainings, cost, promotions,
    recovery, the frontier of fixed schedules and PASS/FAIL targets. No MLflow, Prefect or servers."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ctcd.app import backtest as bt
    from ctcd.app import backtest_report as report
    from ctcd.config import load_config
    from ctcd.errors import UsageError

    if history not in ("auto", "stream", "sea", "source"):
        raise UsageError(f"--history {history!r}: use auto, stream, sea or source")
    cfg = bt.with_threads(bt.apply_overrides(load_config(config), overrides), threads)
    if metric not in ("accuracy", cfg.gates.model.primary_metric):
        raise UsageError(f"--metric {metric!r}: use accuracy or {cfg.gates.model.primary_metric}")
    try:
        names = bt.expand_policies(policies.split(","), frontier)
    except ValueError as exc:
        raise UsageError(f"--policies: {exc}") from exc
    scenario = bt.scenario_for(cfg, history, batches, rows_per_batch)  # type: ignore[arg-type]
    total = len(scenario.days) * len(names)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=json_out,
    ) as bar:
        task = bar.add_task("backtest", total=total)
        base = {p: i * len(scenario.days) for i, p in enumerate(names)}

        def progress(policy: str, day: int, message: str) -> None:
            bar.update(task, completed=base[policy] + day, description=f"{policy} batch {day}")

        result = bt.run_backtest(cfg, scenario, names, warmup, metric, progress=progress)
    if out is not None:
        written = [report.write_json(result, out), *report.write_plots(result, out)]
    if json_out:
        typer.echo(json.dumps(result.to_json(), default=str))
        return
    typer.echo(report.text_report(result))
    typer.echo(f"replayed {len(names)} policies in {result.seconds:.1f}s")
    if out is not None:
        typer.echo("wrote " + ", ".join(str(p) for p in written))


def register(app: typer.Typer) -> None:
    app.command("backtest")(backtest)
