"""The promotion history MLflow lacks: the workspace's audit log of alias moves, and its champion lock.

Workspace files only, no MLflow call: `Registry.move_alias` (ctcd/registry.py) appends each move here, and
anyone holding just a workspace reads it back (`alias_history`, `champion_stack`).
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctcd.workspace import file_lock

if TYPE_CHECKING:
    from ctcd.workspace import Workspace

CHAMPION = "champion"
CHALLENGER = "challenger"
PROMOTION_LOCK_TIMEOUT = 600.0


@contextlib.contextmanager
def promotion_lock(ws: Workspace, timeout: float = PROMOTION_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the workspace's champion lock: one champion move at a time across processes on this machine."""
    with file_lock(ws.audit / "champion.lock", timeout, "another champion move"):
        yield


def _audit_file(ws: Workspace) -> Path:
    return ws.audit / "promotions.jsonl"


def append_move(ws: Workspace, entry: dict[str, Any]) -> None:
    """Append one alias move (a JSON object per line) to the workspace's audit log."""
    with _audit_file(ws).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def alias_history(ws: Workspace, alias: str | None = CHAMPION) -> list[dict[str, Any]]:
    """Every recorded alias move, oldest first (only `alias` when given)."""
    path = _audit_file(ws)
    if not path.exists():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in entries if alias is None or e["alias"] == alias]


def champion_stack(ws: Workspace) -> list[str]:
    """The champion versions in promotion order, with rolled-back ones removed (last = current)."""
    stack: list[str] = []
    for entry in alias_history(ws, CHAMPION):
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry["version"])
    return stack


def actor_name() -> str:
    """Who moves an alias when the caller does not say: the OS user."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
