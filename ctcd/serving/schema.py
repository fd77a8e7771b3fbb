"""Request and response models of the prediction service, generated from the dataset config.

Each feature becomes a typed, required field: numerical features are finite floats; categorical features
are text or finite numbers (int-coded categories), and only the values the data contract allows when it
lists them and `serving.unknown_category` is `reject` (the default; `warn` serves an unknown category and
logs it, and the model treats it as a category it never saw). The data contract is the Great Expectations
suite at `cfg.gates.data.suite` (GX's own JSON): `expect_column_values_to_be_between` gives a range and
a critical `expect_column_values_to_be_in_set` the known categories (even with `mostly`: a request with
another one gets `serving.unknown_category`). Ranges that tolerate misses (`mostly` < 1) or only warn
(`severity: warning`) do not reject requests. Without a suite, types only. A row may also carry the
dataset's target, timestamp and `other_columns` (a copy of a data file's row): accepted and ignored.

What is accepted is what the published OpenAPI schema allows, nothing more (no lax coercion): numbers are
JSON numbers (not text, not booleans), ids JSON integers or text, `as_of` a day as YYYY-MM-DD text (never
a Unix time); a known int-coded category may come as its number or its text ("3"), both listed in `enum`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from ctcd.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from ctcd.config import CtcdConfig

AS_OF_FIELD = "as_of"
RESPONSE_FIELDS = ("request_id", "probability", "prediction", "model_version")
# What the prediction log can store (ctcd/prediction_log.py): ids as int64 or text, and days whose
# timestamps fit pandas' nanosecond range (1677-09-21 to 2262-04-11 23:47, so the last whole day is the 10th).
# Strict: a JSON boolean or 1.0 is not an integer id (OpenAPI 3.0's JSON Schema says so too).
ROW_ID = str | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)] | None
FIRST_AS_OF = date(1678, 1, 1)
LAST_AS_OF = date(2262, 4, 10)
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _day_text(value: Any) -> Any:
    """`as_of` as the schema says (`format: date`): YYYY-MM-DD text only. pydantic alone would also read
    numbers and numeric text as Unix times (0 and "0" as 1970-01-01) and datetimes with a zero time."""
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str) and ISO_DAY.fullmatch(value):
        return value
    raise ValueError("as_of must be a day as text, YYYY-MM-DD (or null)")


AS_OF = Annotated[
    Annotated[
        date,
        Field(
            ge=FIRST_AS_OF,
            le=LAST_AS_OF,
            # pydantic leaves date bounds out of the JSON schema; these keywords publish them.
            json_schema_extra={
                "formatMinimum": FIRST_AS_OF.isoformat(),
                "formatMaximum": LAST_AS_OF.isoformat(),
            },
        ),
    ]
    | None,
    BeforeValidator(_day_text),
]


@dataclass(frozen=True)
class ColumnRule:
    """What the data contract allows for one column."""

    min_value: float | None = None
    max_value: float | None = None
    allowed: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class ServingSchema:
    """The generated pydantic models: one request row and one prediction."""

    row: type[BaseModel]
    prediction: type[BaseModel]
    features: tuple[str, ...]
    id_column: str


def contract_rules(suite_path: Path | None) -> dict[str, ColumnRule]:
    """Ranges and allowed values per column from a GX suite JSON file ({} when the file does not exist)."""
    if suite_path is None or not Path(suite_path).is_file():
        return {}
    try:
        suite = json.loads(Path(suite_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{suite_path}: the expectation suite is not valid JSON: {exc}") from exc
    rules: dict[str, ColumnRule] = {}
    for exp in suite.get("expectations", []) if isinstance(suite, dict) else []:
        kind = exp.get("type") or exp.get("expectation_type")
        kwargs = exp.get("kwargs") or {}
        column = kwargs.get("column")
        if not column:
            continue
        rule = rules.get(column, ColumnRule())
        if kind == "expect_column_values_to_be_in_set" and kwargs.get("value_set"):
            # A critical set lists the categories the contract knows, even when a batch may hold a few others
            # (`mostly`): a request with another one gets `serving.unknown_category`. A set that only warns
            # (e.g. learned from a column with one value so far) does not bind requests either.
            if exp.get("severity", "critical") == "warning":
                continue
            known = tuple(dict.fromkeys([*(rule.allowed or ()), *kwargs["value_set"]]))
            rules[column] = ColumnRule(rule.min_value, rule.max_value, known)
            continue
        if not _is_hard(exp, kwargs):
            continue
        if kind == "expect_column_values_to_be_between":
            rule = ColumnRule(
                min_value=_tighter(rule.min_value, kwargs.get("min_value"), max),
                max_value=_tighter(rule.max_value, kwargs.get("max_value"), min),
                allowed=rule.allowed,
            )
        else:
            continue
        rules[column] = rule
    return rules


def _is_hard(expectation: dict[str, Any], kwargs: dict[str, Any]) -> bool:
    # A request is one row: an expectation that tolerates some misses cannot reject a single row.
    mostly = kwargs.get("mostly")
    return expectation.get("severity", "critical") != "warning" and (mostly is None or float(mostly) >= 1.0)


def _tighter(current: float | None, new: Any, pick: Any) -> float | None:
    if new is None:
        return current
    return float(new) if current is None else pick(current, float(new))


FINITE = Annotated[float, Field(strict=True, allow_inf_nan=False)]
CATEGORY = Annotated[str, Field(max_length=1000)] | FINITE
# The dataset's own target, timestamp and other columns, when a client sends a row copied from a data file
# (ignored).
COPIED = str | int | float | bool | None


def _known_category(column: str, allowed: tuple[Any, ...]) -> Any:
    """A category field that refuses values outside `allowed`, naming the column and the value.

    The model reads a category as text (`ctcd.features.category_text`), so an int-coded one may come as
    its number or its text (3, 3.0 or "3"); the published `enum` lists both forms and nothing else passes.
    """
    from ctcd.features import category_text

    texts, numbers = _category_forms(allowed)
    known_numbers = {float(n) for n in numbers}
    listed = ", ".join(repr(v) for v in allowed[:10]) + (", ..." if len(allowed) > 10 else "")

    def check(value: Any) -> Any:
        if value in known_numbers if isinstance(value, float) else value in texts:
            return value
        raise ValueError(
            f"unknown category {category_text(value)!r} for {column}; the data contract allows {listed}"
        )

    enum = [*numbers, *texts]
    return Annotated[CATEGORY, AfterValidator(check), Field(json_schema_extra={"enum": enum})]


def _category_forms(allowed: tuple[Any, ...]) -> tuple[dict[str, None], list[int | float]]:
    """The known categories as text (in order) and the numbers whose text is one of them."""
    from ctcd.features import category_text

    texts = dict.fromkeys(t for t in map(category_text, allowed) if isinstance(t, str))
    numbers: list[int | float] = []
    for text in texts:
        try:
            number = float(text)
        except ValueError:
            continue
        if math.isfinite(number) and category_text(number) == text:
            numbers.append(int(number) if number.is_integer() else number)
    return texts, numbers


def _known_number(column: str, allowed: tuple[Any, ...]) -> Any:
    """A numerical field limited to the data contract's set (as numbers: no booleans, no text)."""
    numbers = [v for v in allowed if isinstance(v, int | float) and not isinstance(v, bool)]
    known = set(numbers)

    def check(value: float) -> float:
        if value not in known:
            raise ValueError(f"{value!r} for {column} is not in the data contract's set {numbers[:10]}")
        return value

    return Annotated[FINITE, AfterValidator(check), Field(json_schema_extra={"enum": numbers})]


def _feature_type(
    rule: ColumnRule | None, categorical: bool = False, reject_unknown: bool = True, column: str = ""
) -> Any:
    if categorical:
        if reject_unknown and rule is not None and rule.allowed:
            return _known_category(column, rule.allowed)
        return CATEGORY
    if rule is not None and rule.allowed:
        return _known_number(column, rule.allowed)
    bounds: dict[str, float] = {}
    if rule is not None and rule.min_value is not None:
        bounds["ge"] = rule.min_value
    if rule is not None and rule.max_value is not None:
        bounds["le"] = rule.max_value
    return Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]


def build_schema(cfg: CtcdConfig, rules: dict[str, ColumnRule] | None = None) -> ServingSchema:
    """The request row and prediction models for `cfg.dataset` (rules: from the suite when None)."""
    ds = cfg.dataset
    rules = contract_rules(cfg.gates.data.suite) if rules is None else rules
    clashes = {ds.id_column, AS_OF_FIELD, *RESPONSE_FIELDS} & set(ds.features)
    if ds.id_column in (AS_OF_FIELD, *RESPONSE_FIELDS) or clashes:
        raise ConfigError(
            f"dataset columns {sorted(clashes | {ds.id_column})} clash with the serving fields "
            f"{[AS_OF_FIELD, *RESPONSE_FIELDS]}: rename them in the dataset config"
        )
    reject = cfg.serving.unknown_category == "reject"
    categorical = set(ds.categorical_features)
    row_fields: dict[str, Any] = {
        name: (_feature_type(rules.get(name), name in categorical, reject, name), ...) for name in ds.features
    }
    for name in (ds.target, ds.timestamp_column, *ds.other_columns):
        if name:
            row_fields[name] = (COPIED, Field(default=None, exclude=True, description="accepted and ignored"))
    row_fields[ds.id_column] = (
        ROW_ID,
        Field(default=None, description="the row's id, stored with the prediction so labels can join"),
    )
    row_fields[AS_OF_FIELD] = (
        AS_OF,
        Field(
            default=None,
            description="replay only: the day this prediction is logged under (served_at keeps the time), "
            f"from {FIRST_AS_OF} to {LAST_AS_OF}",
        ),
    )
    row = create_model(  # type: ignore[call-overload]
        "Row",
        __config__=ConfigDict(extra="forbid", title="Row"),
        __doc__=f"One {ds.name} row to score.",
        **row_fields,
    )
    prediction = create_model(  # type: ignore[call-overload]
        "Prediction",
        __doc__="The model's answer for one row.",
        request_id=(str, Field(description="unique id of this prediction in the prediction log")),
        probability=(float, Field(description=f"probability of label {ds.positive_label!r}")),
        prediction=(int, Field(description=f"1 when the predicted label is {ds.positive_label!r}, else 0")),
        model_version=(str, Field(description="the registered model version that answered")),
        **{ds.id_column: (ROW_ID, None)},
    )
    return ServingSchema(row=row, prediction=prediction, features=tuple(ds.features), id_column=ds.id_column)


def rows_to_columns(rows: list[BaseModel], features: tuple[str, ...]) -> dict[str, list[Any]]:
    """The validated rows' features as sent, one list per feature in config order."""
    return {f: [getattr(r, f) for r in rows] for f in features}


def rows_to_frame(rows: list[BaseModel], features: tuple[str, ...]) -> pd.DataFrame:
    """The validated rows' features as sent, one column per feature in config order (numbers as float64
    or int64, text as objects); `ctcd.features.model_input` turns it into a model's input."""
    import pandas as pd

    return pd.DataFrame(rows_to_columns(rows, features), columns=list(features))


def unknown_categories(
    frame: pd.DataFrame | Mapping[str, Sequence[Any]], rules: dict[str, ColumnRule], categorical: list[str]
) -> dict[str, list[Any]]:
    """Per categorical column, the values of `frame` (or of columns by name) outside the data contract's
    allowed set."""
    from ctcd.features import category_text

    found: dict[str, list[Any]] = {}
    for column in categorical:
        rule = rules.get(column)
        if rule is None or not rule.allowed or column not in frame:
            continue
        allowed = {category_text(v) for v in rule.allowed}
        unknown = sorted({str(category_text(v)) for v in frame[column] if category_text(v) not in allowed})
        if unknown:
            found[column] = unknown
    return found
