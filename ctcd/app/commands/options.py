"""Options shared by every command."""

from __future__ import annotations

from pathlib import Path

import typer

ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="Config file (default: configs/default.yaml of the ctcd checkout).",
    dir_okay=False,
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of text.")


def through_option(what: str):  # -> typer's OptionInfo
    """`--through BATCH_ID` (default: none, everything there); `what` says what stops at that id."""
    return typer.Option(
        None,
        "--through",
        help=f"{what} only batches up to this batch id (the stream: a date, YYYY-MM-DD); default: all.",
    )


def load(config: Path | None):  # -> CtcdConfig, Workspace
    """Load the config and open the workspace for a command."""
    from ctcd.config import load_config
    from ctcd.workspace import Workspace

    return load_config(config), Workspace.open()
