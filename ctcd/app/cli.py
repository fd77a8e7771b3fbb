"""The `ctcd` command line. Heavy libraries are imported inside commands so `--help` stays fast."""

from __future__ import annotations

import sys
import traceback

import typer

from ctcd import settings
from ctcd.app.commands import (
    alerts,
    approval,
    backtest,
    data,
    demo,
    monitoring,
    project,
    serving,
    stack,
    training,
    validation,
)
from ctcd.errors import CtcdError

app = typer.Typer(
    name="ctcd",
    help=(
        "Continuous training and delivery for tabular ML.\n\n"
        "Batches land, pass a Great Expectations gate, train XGBoost tracked in MLflow, are promoted "
        "through a champion/challenger gate, served by BentoML, and monitored with Evidently; drift "
        "triggers retraining through Prefect events.\n\n"
        "Run-time state lives under CTCD_HOME (default: ./.ctcd). Every command takes --config PATH "
        "(default: configs/default.yaml). Exit codes: 0 success, 1 the work failed, 2 bad usage or config."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
) -> None:
    if debug:
        settings.enable_debug()


for module in (
    project,
    data,
    validation,
    training,
    approval,
    serving,
    monitoring,
    stack,
    alerts,
    demo,
    backtest,
):
    module.register(app)


def main() -> None:
    """Entry point: typer handles usage errors (exit 2); ctcd errors become one line and their exit code."""
    try:
        app()
    except CtcdError as exc:
        if settings.debug_enabled():
            traceback.print_exc()
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        if settings.debug_enabled():
            traceback.print_exc()
        typer.secho(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        sys.exit(1)
