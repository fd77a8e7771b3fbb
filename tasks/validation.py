"""The data gate's decision as pure functions: judge a GX validation result by severity.

GX treats an expectation's `severity` as metadata only: `judge` turns a GX result (as a JSON dict) into a
`ValidationOutcome`, rejecting a batch when a `critical` expectation failed and passing it with warnings
otherwise. The suite it checks comes from `tasks.suite`; the records live in `ctcd.records`.
Nothing here imports great_expectations: these functions take dicts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ctcd.records import ExpectationFailure, ValidationOutcome, short_text

# The records are re-exported: callers that judge a batch read its outcome from here too.
__all__ = ["ExpectationFailure", "ValidationOutcome", "failure_lines", "judge", "unreadable"]

# Root causes first: a missing column or a changed type explains the failures that follow it.
_PRIORITY = {
    "expect_table_columns_to_match_set": 0,
    "expect_table_row_count_to_be_between": 1,
    "expect_column_values_to_be_in_type_list": 2,
    "expect_column_values_to_be_of_type": 2,
    "expect_column_values_to_not_be_null": 3,
    "expect_column_values_to_be_unique": 4,
    "expect_column_values_to_be_in_set": 5,
    "expect_column_values_to_be_between": 6,
}
_REASON_FAILURES = 3  # failures named in the one-line reason


# --------------------------------------------------------------------------- judging results


def judge(result: dict[str, Any], batch_id: str, rows: int | None = None) -> ValidationOutcome:
    """Decide on a batch from a GX suite validation result (its JSON dict): critical failures reject it."""
    failures: list[ExpectationFailure] = []
    for item in result.get("results", []):
        if item.get("success"):
            continue
        failures.append(_failure(item))
    failures.sort(key=lambda f: (_PRIORITY.get(f.expectation, 9), f.column or ""))
    critical = [f for f in failures if f.severity == "critical"]
    warnings = [f for f in failures if f.severity != "critical"]
    accepted = not critical
    return ValidationOutcome(
        batch_id=batch_id,
        suite=str(result.get("suite_name") or ""),
        accepted=accepted,
        gx_success=bool(result.get("success")),
        reason=_reason(critical, warnings),
        rows=rows,
        evaluated=int(result.get("statistics", {}).get("evaluated_expectations") or 0),
        failures=critical,
        warnings=warnings,
    )


def unreadable(batch_id: str, suite: str, why: str) -> ValidationOutcome:
    """The decision for a file that could not be read as a table: rejected, with the read error as reason."""
    return ValidationOutcome(
        batch_id=batch_id,
        suite=suite,
        accepted=False,
        gx_success=None,
        reason=f"rejected: unreadable: {why}",
    )


def failure_lines(batch_id: str, failures: Iterable[ExpectationFailure]) -> list[str]:
    """One line per failed expectation: severity, column, expectation, unexpected count/percent, observed."""
    lines = []
    for f in failures:
        count = "-" if f.unexpected_count is None else str(f.unexpected_count)
        pct = "" if f.unexpected_percent is None else f" ({f.unexpected_percent:.2f}%)"
        observed = f.error or short_text(f.observed_value if f.observed_value is not None else f.examples[:3])
        lines.append(
            f"{batch_id}  {f.severity:<8} {f.column or '(table)':<16} {f.expectation}  "
            f"unexpected={count}{pct}  observed={observed}"
        )
    return lines


def _failure(item: dict[str, Any]) -> ExpectationFailure:
    config = item.get("expectation_config") or {}
    kwargs = dict(config.get("kwargs") or {})
    res = item.get("result") or {}
    exc = item.get("exception_info") or {}
    error = None
    # A missing column makes GX raise per metric; the info is then keyed by metric id.
    infos = [exc] if "raised_exception" in exc else [v for v in exc.values() if isinstance(v, dict)]
    for info in infos:
        if info.get("raised_exception"):
            error = (str(info.get("exception_message") or "exception").strip().splitlines() or [""])[0][:160]
            break
    severity = str(config.get("severity") or "critical")
    return ExpectationFailure(
        expectation=str(config.get("type") or "unknown"),
        column=kwargs.get("column"),
        severity=severity if severity in ("critical", "warning", "info") else "critical",
        unexpected_count=res.get("unexpected_count"),
        unexpected_percent=res.get("unexpected_percent"),
        observed_value=_clip(res.get("observed_value")),
        examples=list(res.get("partial_unexpected_list") or [])[:5],
        expected={k: _clip(v) for k, v in kwargs.items() if k not in ("column", "batch_id")},
        error=error,
    )


def _reason(critical: list[ExpectationFailure], warnings: list[ExpectationFailure]) -> str:
    if critical:
        named = "; ".join(f.summary() for f in critical[:_REASON_FAILURES])
        more = f" (+{len(critical) - _REASON_FAILURES} more)" if len(critical) > _REASON_FAILURES else ""
        return f"rejected: {len(critical)} critical expectation(s) failed: {named}{more}"
    if warnings:
        named = "; ".join(f.summary() for f in warnings[:_REASON_FAILURES])
        more = f" (+{len(warnings) - _REASON_FAILURES} more)" if len(warnings) > _REASON_FAILURES else ""
        return f"accepted with {len(warnings)} warning(s): {named}{more}"
    return "accepted: every expectation passed"


def _clip(value: Any, limit: int = 50) -> Any:
    """Long lists (column sets, value sets) stay readable in records: keep the first `limit` items."""
    if isinstance(value, list) and len(value) > limit:
        return [*value[:limit], f"... {len(value) - limit} more"]
    return value
