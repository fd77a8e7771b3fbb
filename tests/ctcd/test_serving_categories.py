"""The request row for real data: text categories, the unknown-category policy, copied target/timestamp."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from ctcd.config import CtcdConfig
from ctcd.features import model_input
from ctcd.serving.schema import ColumnRule, build_schema, rows_to_frame, unknown_categories

RULES = {"color": ColumnRule(allowed=("red", "green")), "channel": ColumnRule(allowed=(1, 2, 3))}


def _config(default_config: CtcdConfig, policy: str = "reject") -> CtcdConfig:
    ds = default_config.dataset.model_copy(
        update={
            "name": "shop",
            "target": "bought",
            "id_column": "visit_id",
            "timestamp_column": "visited_at",
            "numerical_features": ["price", "day"],
            "categorical_features": ["color", "channel"],
            "positive_label": "yes",
            "slice_columns": [],
        }
    )
    serving = default_config.serving.model_copy(update={"unknown_category": policy})
    return default_config.model_copy(update={"dataset": ds, "serving": serving, "stream": None})


def _row(**overrides: object) -> dict:
    return {"price": 9.5, "day": 3, "color": "red", "channel": 2, **overrides}


def test_text_and_int_coded_categories_are_accepted(default_config):
    schema = build_schema(_config(default_config), RULES)
    rows = [schema.row.model_validate(_row()), schema.row.model_validate(_row(color="green", channel="3"))]
    raw = rows_to_frame(rows, schema.features)
    X = model_input(raw, _config(default_config).dataset, {"color": True, "channel": False})
    assert X["color"].tolist() == ["red", "green"] and X["channel"].tolist() == [2.0, 3.0]


@pytest.mark.parametrize(("column", "value"), [("color", "purple"), ("color", 7), ("channel", 9)])
def test_reject_names_the_column_and_the_value(default_config, column, value):
    schema = build_schema(_config(default_config), RULES)
    with pytest.raises(ValidationError) as err:
        schema.row.model_validate(_row(**{column: value}))
    assert column in str(err.value) and f"unknown category '{value}'" in str(err.value)


def test_warn_accepts_unknown_categories_and_finds_them(default_config):
    schema = build_schema(_config(default_config, "warn"), RULES)
    rows = [schema.row.model_validate(_row(color="purple", channel=9)), schema.row.model_validate(_row())]
    raw = rows_to_frame(rows, schema.features)
    assert unknown_categories(raw, RULES, ["color", "channel"]) == {"color": ["purple"], "channel": ["9"]}


def test_the_target_and_timestamp_of_a_copied_row_are_ignored_but_other_fields_refused(default_config):
    schema = build_schema(_config(default_config), RULES)
    row = schema.row.model_validate(_row(bought="yes", visited_at="2026-02-01T10:00:00Z", visit_id="v-1"))
    assert "bought" not in row.model_dump() and "visited_at" not in row.model_dump()
    with pytest.raises(ValidationError, match="coupon"):
        schema.row.model_validate(_row(coupon="x"))
    with pytest.raises(ValidationError):
        schema.row.model_validate(_row(bought={"nested": 1}))


def test_rows_to_frame_keeps_text_as_text(default_config):
    schema = build_schema(_config(default_config), rules={})
    rows = [schema.row.model_validate(_row(color=c)) for c in ("red", "blue")]
    frame = rows_to_frame(rows, schema.features)
    assert frame["color"].tolist() == ["red", "blue"] and frame["price"].dtype == "float64"
    assert isinstance(frame, pd.DataFrame)


@pytest.mark.parametrize(
    ("colors", "channels", "text"),
    [
        (["red", " green ", "blue"], [1, "2", 3.0], {"color": True, "channel": False}),
        (["red", 7, 2.5], [1, 2, 3], {"color": True, "channel": True}),
        (["red", "green", "red"], ["x", " 2 ", 3], {"color": True, "channel": False}),  # unknown: NaN
        ([1, 2, 3.0], [1.0, 2, 4.5], {"color": False, "channel": False}),  # all numbers: one float block
    ],
)
def test_the_serving_fast_path_builds_exactly_model_input(default_config, colors, channels, text):
    from ctcd.features import model_input_columns

    cfg = _config(default_config, "warn")
    schema = build_schema(cfg, rules={})
    rows = [
        schema.row.model_validate(_row(color=c, channel=ch, price=float(i), day=i))
        for i, (c, ch) in enumerate(zip(colors, channels, strict=True))
    ]
    values = {f: [getattr(r, f) for r in rows] for f in schema.features}
    expected = model_input(rows_to_frame(rows, schema.features), cfg.dataset, text)
    frame, columns = model_input_columns(values, cfg.dataset, text)
    pd.testing.assert_frame_equal(frame, expected)
    assert list(columns) == list(cfg.dataset.features)
    for name in cfg.dataset.features:
        pd.testing.assert_series_equal(pd.Series(columns[name], name=name), expected[name])
