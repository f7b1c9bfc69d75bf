"""`batchrun.label.template`: the three template formats, placeholders and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.errors import ConfigError
from batchrun.label.template import (
    load_template,
    parse_json_template,
    parse_text_template,
)


def test_plain_text_is_one_user_message_with_placeholders_and_literal_braces() -> None:
    template = parse_text_template("\n\nReview of {product}: {text}\nAnswer as {{\"label\": ...}}\n\n")
    assert template.fields == ("product", "text")
    values = {"product": "Kettle", "text": "It {boils}.", "unused": 1}
    assert template.render(values) == [
        {"role": "user", "content": 'Review of Kettle: It {boils}.\nAnswer as {"label": ...}'}]


def test_values_that_are_not_strings_render_as_json_and_null_as_nothing() -> None:
    template = parse_text_template("{n}|{b}|{none}|{obj}|{text}")
    values = {"n": 1.5, "b": True, "none": None, "obj": {"a": ["é"]}, "text": "x"}
    assert template.render(values)[0]["content"] == '1.5|true||{"a":["é"]}|x'


def test_sections_make_a_few_shot_conversation() -> None:
    text = """
### System
You label reviews.
### user
Review: Great.
### assistant
positive

### user
  Review: {text}
### notes are ordinary text
"""
    template = parse_text_template(text)
    assert [(m["role"], m["content"]) for m in template.render({"text": "Bad."})] == [
        ("system", "You label reviews."),
        ("user", "Review: Great."),
        ("assistant", "positive"),
        ("user", "  Review: Bad.\n### notes are ordinary text"),
    ]


def test_a_markdown_heading_first_is_plain_text() -> None:
    template = parse_text_template("### Instructions\nLabel {text}")
    assert template.render({"text": "x"}) == [{"role": "user", "content": "### Instructions\nLabel x"}]


def test_json_list_of_messages(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text('[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "{q} {{x}}"}]')
    assert load_template(path).render({"q": "why?"}) == [
        {"role": "developer", "content": "Be brief."}, {"role": "user", "content": "why? {x}"}]


def test_system_and_instruction_are_added_in_the_system_message() -> None:
    plain = parse_text_template("Label {text}")
    with_system = plain.with_system("You label {kind}.").with_instruction("Answer with one of: a, b")
    assert with_system.fields == ("kind", "text")
    # The instruction is literal text: its braces are not placeholders.
    assert with_system.with_instruction("{not a field}").render({"kind": "mail", "text": "x"})[0] == {
        "role": "system", "content": "You label mail.\n\nAnswer with one of: a, b\n\n{not a field}"}
    assert plain.with_instruction("Say a or b").render({"text": "x"})[0] == {"role": "system", "content": "Say a or b"}
    with pytest.raises(ConfigError, match="already has a system message"):
        parse_text_template("### system\nS\n### user\nU").with_system("again")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the template is empty"),
        ("line one\nJSON like {\"a\": 1", r"template:2: a lone '\{'; write \{\{ and \}\} for literal braces"),
        ("oops }", "template:1: a lone '}'"),
        ("empty {} here", "template:1: an empty {}"),
        ("### user\n\n### assistant\nx", "template:1: the user message is empty"),
        ("### system\nok\n### user\nfine\nbad {", "template:5: a lone"),
    ],
)
def test_text_template_errors_point_at_the_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_text_template(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "not valid JSON"),
        ('{"role": "user"}', "expected a non-empty JSON list"),
        ('[{"role": "user", "content": "x", "name": "n"}]', 'exactly "role" and "content"'),
        ('[{"role": "tool", "content": "x"}]', "role must be one of"),
        ('[{"role": "user", "content": [{"type": "text"}]}]', "content must be a non-empty string"),
        ('[{"role": "user", "content": "{"}]', r"message 1: a lone '\{'"),
    ],
)
def test_json_template_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_json_template(text)


def test_unreadable_template_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such template file"):
        load_template(tmp_path / "missing.txt")
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 {x}")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_template(tmp_path / "latin1.txt")
