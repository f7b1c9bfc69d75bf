"""`batchrun.label.schema`: the JSON Schema subset answers are checked against, and what a
schema file may hold."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.label.schema import schema_problem, strict_compatible, unchecked_keywords, validate

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "count": {"type": "integer"},
        "currency": {"enum": ["USD", "EUR"]},
        "paid": {"type": ["boolean", "null"]},
        "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}},
                                             "required": ["sku"], "additionalProperties": False}},
        "kind": {"anyOf": [{"const": "invoice"}, {"const": "receipt"}]},
    },
    "required": ["vendor", "total"],
    "additionalProperties": False,
}
GOOD = {"vendor": "ACME", "total": 9.5, "count": 2.0, "currency": "EUR", "paid": None, "lines": [{"sku": "a"}],
        "kind": "receipt"}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"total": "9.5"}, "$.total: expected number, got string"),
        ({"total": True}, "$.total: expected number, got boolean"),
        ({"count": 2.5}, "$.count: expected integer, got number"),
        ({"currency": "GBP"}, "$.currency: 'GBP' is not one of 'USD', 'EUR'"),
        ({"paid": "yes"}, "$.paid: expected boolean or null, got string"),
        ({"lines": [{"sku": "a"}, {}]}, "$.lines[1]: 'sku' is required"),
        ({"lines": [{"sku": "a", "qty": 1}]}, "$.lines[0]: 'qty' is not an allowed property"),
        ({"kind": "memo"}, "$.kind: matches none of the anyOf alternatives"),
        ({"extra": 1}, "$: 'extra' is not an allowed property"),
    ],
)
def test_schema_subset_validation(change: dict[str, Any], problem: str | None) -> None:
    assert validate({**GOOD, **change}, SCHEMA) == problem
    assert validate({"total": 1}, SCHEMA) == "$: 'vendor' is required"


def test_strict_compatibility_and_unchecked_keywords() -> None:
    strict = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    assert strict_compatible(strict)
    assert not strict_compatible({**strict, "required": []})
    assert not strict_compatible({**strict, "properties": {"a": {"type": "object", "properties": {}}}})
    assert unchecked_keywords({"type": "object", "title": "t", "minProperties": 1,
                               "properties": {"a": {"$ref": "#/x", "description": "d"}}}) == ["$ref", "minProperties"]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"type": ["string", "null"]}}}, None),
        ([], "$: a schema must be a JSON object"),
        ({"properties": {"a": {"type": "text"}}}, "$.a: unknown type 'text' (one of object, array, string, number, "
                                                   "integer, boolean, null)"),
        ({"type": "object", "properties": {"a": {"enum": "x"}}}, "$.a: enum must be a list"),
        ({"type": "object", "required": "a"}, "$: required must be a list"),
        ({"type": "array", "items": {"anyOf": [{"type": "string"}, 3]}}, "$[].anyOf[1]: a schema must be a JSON object"),
    ],
)
def test_schema_problems_say_where(schema: Any, problem: str | None) -> None:
    assert schema_problem(schema) == problem
