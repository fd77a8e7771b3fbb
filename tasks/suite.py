"""The data contract's suite, as pure functions: bootstrap it from trusted batches, dump it for review.

A suite is the id-free JSON form of a Great Expectations 1.x `ExpectationSuite` (name, expectations with
`type`, `kwargs`, `meta` and `severity`), stored under `configs/expectations/` and reviewed like code.
GX treats `severity` as metadata only: `tasks.validation.judge` turns a GX result into the decision.
Nothing here imports great_expectations: these functions take DataFrames and dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ctcd.config import DataGateConfig, DatasetConfig
from ctcd.errors import UsageError
from ctcd.records import Severity

# pandas' nullable dtypes are named by class ("Int64Dtype"): the only spelling GX 1.24 resolves for them.
INT_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "Int32Dtype", "Int64Dtype"]
FLOAT_TYPES = ["float32", "float64", "Float64Dtype"]
NAIVE_DATETIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
# GX 1.24 cannot name a tz-aware dtype in a type list; `expect_column_values_to_be_of_type` with the
# scalar type "Timestamp" matches tz-aware columns (and only them).
TZ_AWARE_TYPE = "Timestamp"


# --------------------------------------------------------------------------- bootstrap


def bootstrap_suite(
    reference: pd.DataFrame | Sequence[pd.DataFrame],
    dataset: DatasetConfig,
    gate: DataGateConfig,
    reference_name: str = "reference",
) -> dict[str, Any]:
    """Derive an id-free GX suite (as a dict) from trusted reference batches, like TFX's SchemaGen.

    Critical (reject the batch): the exact column set, types, nulls, unique non-null ids, at least one row,
    category sets (more than `gate.new_category_share` unseen values), and hard bounds per numeric column:
    finite, within `gate.hard_range_factor` times the reference's magnitude beyond its range, and
    non-negative for a quantity (see `_numeric_expectations`).
    Warning (pass, but say so): the learned value ranges (`gate.range_severity`), any unseen category,
    the row count, mean and standard deviation. Several batches teach more than one: ranges and categories
    are pooled, null shares and row counts take the extremes over batches. Same data in, same suite out.
    """
    frames = [reference] if isinstance(reference, pd.DataFrame) else list(reference)
    if not frames:
        raise UsageError("no reference batch given: pass at least one clean batch with --from")
    counts = [len(f) for f in frames]
    if not sum(counts):
        raise UsageError(f"the reference batch {reference_name} has no rows: pick a clean, non-empty batch")
    declared = [dataset.id_column, *([dataset.timestamp_column] if dataset.timestamp_column else [])]
    declared += dataset.features
    for frame in frames:
        missing = [c for c in declared if c not in frame.columns]
        if missing:
            raise UsageError(
                f"the reference batch {reference_name} lacks columns {missing} "
                "that the dataset config declares"
            )
        if frame.columns.duplicated().any():
            raise UsageError(f"the reference batch {reference_name} has duplicated column names")
        if set(frame.columns) != set(frames[0].columns):
            raise UsageError(
                f"the reference batches {reference_name} do not have the same columns: "
                "pick batches of one schema"
            )

    columns = [str(c) for c in frames[0].columns]
    pooled = frames[0] if len(frames) == 1 else pd.concat([f[columns] for f in frames], ignore_index=True)
    tol = gate.row_count_tolerance
    low_rows, high_rows = min(counts), max(counts)
    expectations: list[dict[str, Any]] = [
        _exp(
            "expect_table_columns_to_match_set",
            {"column_set": columns, "exact_match": True},
            "critical",
            "exactly the reference's columns, in any order",
        ),
        _exp(
            "expect_table_row_count_to_be_between",
            {"min_value": 1, "max_value": None},
            "critical",
            "an empty batch carries nothing to learn from",
        ),
        _exp(
            "expect_table_row_count_to_be_between",
            {
                "min_value": max(1, math.floor(low_rows * (1 - tol))),
                "max_value": math.ceil(high_rows * (1 + tol)),
            },
            "warning",
            f"reference batches have {low_rows}"
            + (f"-{high_rows}" if high_rows != low_rows else "")
            + f" rows; +/-{tol:.0%}",
        ),
    ]
    for col in columns:
        null_fraction = max(float(f[col].isna().mean()) for f in frames if len(f))
        expectations += _column_expectations(pooled[col], col, null_fraction, dataset, gate)
    return {
        "name": dataset.name,
        "expectations": expectations,
        "meta": {
            "ctcd": {
                "generated_by": "ctcd suite init",
                "reference": reference_name,
                "reference_batches": len(frames),
                "reference_rows": sum(counts),
                "range_quantile": gate.range_quantile,
                "range_margin": gate.range_margin,
                "range_mostly": gate.range_mostly,
                "hard_range_factor": gate.hard_range_factor,
                "stat_tolerance": gate.stat_tolerance,
                "note": "severity critical rejects a batch; warning passes it with a warning",
            }
        },
    }


def dump_suite(suite: dict[str, Any]) -> str:
    """The suite as stable, reviewable JSON: two-space indents, lists of plain values on one line."""
    return _dump(suite, 0) + "\n"


def _dump(value: Any, depth: int) -> str:
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_dump(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return "[\n" + ",\n".join(f"{inner}{_dump(v, depth + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value)


def _exp(kind: str, kwargs: dict[str, Any], severity: Severity, why: str) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {"why": why}, "severity": severity}


def _column_expectations(
    s: pd.Series, col: str, null_fraction: float, dataset: DatasetConfig, gate: DataGateConfig
) -> list[dict[str, Any]]:
    out = [_type_expectation(s, col)]
    if null_fraction == 0.0 or col == dataset.id_column:
        out.append(
            _exp("expect_column_values_to_not_be_null", {"column": col}, "critical", "no nulls in reference")
        )
    else:
        allowed = min(1.0, null_fraction + gate.null_fraction_margin)
        mostly = math.floor((1.0 - allowed) * 1000) / 1000
        out.append(
            _exp(
                "expect_column_values_to_not_be_null",
                {"column": col, "mostly": mostly},
                "critical",
                f"reference null fraction {null_fraction:.3f}; at most {allowed:.3f} allowed",
            )
        )
    if col == dataset.id_column:
        out.append(_exp("expect_column_values_to_be_unique", {"column": col}, "critical", "the id column"))
        return out
    values = s.dropna()
    if col in dataset.categorical_features:
        out += _category_expectations(values, col, gate)
    elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and len(values):
        out += _numeric_expectations(values.astype("float64"), col, pd.api.types.is_integer_dtype(s), gate)
    return out


def _category_expectations(values: pd.Series, col: str, gate: DataGateConfig) -> list[dict[str, Any]]:
    """Any unseen category warns; more than `new_category_share` of them rejects (TFDV's domain mass).

    A column with a single value in the reference has not shown its set (a campaign outcome that is always
    "nonexistent" before the first follow-up campaign): its set is a warning only.
    """
    allowed = sorted(_plain(v) for v in values.unique())
    out = [
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": col, "value_set": allowed},
            "warning",
            "categories seen in the reference; any other one warns",
        )
    ]
    if len(allowed) > 1:
        kwargs: dict[str, Any] = {"column": col, "value_set": allowed}
        if gate.new_category_share > 0:
            kwargs["mostly"] = 1 - gate.new_category_share
        out.insert(
            0,
            _exp(
                "expect_column_values_to_be_in_set",
                kwargs,
                "critical",
                f"categories seen in the reference; more than {gate.new_category_share:.2%} unseen rejects",
            ),
        )
    return out


def _type_expectation(s: pd.Series, col: str) -> dict[str, Any]:
    dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _exp(
            "expect_column_values_to_be_of_type",
            {"column": col, "type_": TZ_AWARE_TYPE},
            "critical",
            f"reference dtype {dtype} (tz-aware timestamps)",
        )
    if pd.api.types.is_bool_dtype(dtype):
        types = ["bool", "BooleanDtype"]
    elif pd.api.types.is_integer_dtype(dtype):
        types = INT_TYPES
    elif pd.api.types.is_float_dtype(dtype):
        # Whole-number floats may come back as integers (e.g. from CSV): widening is harmless.
        types = FLOAT_TYPES + INT_TYPES
    elif pd.api.types.is_datetime64_dtype(dtype):
        types = NAIVE_DATETIME_TYPES
    else:
        types = ["str", "StringDtype"]
    return _exp(
        "expect_column_values_to_be_in_type_list",
        {"column": col, "type_list": types},
        "critical",
        f"reference dtype {dtype}",
    )


def _numeric_expectations(
    values: pd.Series, col: str, integer: bool, gate: DataGateConfig
) -> list[dict[str, Any]]:
    """A hard critical bound, a robust learned range (warning by default), and mean/std warnings.

    Learned range: the reference's `range_quantile` and 1-`range_quantile` quantiles widened by
    `range_margin` of their span (the full span when the quantiles coincide), with GX's `mostly`
    (`range_mostly`), so a few genuine outliers pass and a spike across many rows warns. A column constant
    in the reference warns beyond `constant_tolerance` of its value (a constant 0 warns at any change).
    Hard bound (critical): finite and within `hard_range_factor` times the reference's magnitude
    (max of |min|, |max|, span; 1 for all-zero) beyond its min and max. A quantity whose reference values
    are never negative and reach down to within one span of zero (amounts, counts, ages) is bounded below
    by 0: a negative value is corrupt. A level far from zero (an index at 93-94, a rate at 1.1-1.4) gets
    no sign bound, since a genuine shift can take it below zero.
    """
    lo, hi = float(values.min()), float(values.max())
    q_lo, q_hi = (float(q) for q in values.quantile([gate.range_quantile, 1 - gate.range_quantile]))
    if hi == lo:
        slack = gate.constant_tolerance * abs(lo)
        low, high = lo - slack, lo + slack
        learned = f"constant {_num(lo)} in the reference; +/- {gate.constant_tolerance:.0%} of it"
    else:
        span = q_hi - q_lo if q_hi > q_lo else hi - lo
        low, high = q_lo - gate.range_margin * span, q_hi + gate.range_margin * span
        learned = (
            f"reference {gate.range_quantile:.1%}-{1 - gate.range_quantile:.1%} quantiles "
            f"[{_num(q_lo)}, {_num(q_hi)}] widened by {gate.range_margin:.0%} of their span"
        )
    if lo >= 0 > low:
        low = 0.0  # a quantity that was never negative stays non-negative
    magnitude = max(abs(lo), abs(hi), hi - lo) or 1.0
    hard_low = lo - gate.hard_range_factor * magnitude
    hard_high = hi + gate.hard_range_factor * magnitude
    quantity = lo >= 0 and lo <= hi - lo
    if quantity:
        hard_low = 0.0
    low, high = _round_out(low, down=True), _round_out(high, down=False)
    hard_low, hard_high = _round_out(hard_low, down=True), _round_out(hard_high, down=False)
    if integer:
        low, high = math.floor(low), math.ceil(high)
        hard_low, hard_high = math.floor(hard_low), math.ceil(hard_high)
    mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
    spread = gate.stat_tolerance * std if std > 0 else max(abs(mean) * gate.stat_tolerance, 1e-9)
    learned_kwargs: dict[str, Any] = {"column": col, "min_value": low, "max_value": high}
    if gate.range_mostly < 1:
        learned_kwargs["mostly"] = gate.range_mostly
    return [
        _exp(
            "expect_column_values_to_be_between",
            {"column": col, "min_value": hard_low, "max_value": hard_high},
            "critical",
            f"hard bound: finite, within {gate.hard_range_factor:g}x the reference's magnitude "
            f"{_num(magnitude)} of its range [{_num(lo)}, {_num(hi)}]"
            + ("; never negative (a quantity)" if quantity else ""),
        ),
        _exp(
            "expect_column_values_to_be_between",
            learned_kwargs,
            gate.range_severity,
            learned
            + (f"; at least {gate.range_mostly:.1%} of values inside" if gate.range_mostly < 1 else ""),
        ),
        _exp(
            "expect_column_mean_to_be_between",
            {
                "column": col,
                "min_value": _round_out(mean - spread, down=True),
                "max_value": _round_out(mean + spread, down=False),
            },
            "warning",
            f"reference mean {_num(mean)} +/- {gate.stat_tolerance:g} std",
        ),
        _exp(
            "expect_column_stdev_to_be_between",
            {
                "column": col,
                "min_value": _round_out(std * (1 - gate.stat_tolerance), down=True),
                "max_value": _round_out(std * (1 + gate.stat_tolerance), down=False),
            },
            "warning",
            f"reference std {_num(std)} +/- {gate.stat_tolerance:.0%}",
        ),
    ]


def _round_out(x: float, down: bool, digits: int = 4) -> float:
    """Round to `digits` significant digits away from the inside of a bound (readable, never tighter)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    scale = 10 ** (math.floor(math.log10(abs(x))) - digits + 1)
    r = (math.floor if down else math.ceil)(x / scale) * scale
    return float(f"{r:.{digits}g}")


def _num(x: float) -> str:
    return f"{x:.6g}"


def _plain(v: Any) -> Any:
    """A JSON-friendly Python scalar (numpy ints become int, and so on)."""
    return v.item() if isinstance(v, np.generic) else v
