"""Suite bootstrap and the severity decision, on small DataFrames and GX-shaped result dicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctcd.config import CtcdConfig
from ctcd.errors import UsageError
from tasks.suite import bootstrap_suite, dump_suite
from tasks.validation import failure_lines, judge, unreadable


@pytest.fixture
def reference() -> pd.DataFrame:
    """A small batch shaped like the default dataset (config columns), with nulls in one column."""
    rng = np.random.default_rng(7)
    n = 400
    frame = pd.DataFrame(
        {
            "application_id": np.arange(n, dtype=np.int64),
            "applied_at": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "salary": rng.uniform(20_000, 150_000, n),
            "commission": rng.uniform(10_000, 75_000, n),
            "age": rng.integers(20, 81, n).astype(float),
            "hvalue": rng.uniform(0, 800_000, n),
            "hyears": rng.integers(1, 31, n).astype(float),
            "loan": rng.uniform(0, 500_000, n),
            "elevel": rng.integers(0, 5, n),
            "car": rng.integers(1, 21, n),
            "zipcode": rng.integers(0, 9, n),
        }
    )
    frame.loc[frame.index[::10], "commission"] = np.nan
    return frame


def _by(suite: dict, kind: str, column: str | None = None) -> list[dict]:
    return [e for e in suite["expectations"] if e["type"] == kind and e["kwargs"].get("column") == column]


def test_bootstrap_covers_the_contract(reference, default_config: CtcdConfig):
    suite = bootstrap_suite(reference, default_config.dataset, default_config.gates.data, "day-1")
    assert suite["name"] == "agrawal-loans"
    assert all(e["severity"] in ("critical", "warning") and "id" not in e for e in suite["expectations"])
    (cols,) = _by(suite, "expect_table_columns_to_match_set")
    assert cols["kwargs"] == {"column_set": list(reference.columns), "exact_match": True}
    # row count: only an empty batch is critical; the reference's size +/-50% is a warning
    rows = {e["severity"]: e["kwargs"] for e in _by(suite, "expect_table_row_count_to_be_between")}
    assert rows == {
        "critical": {"min_value": 1, "max_value": None},
        "warning": {"min_value": 200, "max_value": 600},
    }
    assert _by(suite, "expect_column_values_to_be_unique", "application_id")
    assert _by(suite, "expect_column_values_to_be_of_type", "applied_at")[0]["kwargs"]["type_"] == "Timestamp"
    assert (
        "float64" in _by(suite, "expect_column_values_to_be_in_type_list", "salary")[0]["kwargs"]["type_list"]
    )
    # no nulls -> strictly non-null; nulls (10%) -> a bound on the null share
    assert _by(suite, "expect_column_values_to_not_be_null", "salary")[0]["kwargs"] == {"column": "salary"}
    assert _by(suite, "expect_column_values_to_not_be_null", "commission")[0]["kwargs"]["mostly"] == 0.85
    # age: a critical hard bound (never negative, finite, < 101x its max) and a learned warning range
    hard, learned = _by(suite, "expect_column_values_to_be_between", "age")
    assert hard["severity"] == "critical" and hard["kwargs"] == {
        "column": "age",
        "min_value": 0.0,
        "max_value": 8080.0,
    }
    assert learned["severity"] == "warning"
    assert learned["kwargs"] == {"column": "age", "min_value": 0.0, "max_value": 110.0, "mostly": 0.99}
    critical_set, warning_set = _by(suite, "expect_column_values_to_be_in_set", "car")
    assert critical_set["severity"] == "critical" and critical_set["kwargs"]["mostly"] == 0.999
    assert critical_set["kwargs"]["value_set"] == warning_set["kwargs"]["value_set"] == list(range(1, 21))
    assert warning_set["severity"] == "warning" and "mostly" not in warning_set["kwargs"]
    assert not _by(suite, "expect_column_values_to_be_between", "car")
    (mean,) = _by(suite, "expect_column_mean_to_be_between", "salary")
    assert mean["severity"] == "warning"
    assert mean["kwargs"]["min_value"] < reference["salary"].mean() < mean["kwargs"]["max_value"]
    assert _by(suite, "expect_column_stdev_to_be_between", "loan")[0]["severity"] == "warning"


def test_bootstrap_is_stable_and_readable(reference, default_config: CtcdConfig):
    first = dump_suite(bootstrap_suite(reference, default_config.dataset, default_config.gates.data))
    again = dump_suite(bootstrap_suite(reference.copy(), default_config.dataset, default_config.gates.data))
    assert first == again
    assert json.loads(first)["expectations"]
    assert '"value_set": [0, 1, 2, 3, 4]' in first  # short lists stay on one line


def test_bootstrap_refuses_a_reference_without_declared_columns(reference, default_config: CtcdConfig):
    with pytest.raises(UsageError, match=r"lacks columns \['loan'\]"):
        bootstrap_suite(reference.drop(columns=["loan"]), default_config.dataset, default_config.gates.data)
    with pytest.raises(UsageError, match="no rows"):
        bootstrap_suite(reference.iloc[:0], default_config.dataset, default_config.gates.data)
    with pytest.raises(UsageError, match="same columns"):
        bootstrap_suite(
            [reference, reference.assign(extra=1)], default_config.dataset, default_config.gates.data
        )


def test_several_batches_pool_ranges_categories_nulls_and_row_counts(reference, default_config: CtcdConfig):
    first, second = reference.iloc[:100].copy(), reference.iloc[100:400].copy()
    first["car"], second["car"] = 1, 2  # each batch shows one car, together two
    second["commission"] = second["commission"].fillna(1.0)  # nulls only in the first batch (10%)
    suite = bootstrap_suite([first, second], default_config.dataset, default_config.gates.data, "a .. b")
    assert suite["meta"]["ctcd"]["reference_batches"] == 2 and suite["meta"]["ctcd"]["reference_rows"] == 400
    rows = [
        e["kwargs"] for e in _by(suite, "expect_table_row_count_to_be_between") if e["severity"] == "warning"
    ]
    assert rows == [{"min_value": 50, "max_value": 450}]
    assert _by(suite, "expect_column_values_to_not_be_null", "commission")[0]["kwargs"]["mostly"] == 0.85
    assert {e["severity"] for e in _by(suite, "expect_column_values_to_be_in_set", "car")} == {
        "critical",
        "warning",
    }
    assert _by(suite, "expect_column_values_to_be_in_set", "car")[0]["kwargs"]["value_set"] == [1, 2]


def test_constant_columns_get_a_relative_tolerance_not_a_unit_span(reference, default_config: CtcdConfig):
    ref = reference.assign(hvalue=250_000.0, hyears=0.0, car=3)
    suite = bootstrap_suite(ref, default_config.dataset, default_config.gates.data)
    hard, learned = _by(suite, "expect_column_values_to_be_between", "hvalue")
    assert learned["severity"] == "warning"
    assert (learned["kwargs"]["min_value"], learned["kwargs"]["max_value"]) == (247_500.0, 252_500.0)
    assert hard["severity"] == "critical" and hard["kwargs"]["min_value"] < 0  # a level, not a quantity
    zero_hard, zero_learned = _by(suite, "expect_column_values_to_be_between", "hyears")
    assert (zero_learned["kwargs"]["min_value"], zero_learned["kwargs"]["max_value"]) == (0.0, 0.0)
    assert (zero_hard["kwargs"]["min_value"], zero_hard["kwargs"]["max_value"]) == (0.0, 100.0)
    # one category seen is not a category set: it warns only
    (cars,) = _by(suite, "expect_column_values_to_be_in_set", "car")
    assert cars["severity"] == "warning" and cars["kwargs"]["value_set"] == [3]


def test_a_level_far_from_zero_has_no_sign_bound(reference, default_config: CtcdConfig):
    """An index at 93-94 may genuinely fall; a quantity reaching down towards zero may not go negative."""
    ref = reference.assign(hvalue=np.linspace(93.0, 94.5, len(reference)))
    suite = bootstrap_suite(ref, default_config.dataset, default_config.gates.data)
    hard, _ = _by(suite, "expect_column_values_to_be_between", "hvalue")
    assert hard["kwargs"]["min_value"] < -9000 and hard["kwargs"]["max_value"] > 9000
    hard_age, _ = _by(suite, "expect_column_values_to_be_between", "age")
    assert hard_age["kwargs"]["min_value"] == 0.0


def _result(kind: str, column: str | None, severity: str, success: bool, **res) -> dict:
    kwargs = {"column": column} if column else {}
    return {
        "success": success,
        "expectation_config": {"type": kind, "kwargs": kwargs, "severity": severity, "meta": {}},
        "result": res,
        "exception_info": {"raised_exception": False, "exception_message": None},
    }


def _suite_result(*results: dict) -> dict:
    return {
        "success": all(r["success"] for r in results),
        "suite_name": "agrawal-loans",
        "results": list(results),
        "statistics": {"evaluated_expectations": len(results)},
    }


def test_warnings_pass_and_critical_failures_reject():
    mean = _result("expect_column_mean_to_be_between", "salary", "warning", False, observed_value=114675.2)
    ok = _result("expect_column_values_to_not_be_null", "age", "critical", True)
    passed = judge(_suite_result(mean, ok), "2026-01-08", rows=2000)
    assert passed.accepted and passed.gx_success is False
    assert passed.reason.startswith("accepted with 1 warning(s): salary: observed 114675")
    assert [w.column for w in passed.warnings] == ["salary"] and passed.failures == []

    nulls = _result(
        "expect_column_values_to_not_be_null",
        "commission",
        "critical",
        False,
        unexpected_count=800,
        unexpected_percent=40.0,
        partial_unexpected_list=[None, None],
    )
    columns = _result(
        "expect_table_columns_to_match_set", None, "critical", False, observed_value=["a", "b", "x"]
    )
    columns["expectation_config"]["kwargs"] = {"column_set": ["a", "b", "c"], "exact_match": True}
    rejected = judge(_suite_result(mean, nulls, columns), "2026-01-11")
    assert not rejected.accepted and rejected.evaluated == 3
    # the root cause (the column set) comes first in the one-line reason
    assert rejected.reason.startswith(
        "rejected: 2 critical expectation(s) failed: table: missing columns ['c'], unexpected columns ['x']"
    )
    assert "commission: 800 unexpected values (40.0%)" in rejected.reason and "\n" not in rejected.reason
    lines = failure_lines("2026-01-11", [*rejected.failures, *rejected.warnings])
    assert len(lines) == 3
    assert "commission" in lines[1] and "unexpected=800 (40.00%)" in lines[1]
    assert "warning" in lines[2] and "observed=114675" in lines[2]


def test_an_expectation_that_raised_is_a_failure_with_its_error():
    broken = _result("expect_column_values_to_be_between", "salary", "critical", False)
    broken["exception_info"] = {
        "metric-id": {"raised_exception": True, "exception_message": "column missing"}
    }
    outcome = judge(_suite_result(broken), "b")
    assert not outcome.accepted
    assert outcome.failures[0].error == "column missing"
    assert "could not be evaluated (column missing)" in outcome.reason


def test_unreadable_is_a_rejection():
    outcome = unreadable("b", "agrawal-loans", "b.parquet: the file is empty (0 bytes)")
    assert not outcome.accepted and outcome.gx_success is None
    assert outcome.reason == "rejected: unreadable: b.parquet: the file is empty (0 bytes)"
