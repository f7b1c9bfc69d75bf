"""The JSON Schema subset that `batchrun label --json-schema` checks answers against, locally.

The endpoint's structured outputs should already hold the model to the schema; this check is
what makes a wrong answer an error row rather than a silently wrong value when the endpoint
does not enforce it (no structured output support, ``--no-response-format``, a proxy that
drops the field).

Checked: ``type`` (a name or a list of names: object, array, string, number, integer,
boolean, null), ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``
(false or a schema), ``items`` and ``anyOf``. Annotations (``title``, ``description``,
``default``, ``examples``, ``$schema``, ``$id``, ``$comment``) mean nothing here. Any other
keyword (``pattern``, ``minimum``, ``$ref`` …) is left to the endpoint: `unchecked_keywords`
names them so the user is told.

No dependency on ``jsonschema``: answers are small and this subset is what OpenAI's strict
structured outputs require anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..json_numbers import is_int, is_number

_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
_CHECKED = frozenset({"type", "enum", "const", "properties", "required", "additionalProperties", "items", "anyOf"})
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment"})


def schema_problem(schema: Any, path: str = "$") -> str | None:
    """What makes ``schema`` unusable for this subset (a bad ``type``, a non-object), or ``None``."""
    if not isinstance(schema, dict):
        return f"{path}: a schema must be a JSON object"
    kinds = schema.get("type", [])
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind not in _TYPES:
            return f"{path}: unknown type {kind!r} (one of {', '.join(_TYPES)})"
    if "enum" in schema and not isinstance(schema["enum"], list):
        return f"{path}: enum must be a list"
    if not isinstance(schema.get("required", []), list):
        return f"{path}: required must be a list"
    for where, sub in _children(schema, path):
        problem = schema_problem(sub, where)
        if problem:
            return problem
    return None


def unchecked_keywords(schema: dict[str, Any]) -> list[str]:
    """Keywords in ``schema`` (at any depth) that `validate` does not check, sorted."""
    found = set(schema) - _CHECKED - _ANNOTATIONS
    for _, sub in _children(schema, "$"):
        if isinstance(sub, dict):
            found.update(unchecked_keywords(sub))
    return sorted(found)


def strict_compatible(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's ``strict: true`` accepts ``schema``: every object lists all its
    properties as required and sets ``additionalProperties: false``."""
    if "properties" in schema or schema.get("type") == "object":
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False or set(schema.get("required", [])) != set(properties):
            return False
    return all(strict_compatible(sub) for _, sub in _children(schema, "$") if isinstance(sub, dict))


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
    """The first way ``value`` breaks ``schema`` (e.g. ``$.total: expected number, got string``),
    or ``None`` when it conforms to the checked subset."""
    kinds = schema.get("type")
    if kinds is not None and not any(_is(value, kind) for kind in (kinds if isinstance(kinds, list) else [kinds])):
        return f"{path}: expected {' or '.join(kinds) if isinstance(kinds, list) else kinds}, got {_kind(value)}"
    if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
        return f"{path}: {_short(value)} is not one of {', '.join(map(_short, schema['enum']))}"
    if "const" in schema and not _equal(value, schema["const"]):
        return f"{path}: must be {_short(schema['const'])}"
    if "anyOf" in schema and all(validate(value, sub, path) for sub in schema["anyOf"]):
        return f"{path}: matches none of the anyOf alternatives"
    if isinstance(value, dict):
        return _validate_object(value, schema, path)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problem = validate(item, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    return None


def _validate_object(value: dict[str, Any], schema: dict[str, Any], path: str) -> str | None:
    for name in schema.get("required", []):
        if name not in value:
            return f"{path}: {name!r} is required"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        sub = properties.get(name)
        if sub is None:
            if extra is False:
                return f"{path}: {name!r} is not an allowed property"
            sub = extra if isinstance(extra, dict) else None
        if sub is not None:
            problem = validate(item, sub, f"{path}.{name}")
            if problem:
                return problem
    return None


def _children(schema: dict[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            yield f"{path}.{name}", sub
    if "items" in schema:
        yield f"{path}[]", schema["items"]
    if isinstance(schema.get("additionalProperties"), dict):
        yield f"{path}.*", schema["additionalProperties"]
    for i, sub in enumerate(schema.get("anyOf") or []):
        yield f"{path}.anyOf[{i}]", sub


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return is_int(value) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return is_number(value)
    return _kind(value) == kind


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _equal(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, though Python says so.
    return _kind(a) == _kind(b) and a == b


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
