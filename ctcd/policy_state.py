"""The retraining policy's memory: the append-only decision log of monitoring, `audit/monitoring.jsonl`.

One JSON line per monitoring run: its decision and the policy's state after it. This module stores and
finds entries; what a state means is `tasks/policy.py`'s (`PolicyState`), and what an entry holds is
`tasks/monitoring.py:decision_entry`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctcd.cadence import Timeline
from ctcd.workspace import Workspace


def decision_log(ws: Workspace) -> Path:
    """The append-only log of monitoring decisions (the policy's memory)."""
    return ws.audit / "monitoring.jsonl"


def read_state(ws: Workspace, timeline: Timeline, batch: str) -> dict[str, Any] | None:
    """The policy state (as logged) after the latest logged run of `batch` or before (a replay may restart
    earlier); None before the first run."""
    path = decision_log(ws)
    if not path.exists():
        return None
    state = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        logged = str(entry.get("batch", entry.get("today")))  # `today`: logs written before batches
        if (timeline.batches_between(logged, batch) or 0) >= 0:
            state = entry["state"]
    return state


def append_decision(ws: Workspace, entry: dict[str, Any]) -> None:
    """Append one run's entry (its decision and the policy's new state) to the decision log."""
    with decision_log(ws).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
