"""Delivery's record and decisions: what a delivery did (`DeliveryReport`), the version to fall back to,
and the report as markdown. No I/O and no Prefect: `flows/delivery.py` wires the steps of
`ctcd/serving/deploy.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel

from ctcd.serving.deploy import SmokeResult


class DeliveryReport(BaseModel):
    """What the delivery did, for the pipeline, the CLI and the Prefect artifact."""

    status: Literal["deployed", "rolled_back", "failed"]
    version: str
    previous_version: str | None
    live_url: str
    live_switched: bool = False
    server_started: bool = False
    bento_tag: str | None = None
    smoke: SmokeResult
    message: str
    rollout: str | None = None
    """"shadow" or "canary": the version started a rollout beside the champion rather than replacing it."""

    def summary(self) -> str:
        """One line: the version, the outcome and what it means (the delivery flow run's outcome)."""
        return f"delivery v{self.version}: {self.status.replace('_', ' ')}; {self.message}"


def previous_version(
    alias_history: Iterable[Mapping[str, Any]], live: Mapping[str, Any] | None, target: str
) -> str | None:
    """The version to fall back to: what the live server serves, else the champion before `target` (from
    the registry's alias history, oldest first)."""
    if live and live.get("version") and live["version"] != target:
        return str(live["version"])
    for entry in reversed(list(alias_history)):
        if entry["version"] == target and entry.get("previous") and entry["previous"] != target:
            return str(entry["previous"])
    return None


def delivery_markdown(report: DeliveryReport) -> str:
    """The delivery's Prefect artifact: a table of what happened, and its message."""
    smoke = report.smoke
    diff = "n/a" if smoke.max_abs_difference is None else f"{smoke.max_abs_difference:.2e}"
    return "\n".join(
        [
            f"## Delivery: {report.status}",
            "",
            "| | |",
            "|---|---|",
            f"| version | {report.version} |",
            f"| previous | {report.previous_version or '-'} |",
            f"| smoke test | {'passed' if smoke.passed else 'FAILED'} on {smoke.rows} rows "
            f"(max diff {diff}) |",
            f"| live server | {report.live_url} (switched: {report.live_switched}, "
            f"started: {report.server_started}) |",
            f"| bento | {report.bento_tag or '-'} |",
            f"| rollout | {report.rollout or '-'} |",
            "",
            report.message,
        ]
    )
