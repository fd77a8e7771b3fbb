"""What a model sees: the dataset's features with one type per column, and the label as "is positive".

Numerical features are float64. A categorical feature is float64 when its data is numeric (int-coded
categories such as 0, 1, 2) and text otherwise (`"yes"`, `"blue"`): integral numbers in a text column are
written without decimals (`3`, `3.0` and `"3"` are the same category) and missing values are NaN. Every
path to a model (training, evaluation, the registry's smoke test, serving) builds its input here, so a
category means the same thing everywhere. Labels may be strings, booleans or integers; `is_positive`
compares them with `dataset.positive_label` however a file stored them (`"1"`, `1`, `1.0`; `"True"`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from ctcd.config import DatasetConfig

# The text a boolean positive_label also matches (a CSV may hold `yes`/`no`, and YAML reads an unquoted
# `yes` as true).
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def category_text(value: Any) -> Any:
    """One category as text (NaN when missing): integral numbers without decimals, text stripped."""
    import pandas as pd

    if isinstance(value, str):
        return value.strip()
    if type(value).__name__ in ("bool", "bool_"):
        return str(bool(value))
    if isinstance(value, numbers.Number):
        if isinstance(value, numbers.Real) and math.isnan(float(value)):
            return float("nan")
        if isinstance(value, numbers.Integral):
            return str(int(value))
        if isinstance(value, numbers.Real) and float(value).is_integer():
            return str(int(float(value)))
        return str(value)
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return float("nan")
    return str(value).strip()


def category_values(values: pd.Series, as_text: bool | None = None) -> pd.Series:
    """A categorical column as the model takes it: float64 when numeric, else text (see the module doc).

    `as_text` forces one form (what a registered model was trained on); None decides by the data.
    """
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if as_text is None:
        as_text = not numeric
    if not as_text:
        if numeric:
            return values.astype("float64")
        # Text where the model wants numbers: what does not read as a number is an unknown category.
        return pd.to_numeric(values.map(category_text), errors="coerce").astype("float64")
    return values.map(category_text).astype(object)


def model_input(
    frame: pd.DataFrame, dataset: DatasetConfig, text_columns: Mapping[str, bool] | None = None
) -> pd.DataFrame:
    """The dataset's features in config order: numerical as float64, categorical by `category_values`.

    `text_columns` (categorical name -> whether the model takes it as text) aligns the input with a
    registered model's signature; without it each column's form follows its data.
    """
    import pandas as pd

    out = {c: frame[c].astype("float64") for c in dataset.numerical_features}
    for c in dataset.categorical_features:
        out[c] = category_values(frame[c], None if text_columns is None else text_columns.get(c))
    return pd.DataFrame(out, index=frame.index)[dataset.features]


def model_input_columns(
    values: Mapping[str, Sequence[Any]], dataset: DatasetConfig, text_columns: Mapping[str, bool]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """`model_input` of the frame that `values` (feature -> Python values, as sent) would make, without
    building that frame: the serving hot path. Also returns each column as an array (for the log).

    Equal to `model_input(pd.DataFrame(values), dataset, text_columns)`: a float column and a text one go
    straight to arrays; a column that mixes text and numbers where the model takes numbers (an unknown
    category) goes through `category_values`.
    """
    import numpy as np
    import pandas as pd

    columns: dict[str, np.ndarray] = {}
    categorical = set(dataset.categorical_features)
    for name in dataset.features:
        column = values[name]
        if name not in categorical:
            columns[name] = np.array(column, dtype="float64")
        elif text_columns[name]:
            columns[name] = np.array([category_text(v) for v in column], dtype=object)
        elif all(type(v) is float or type(v) is int for v in column):
            columns[name] = np.array(column, dtype="float64")
        else:
            columns[name] = category_values(pd.Series(column, dtype=object), False).to_numpy()
    names = list(dataset.features)
    if all(a.dtype == np.float64 for a in columns.values()):
        # One float block: the cheapest frame to build and for a model to read.
        matrix = np.column_stack([columns[n] for n in names]) if names else np.empty((0, 0))
        return pd.DataFrame(matrix, columns=names), columns
    return pd.DataFrame(columns, columns=names), columns


def is_positive(values: pd.Series, positive_label: str | bool | int) -> pd.Series:
    """True where a label equals `positive_label`, whatever type the file stored it as; False if missing."""
    import pandas as pd

    if isinstance(positive_label, bool):
        if pd.api.types.is_bool_dtype(values):
            found = values == positive_label
        else:
            text = values.map(category_text).map(lambda v: v.lower() if isinstance(v, str) else "")
            found = text.isin(_TRUE if positive_label else _FALSE)
    elif isinstance(positive_label, int):
        if pd.api.types.is_numeric_dtype(values):
            found = values.astype("float64") == positive_label
        else:
            found = pd.to_numeric(values.map(category_text), errors="coerce") == positive_label
    else:
        found = values.map(category_text) == positive_label.strip()
    return found.astype("boolean").fillna(False).astype(bool)


def positive_vector(values: pd.Series, positive_label: str | bool | int) -> pd.Series:
    """The label as the model's target: 1 where it is `positive_label`, else 0 (int64)."""
    return is_positive(values, positive_label).astype("int64")
