"""Hypothesis strategies generated from an OpenAPI document (the JSON Schema subset pydantic emits).

`from_schema` draws values the schema accepts; `mutated` draws values close to valid ones that it does
not (a wrong type, a missing or unknown field, out-of-range numbers, odd nesting). Supported: $ref,
anyOf/oneOf, enum/const, object (properties, required, additionalProperties), array (items,
minItems/maxItems), number/integer (minimum/maximum), string (format date), boolean, null.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import strategies as st

Schema = dict[str, Any]

ANY_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def resolve(doc: Schema, schema: Schema) -> Schema:
    """Follow `$ref` pointers (local ones, `#/...`) until a schema without one."""
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def request_schema(doc: Schema, path: str) -> Schema:
    """The JSON request body schema of `POST path`."""
    return resolve(doc, doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])


def from_schema(doc: Schema, schema: Schema) -> st.SearchStrategy[Any]:
    """Values that validate against `schema`."""
    schema = resolve(doc, schema)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of([from_schema(doc, option) for option in options])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(doc, v) for k, v in props.items() if k in required},
            optional={k: from_schema(doc, v) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            from_schema(doc, schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 8), 8),
        )
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if kind == "string":
        if schema.get("format") == "date":
            low = date.fromisoformat(schema.get("formatMinimum", "0001-01-01"))
            high = date.fromisoformat(schema.get("formatMaximum", "9999-12-31"))
            return st.dates(low, high).map(lambda d: d.isoformat())
        return st.text(max_size=40)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return ANY_JSON


def _invalid_leaf(doc: Schema, schema: Schema) -> st.SearchStrategy[Any]:
    schema = resolve(doc, schema)
    wrong = ANY_JSON
    if schema.get("type") == "number" and "maximum" in schema:
        wrong = wrong | st.floats(min_value=schema["maximum"], exclude_min=True, allow_infinity=False)
        wrong = wrong | st.integers(min_value=10**20) | st.just(float(schema["maximum"]) * 1e300)
    if "enum" in schema:
        wrong = wrong | st.integers().filter(lambda v: v not in schema["enum"])
    return wrong


@st.composite
def mutated(draw: st.DrawFn, doc: Schema, schema: Schema) -> Any:
    """A valid body with one thing broken at a drawn place."""
    body = draw(from_schema(doc, schema))
    rows = body.get("rows") if isinstance(body, dict) else None
    row_schema = resolve(doc, resolve(doc, schema)["properties"]["rows"]["items"])
    how = draw(
        st.sampled_from(
            ["leaf", "drop", "extra", "rows-type", "body-type", "row-type", "nest", "many", "empty"]
        )
    )
    if how in ("leaf", "drop", "extra", "row-type") and rows:
        i = draw(st.integers(0, len(rows) - 1))
        row = dict(rows[i])
        if how == "leaf":
            key = draw(st.sampled_from(sorted(row_schema["properties"])))
            row[key] = draw(_invalid_leaf(doc, row_schema["properties"][key]))
        elif how == "drop":
            row.pop(draw(st.sampled_from(sorted(row_schema["required"]))), None)
        elif how == "extra":
            row[
                draw(st.text(min_size=1, max_size=20).filter(lambda k: k not in row_schema["properties"]))
            ] = draw(ANY_JSON)
        rows[i] = draw(ANY_JSON) if how == "row-type" else row
    elif how == "rows-type":
        body["rows"] = draw(ANY_JSON.filter(lambda v: not isinstance(v, list)))
    elif how == "body-type":
        return draw(ANY_JSON)
    elif how == "nest" and rows:
        body["rows"] = [rows]
    elif how == "many" and rows:
        body["rows"] = rows * (resolve(doc, schema)["properties"]["rows"].get("maxItems", 64) + 1)
    elif how == "empty":
        body["rows"] = []
    return body
