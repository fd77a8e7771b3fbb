"""Evidently seam: per-column drift tests, and the HTML report people look at.

The only module that imports evidently. Two paths share the same methods and thresholds:
`column_drift` runs Evidently's statistical tests directly (what the retraining policy needs, close to
the cost of raw scipy), and `build_report` runs a full Evidently `Report` whose HTML (4-5 MB, plots
included) is rendered only when a report is kept.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

ColumnKind = Literal["numerical", "categorical"]
REPORT_PREFIX = "drift-"


class ColumnDrift(BaseModel):
    """The verdict of one Evidently drift test on one column."""

    model_config = ConfigDict(frozen=True)

    column: str
    kind: ColumnKind
    method: str
    threshold: float
    score: float
    drifted: bool


def column_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, ColumnKind],
    methods: dict[ColumnKind, str | None],
    thresholds: dict[str, float | None],
) -> list[ColumnDrift]:
    """Run Evidently's drift test on each column (method per kind; None lets Evidently choose by size).

    Gate on `drifted`: depending on the method the score is a distance (drift when above the threshold)
    or a p-value (drift when below it). Infinite and missing values are dropped, as Evidently does.
    """
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError
    from evidently.legacy.core import ColumnType

    from ctcd.errors import ConfigError

    results: list[ColumnDrift] = []
    for column, kind in columns.items():
        ref = _finite(reference[column])
        cur = _finite(current[column])
        if ref.empty or cur.empty:
            continue
        column_type = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
        try:
            test = get_stattest(ref, cur, column_type, methods.get(kind))
        except (StatTestNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"drift.{kind}_method {methods.get(kind)!r} cannot test {kind} column {column!r}: {exc}; "
                "use an Evidently drift method such as wasserstein, jensenshannon, ks, psi, or auto"
            ) from exc
        outcome = test(ref, cur, column_type, thresholds.get(column))
        results.append(
            ColumnDrift(
                column=column,
                kind=kind,
                method=test.name,
                threshold=float(outcome.actual_threshold),
                score=float(outcome.drift_score),
                drifted=bool(outcome.drifted),
            )
        )
    return results


def _finite(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values):
        return values.replace([float("inf"), float("-inf")], float("nan")).dropna()
    return values.dropna()


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, ColumnKind],
    methods: dict[ColumnKind, str | None],
    thresholds: dict[str, float | None],
    drift_share: float,
    extra: dict[str, tuple[ColumnKind, str | None, float | None]] | None = None,
) -> Snapshot:
    """Run Evidently's data drift preset on the feature columns, plus one ValueDrift per `extra` column.

    `extra` maps a column (e.g. the model's probability or the target) to (kind, method, threshold).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    extra = {c: spec for c, spec in (extra or {}).items() if c in reference and c in current}
    kinds = {**columns, **{c: kind for c, (kind, _, _) in extra.items()}}
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numerical"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    used = list(kinds)
    per_column_method = {c: methods[k] for c, k in columns.items() if methods.get(k)}
    per_column_threshold = {c: t for c, t in thresholds.items() if c in columns and t is not None}
    metrics: list[Any] = [
        DataDriftPreset(
            columns=list(columns),
            drift_share=drift_share,
            per_column_method=per_column_method or None,
            per_column_threshold=per_column_threshold or None,
        )
    ]
    metrics += [ValueDrift(column=c, method=method, threshold=t) for c, (_, method, t) in extra.items()]
    report = Report(metrics, include_tests=True)
    return report.run(
        current_data=Dataset.from_pandas(current[used].reset_index(drop=True), data_definition=definition),
        reference_data=Dataset.from_pandas(
            reference[used].reset_index(drop=True), data_definition=definition
        ),
    )


def report_summary(snapshot: Snapshot) -> dict[str, Any]:
    """The report's compact JSON summary: each metric's value and each test's status."""
    raw = json.loads(snapshot.json())
    metrics = [{"metric": m.get("metric_name"), "value": m.get("value")} for m in raw["metrics"] if m]
    tests = [{"test": t.get("name"), "status": t.get("status")} for t in raw["tests"]]
    return {"metrics": metrics, "tests": tests}


def save_report(snapshot: Snapshot, directory: Path, stamp: datetime, keep: int) -> Path:
    """Write the report's HTML to `directory` and delete the oldest reports beyond `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{REPORT_PREFIX}{stamp.strftime('%Y%m%dT%H%M%S%f')}.html"
    snapshot.save_html(str(path))
    prune_reports(directory, keep)
    return path


def prune_reports(directory: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest drift reports in `directory`; return what was deleted."""
    reports = sorted(directory.glob(f"{REPORT_PREFIX}*.html"), key=lambda p: p.name)
    stale = reports[: max(len(reports) - keep, 0)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
