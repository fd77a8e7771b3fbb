"""The typed records every layer shares: the data gate's verdict on a batch and the failures behind it.

Core (`ctcd.batches` files a batch with its `ValidationOutcome`), the steps (`tasks.validation` judges a GX
result into one) and the application (the CLI prints them) all speak these types, so they live at the
bottom of the layers. Frozen pydantic models: a record is evidence, written once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["critical", "warning", "info"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectationFailure(_Record):
    """One failed expectation, with the evidence a reader needs."""

    expectation: str
    column: str | None = None
    severity: Severity = "critical"
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    observed_value: Any = None
    examples: list[Any] = Field(default_factory=list, description="a few unexpected values")
    expected: dict[str, Any] = Field(default_factory=dict, description="the expectation's kwargs")
    error: str | None = Field(default=None, description="why GX could not evaluate it, if it raised")

    def summary(self) -> str:
        """A short phrase, e.g. `age: 812 unexpected values (40.6%) [expect_column_values_to_be_between]`."""
        where = self.column or "table"
        if self.error:
            what = f"could not be evaluated ({self.error})"
        elif self.expectation == "expect_table_columns_to_match_set":
            what = _column_set_difference(self.observed_value, self.expected.get("column_set") or [])
        elif self.unexpected_count is not None:
            pct = f" ({self.unexpected_percent:.1f}%)" if self.unexpected_percent is not None else ""
            eg = f", e.g. {short_text(self.examples[:3])}" if self.examples else ""
            what = f"{self.unexpected_count} unexpected values{pct}{eg}"
        else:
            what = f"observed {short_text(self.observed_value)}, expected {_expected_range(self.expected)}"
        return f"{where}: {what} [{self.expectation}]"


class ValidationOutcome(_Record):
    """The data gate's decision for one batch, with the evidence (stored next to the batch)."""

    batch_id: str
    suite: str
    accepted: bool
    gx_success: bool | None = Field(description="GX's own verdict (fails on warnings too); None if unread")
    reason: str = Field(description="one line: why the batch was rejected, or what it was warned about")
    rows: int | None = None
    evaluated: int = 0
    failures: list[ExpectationFailure] = Field(default_factory=list, description="critical failures")
    warnings: list[ExpectationFailure] = Field(default_factory=list, description="non-critical failures")


def _column_set_difference(observed: Any, expected: Iterable[str]) -> str:
    seen = set(observed or [])
    want = set(expected)
    parts = []
    if want - seen:
        parts.append(f"missing columns {sorted(want - seen)}")
    if seen - want:
        parts.append(f"unexpected columns {sorted(seen - want)}")
    return ", ".join(parts) or f"columns {sorted(seen)}"


def _expected_range(kwargs: dict[str, Any]) -> str:
    if "min_value" in kwargs or "max_value" in kwargs:
        return f"[{short_text(kwargs.get('min_value'))}, {short_text(kwargs.get('max_value'))}]"
    if "type_list" in kwargs:
        return f"one of {short_text(kwargs['type_list'])}"
    if "type_" in kwargs:
        return str(kwargs["type_"])
    return short_text(kwargs)


def short_text(value: Any, limit: int = 60) -> str:
    """A value as short text for one-line messages: floats to 6 significant digits, long text cut."""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
