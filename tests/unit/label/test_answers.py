"""`batchrun.label.answers`: what is asked for, and how answers are judged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.errors import ConfigError
from batchrun.label.answers import (
    INVALID_JSON,
    INVALID_LABEL,
    NO_ANSWER,
    SCHEMA_MISMATCH,
    InvalidAnswer,
    JsonSchema,
    Labels,
    answer_text,
    load_json_schema,
)

from .test_schema import SCHEMA

LABELS = Labels(("Positive", "negative", "very  mixed"))


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("Positive", "Positive"),
        ("  positive\n", "Positive"),
        ("POSITIVE.", "Positive"),
        ('"negative"', "negative"),
        ("'Negative'.", "negative"),
        ('"negative."', "negative"),
        ("**negative**", "negative"),
        ("`positive`", "Positive"),
        ('{"label": "negative"}', "negative"),
        ('{"sentiment": "Positive"}', "Positive"),
        ('```json\n{"label": "positive"}\n```', "Positive"),
        ("Very Mixed", "very  mixed"),
        ("“positive”", "Positive"),
    ],
)
def test_label_answers_are_normalised_to_the_label_as_given(answer: str, label: str) -> None:
    assert LABELS.parse(answer) == {"label": label}


@pytest.mark.parametrize(
    "answer", ["positive!!", "The sentiment is positive", "neutral", "", '{"label": "neutral"}', '{"a": "x", "b": "y"}']
)
def test_an_answer_outside_the_set_is_invalid_never_a_guess(answer: str) -> None:
    with pytest.raises(InvalidAnswer) as caught:
        LABELS.parse(answer)
    assert caught.value.code == INVALID_LABEL
    assert "is not one of: Positive, negative, very  mixed" in caught.value.message


def test_labels_ask_for_an_enum_and_say_the_labels_in_the_prompt() -> None:
    labels = Labels.parse_option(" positive, negative ,neutral,")
    assert labels.labels == ("positive", "negative", "neutral")
    fmt = labels.response_format()
    assert fmt is not None and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["properties"]["label"]["enum"] == ["positive", "negative", "neutral"]
    assert labels.instruction() == "Answer with exactly one of: positive, negative, neutral"


@pytest.mark.parametrize("option", ["positive", "a,A", "a,,", "x, X ,y"])
def test_bad_label_sets(option: str) -> None:
    with pytest.raises(ConfigError, match="--labels"):
        Labels.parse_option(option)


def test_schema_answers_become_columns_or_errors() -> None:
    spec = JsonSchema(SCHEMA)
    assert spec.columns == ("vendor", "total", "count", "currency", "paid", "lines", "kind")
    assert spec.parse(orjson.dumps({"vendor": "A", "total": 1}).decode()) == {
        "vendor": "A", "total": 1, "count": None, "currency": None, "paid": None, "lines": None, "kind": None}
    assert spec.parse('```json\n{"vendor": "A", "total": 2}\n```')["total"] == 2
    for text, code in [("not json", INVALID_JSON), ("[1]", SCHEMA_MISMATCH), ('{"vendor": 1, "total": 1}', SCHEMA_MISMATCH)]:
        with pytest.raises(InvalidAnswer) as caught:
            spec.parse(text)
        assert caught.value.code == code


def test_schema_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "invoice.json"
    path.write_bytes(orjson.dumps(SCHEMA))
    spec = load_json_schema(path)
    assert (spec.name, spec.strict) == ("invoice", False)  # "total" etc. are optional: not strict-compatible
    assert "strict: false" in caplog.text

    wrapped = {"name": "my schema!", "strict": True, "schema": {**SCHEMA, "properties": {"a": {"type": "string",
                                                                                              "pattern": "^x"}}}}
    path.write_bytes(orjson.dumps(wrapped))
    spec = load_json_schema(path)
    assert (spec.name, spec.strict, spec.columns) == ("my_schema_", True, ("a",))
    assert "not checked locally, left to the endpoint: pattern" in caplog.text
    fmt = spec.response_format()
    assert fmt == {"type": "json_schema", "json_schema": {"name": "my_schema_", "strict": True,
                                                          "schema": wrapped["schema"]}}

    for content, message in [(b"{", "not valid JSON"), (b'{"type": "object"}', "object with properties"),
                             (b'{"properties": {"a": {"type": "text"}}}', r"\$.a: unknown type 'text'"),
                             (b"[]", "a schema must be a JSON object")]:
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=message):
            load_json_schema(path)


def test_answer_text_of_a_chat_completion() -> None:
    def body(**message: Any) -> dict[str, Any]:
        return {"choices": [{"message": {"role": "assistant", **message}, "finish_reason": "stop"}]}

    assert answer_text(body(content="hi")) == "hi"
    bad_bodies: list[Any] = [body(content=None, refusal="I can't help with that."), body(content=None),
                             {"choices": []}, None]
    for bad in bad_bodies:
        with pytest.raises(InvalidAnswer) as caught:
            answer_text(bad)
        assert caught.value.code == NO_ANSWER
