"""Types real data has: text, boolean and integer labels; text and int-coded categories; reserved names."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ctcd.config import DatasetConfig
from ctcd.errors import ConfigError
from ctcd.features import category_text, category_values, is_positive, model_input


def _dataset(**overrides: object) -> DatasetConfig:
    base: dict[str, object] = {
        "name": "shop",
        "target": "bought",
        "id_column": "visit_id",
        "numerical_features": ["price"],
        "categorical_features": ["color", "store"],
    }
    return DatasetConfig.model_validate({**base, **overrides})


@pytest.mark.parametrize(
    ("values", "label", "expected"),
    [
        (["yes", "no", " yes", None], "yes", [True, False, True, False]),
        (["UP", "DOWN", "up"], "UP", [True, False, False]),
        ([True, False, True], True, [True, False, True]),
        (["True", "False", "true"], True, [True, False, True]),  # bools read back from CSV as text
        (["yes", "no"], True, [True, False]),  # YAML reads an unquoted `yes` as true
        ([True, False], False, [False, True]),
        ([0, 1, 1], False, [True, False, False]),
        ([1, 0, 1], 1, [True, False, True]),
        ([1.0, 0.0, np.nan], 1, [True, False, False]),  # ints read back as floats (a column with gaps)
        (["1", "0", "x"], 1, [True, False, False]),  # ints read back as text
        ([0, 1], 0, [True, False]),
        ([1, 0], "1", [True, False]),  # a quoted label against numbers
        ([1.0, 2.0], "1", [True, False]),
    ],
)
def test_is_positive_compares_labels_whatever_type_the_file_stored(values, label, expected):
    assert is_positive(pd.Series(values), label).tolist() == expected


def test_is_positive_on_pandas_string_dtype_with_missing_labels():
    values = pd.Series(["yes", pd.NA, "no"], dtype="string")
    assert is_positive(values, "yes").tolist() == [True, False, False]


def test_category_text_makes_one_category_of_every_spelling():
    assert {category_text(v) for v in (3, 3.0, "3", " 3 ", np.int64(3), np.float64(3.0))} == {"3"}
    assert category_text(2.5) == "2.5" and category_text(True) == "True"
    assert all(math.isnan(category_text(v)) for v in (None, np.nan, pd.NA))


def test_model_input_types_each_column_by_its_data():
    ds = _dataset()
    frame = pd.DataFrame(
        {"price": [1, 2, 3], "color": ["red", None, "blue"], "store": [1, 2, 3], "extra": ["x"] * 3}
    )
    X = model_input(frame, ds)
    assert list(X.columns) == ds.features
    assert X.dtypes.astype(str).to_dict() == {"price": "float64", "color": "object", "store": "float64"}
    assert X["color"].iloc[0] == "red" and math.isnan(X["color"].iloc[1])


def test_model_input_follows_a_models_forms_when_given():
    ds = _dataset()
    sent = pd.DataFrame({"price": [1.0, 2.0], "color": [3.0, 4.0], "store": ["2", "north"]})
    X = model_input(sent, ds, {"color": True, "store": False})
    assert X["color"].tolist() == ["3", "4"]  # trained on text: numbers become their text
    assert X["store"].iloc[0] == 2.0 and math.isnan(X["store"].iloc[1])  # not a number: unknown


def test_category_values_keeps_int_codes_numeric():
    assert category_values(pd.Series([1, 2, 2])).dtype == "float64"
    assert category_values(pd.Series(["a", 1])).tolist() == ["a", "1"]


@pytest.mark.parametrize("label", ["yes", True, 1, 0, "1"])
def test_positive_label_may_be_text_boolean_or_integer(label):
    assert _dataset(positive_label=label).positive_label == label
    assert type(_dataset(positive_label=label).positive_label) is type(label)


@pytest.mark.parametrize(
    "overrides",
    [
        {"numerical_features": ["prediction"]},
        {"categorical_features": ["probability"]},
        {"target": "served_at"},
        {"id_column": "request_id"},
        {"timestamp_column": "model_version"},
        {"numerical_features": ["as_of"]},
        {"numerical_features": ["_ctcd_day"]},
    ],
)
def test_dataset_columns_cannot_use_reserved_names(overrides):
    with pytest.raises(ValueError, match="reserve"):
        _dataset(**overrides)


def test_a_reserved_column_name_is_a_one_line_config_error(tmp_path):
    from ctcd.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(
        "dataset: {name: x, target: y, id_column: id, numerical_features: [prediction]}\n"
        "gates: {data: {suite: s.json}}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "\n" not in str(err.value) and "prediction" in str(err.value) and "reserves" in str(err.value)


def test_columns_named_like_internal_ones_are_fine():
    ds = _dataset(numerical_features=["day", "batch_id"], categorical_features=["batch"])
    assert ds.features == ["day", "batch_id", "batch"]
