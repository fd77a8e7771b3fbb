"""Request models generated from the dataset config and the GX data contract."""

from __future__ import annotations

import json
from datetime import date

import pytest
from pydantic import ValidationError

from ctcd.errors import ConfigError
from ctcd.serving.schema import ColumnRule, build_schema, contract_rules, rows_to_frame


@pytest.fixture
def suite(tmp_path, default_config):
    ds = default_config.dataset
    num, other, cat = ds.numerical_features[0], ds.numerical_features[1], ds.categorical_features[0]
    expectations = [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": num, "min_value": 0, "max_value": 100},
        },
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": num, "min_value": 10}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": cat, "value_set": [1, 2, 3]}},
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": other, "min_value": 0, "max_value": 1, "mostly": 0.95},
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": other, "min_value": 0, "max_value": 1},
            "severity": "warning",
        },
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}},
    ]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "s", "expectations": expectations}), encoding="utf-8")
    return path


def _row(cfg, **overrides):
    row = {c: 50.0 for c in cfg.dataset.numerical_features}
    row |= {c: 1 for c in cfg.dataset.categorical_features}
    return {**row, **overrides}


def test_contract_rules_keep_hard_ranges_and_sets_only(suite, default_config):
    ds = default_config.dataset
    rules = contract_rules(suite)
    assert rules[ds.numerical_features[0]] == ColumnRule(min_value=10.0, max_value=100.0)
    assert rules[ds.categorical_features[0]].allowed == (1, 2, 3)
    assert ds.numerical_features[1] not in rules  # `mostly` < 1 and warnings do not reject single rows
    assert contract_rules(suite.parent / "missing.json") == {}


def test_contract_rules_report_a_broken_suite(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        contract_rules(bad)


def test_row_model_accepts_valid_rows_and_rejects_malformed_ones(suite, default_config):
    cfg = default_config
    ds = cfg.dataset
    num, cat = ds.numerical_features[0], ds.categorical_features[0]
    row_model = build_schema(cfg, contract_rules(suite)).row

    ok = row_model.model_validate_json(json.dumps(_row(cfg, **{ds.id_column: 7, "as_of": "2026-01-08"})))
    assert getattr(ok, ds.id_column) == 7 and ok.as_of == date(2026, 1, 8)
    assert getattr(row_model.model_validate(_row(cfg)), ds.id_column) is None

    bad_inputs = {
        "missing": json.dumps({k: v for k, v in _row(cfg).items() if k != num}),
        "string": json.dumps(_row(cfg, **{num: "50"})),
        "nan": json.dumps(_row(cfg, **{num: 0}))[:-1] + f', "{num}": NaN' + "}",
        "below range": json.dumps(_row(cfg, **{num: 5})),
        "above range": json.dumps(_row(cfg, **{num: 101})),
        "unknown category": json.dumps(_row(cfg, **{cat: 9})),
        "extra field": json.dumps(_row(cfg, extra=1)),
        "bad date": json.dumps(_row(cfg, as_of="yesterday")),
    }
    for name, text in bad_inputs.items():
        with pytest.raises(ValidationError):
            row_model.model_validate_json(text)
            pytest.fail(f"{name} was accepted")


def test_without_a_suite_types_still_apply(default_config):
    cfg = default_config
    row_model = build_schema(cfg, rules={}).row
    cat = cfg.dataset.categorical_features[0]
    assert getattr(row_model.model_validate(_row(cfg, **{cat: 9.0})), cat) == 9.0
    with pytest.raises(ValidationError, match="finite"):
        row_model.model_validate(_row(cfg, **{cat: float("inf")}))


def test_prediction_model_echoes_the_id_column(default_config):
    prediction = build_schema(default_config, rules={}).prediction
    answer = prediction(request_id="r", probability=0.3, prediction=0, model_version="2")
    assert answer.model_dump()[default_config.dataset.id_column] is None


def test_columns_that_clash_with_response_fields_are_a_config_error(default_config):
    ds = default_config.dataset.model_copy(update={"id_column": "probability"})
    cfg = default_config.model_copy(update={"dataset": ds})
    with pytest.raises(ConfigError, match="probability"):
        build_schema(cfg, rules={})


def test_rows_to_frame_is_float64_in_feature_order(default_config):
    cfg = default_config
    schema = build_schema(cfg, rules={})
    rows = [
        schema.row.model_validate(_row(cfg, **{cfg.dataset.numerical_features[0]: float(i)}))
        for i in range(3)
    ]
    frame = rows_to_frame(rows, schema.features)
    assert list(frame.columns) == cfg.dataset.features
    assert set(frame.dtypes.astype(str)) == {"float64"}
    assert frame[cfg.dataset.numerical_features[0]].tolist() == [0.0, 1.0, 2.0]


def test_ids_and_days_are_limited_to_what_the_prediction_log_can_store(default_config):
    cfg = default_config
    id_column = cfg.dataset.id_column
    row_model = build_schema(cfg, rules={}).row
    for accepted in (2**63 - 1, -(2**63), "any text", str(2**64)):
        assert getattr(
            row_model.model_validate_json(json.dumps(_row(cfg, **{id_column: accepted}))), id_column
        ) == (accepted)
    for day in ("1678-01-01", "2262-04-10"):
        assert row_model.model_validate_json(json.dumps(_row(cfg, as_of=day))).as_of == date.fromisoformat(
            day
        )
    too_wide = [{id_column: 2**63}, {id_column: -(2**63) - 1}, {id_column: 2**64}]
    too_wide += [{"as_of": day} for day in ("0001-01-01", "1677-12-31", "2262-04-11", "9999-12-31")]
    for overrides in too_wide:
        with pytest.raises(ValidationError):
            row_model.model_validate_json(json.dumps(_row(cfg, **overrides)))
            pytest.fail(f"{overrides} was accepted")


def test_the_published_schema_states_the_limits(default_config):
    properties = build_schema(default_config, rules={}).row.model_json_schema()["properties"]
    integer = next(
        o for o in properties[default_config.dataset.id_column]["anyOf"] if o.get("type") == "integer"
    )
    assert (integer["minimum"], integer["maximum"]) == (-(2**63), 2**63 - 1)
    day = next(o for o in properties["as_of"]["anyOf"] if o.get("format") == "date")
    assert (day["formatMinimum"], day["formatMaximum"]) == ("1678-01-01", "2262-04-10")


def test_critical_category_sets_are_the_known_categories_even_with_mostly(tmp_path, default_config):
    """A critical set that tolerates a few misses per batch (`mostly`) still lists the known categories (a
    request with another one gets `serving.unknown_category`); a set that only warns binds none."""
    cat = default_config.dataset.categorical_features[0]
    sets = [
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": cat, "value_set": [1, 2], "mostly": 0.999},
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": cat, "value_set": [2, 3]},
            "severity": "warning",
        },
        {
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "other", "value_set": ["only"]},
            "severity": "warning",
        },
    ]
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"name": "s", "expectations": sets}), encoding="utf-8")
    rules = contract_rules(path)
    assert rules[cat].allowed == (1, 2) and "other" not in rules


@pytest.mark.parametrize(
    ("config", "column", "unknown"),
    [("default.yaml", "car", 99), ("examples/bank-marketing.yaml", "job", "astronaut")],
)
def test_the_shipped_suites_refuse_an_unknown_category_at_serving(config, column, unknown):
    from ctcd.config import load_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "configs" / config)
    row_model = build_schema(cfg).row
    properties = row_model.model_json_schema()["properties"]
    assert properties[column].get("enum"), properties[column]
    known = properties[column]["enum"][0]
    row = {c: 1.0 for c in cfg.dataset.numerical_features} | {
        c: None for c in cfg.dataset.categorical_features
    }
    for c in cfg.dataset.categorical_features:
        row[c] = properties[c]["enum"][0] if properties[c].get("enum") else "x"
    row_model.model_validate({**row, column: known})
    with pytest.raises(ValidationError, match=f"unknown category '{unknown}' for {column}"):
        row_model.model_validate({**row, column: unknown})


# Values of every JSON type, and the look-alikes lax parsing would coerce: numbers as text, booleans as
# numbers, 1.0 as an integer, Unix times and datetimes as days.
PROBES = [
    *(0, 1, 1.0, 2.5, -1, 50, 1e30, 2**63, True, False, None, [], {}, [1], {"a": 1}),
    *("", "0", "1", "01", " 1", "1.0", "2.5", "red", " red", "RED", "yes", "2026-01-08", " 2026-01-08"),
    *("2026-01-08T00:00:00", "2026-01-08T00:00:00Z", "20260108", "2026-1-8", "2026-02-30", "86400"),
]


def test_the_row_model_accepts_exactly_what_its_published_schema_allows(default_config):
    """Every field, probed with each value in turn in an otherwise valid row: pydantic and the published
    JSON Schema (read as OpenAPI 3.0 reads it: draft 4, `format: date` checked) agree on every one."""
    import jsonschema

    cfg = default_config
    ds = cfg.dataset
    (num, in_set, *_), (codes, colors, *_) = ds.numerical_features, ds.categorical_features
    rules = {
        num: ColumnRule(min_value=0.0, max_value=100.0),
        in_set: ColumnRule(allowed=(1, 2.5)),
        codes: ColumnRule(allowed=(1, 2, 3)),
        colors: ColumnRule(allowed=("red", "green")),
    }
    row_model = build_schema(cfg, rules).row
    published = jsonschema.Draft4Validator(
        row_model.model_json_schema(), format_checker=jsonschema.FormatChecker()
    )
    valid = _row(cfg, **{in_set: 1, codes: 1, colors: "red"})
    assert published.is_valid(valid) and row_model.model_validate_json(json.dumps(valid))
    disagreements = []
    for field in [*row_model.model_fields]:
        for value in PROBES:
            row = {**valid, field: value}
            try:
                row_model.model_validate_json(json.dumps(row))
                served = True
            except ValidationError:
                served = False
            if served != published.is_valid(row):
                disagreements.append(f"{field}={value!r}: {'accepted' if served else 'refused'}")
    assert not disagreements, disagreements


@pytest.mark.parametrize("as_of", [0, "0", 86400, "2026-01-08T00:00:00", "20260108", True])
def test_as_of_is_a_day_as_text_never_a_unix_time(default_config, as_of):
    """Regression: lax parsing read `"as_of": 0` as 1970-01-01 and logged the prediction there."""
    row_model = build_schema(default_config, rules={}).row
    with pytest.raises(ValidationError, match="as_of must be a day as text, YYYY-MM-DD"):
        row_model.model_validate_json(json.dumps(_row(default_config, as_of=as_of)))
