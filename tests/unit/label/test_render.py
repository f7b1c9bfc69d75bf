"""`batchrun.label.render`: what a row's request is — its body, the output cap set by default
for --labels, the params — and the rows that cannot be sent (more in test_job.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.errors import ConfigError, InputFileError
from batchrun.label.answers import REASONING_ROOM, FreeText, JsonSchema, Labels
from batchrun.label.render import Renderer, RequestSpec, parse_params
from batchrun.label.template import parse_text_template

TEMPLATE = parse_text_template("Review: {text}")


def spec(answer: Any = None, **params: Any) -> RequestSpec:
    return RequestSpec(TEMPLATE, "o4-mini", answer or FreeText(), params)


def test_labels_cap_the_output_at_the_longest_answer_and_room_to_think() -> None:
    labels = Labels(("yes", "no", "ça dépend"))  # 9 characters, 11 bytes
    made = spec(labels)
    longest = len(b'{"label":"\xc3\xa7a d\xc3\xa9pend"}')
    assert made.default_cap == REASONING_ROOM + longest
    body = made.body({"text": "fine"})
    assert body["max_completion_tokens"] == REASONING_ROOM + longest
    assert list(body) == ["model", "messages", "response_format", "max_completion_tokens"]


@pytest.mark.parametrize("given", ["max_completion_tokens", "max_tokens"])
def test_a_cap_given_as_a_param_wins_and_none_is_added(given: str) -> None:
    made = spec(Labels(("yes", "no")), **{given: 16, "temperature": 0})
    assert made.default_cap is None
    body = made.body({"text": "fine"})
    assert body[given] == 16 and body["temperature"] == 0
    assert {"max_completion_tokens", "max_tokens"} & set(body) == {given}


def test_free_text_and_schemas_get_no_cap_by_default() -> None:
    schema = JsonSchema({"type": "object", "properties": {"a": {"type": "string"}}})
    for answer in (FreeText(), schema):
        made = spec(answer)
        assert made.default_cap is None and "max_completion_tokens" not in made.body({"text": "x"})


def test_params_are_json_or_text_and_reserved_ones_are_refused() -> None:
    assert parse_params(["temperature=0", "stop=[\"\\n\"]", "reasoning_effort=low", "seed = 7"]) == {
        "temperature": 0, "stop": ["\n"], "reasoning_effort": "low", "seed": 7}
    for items, message in ((["temperature"], "expected NAME=VALUE"), (["a=1", "a=2"], "given twice")):
        with pytest.raises(ConfigError, match=message):
            parse_params(items)
    for name in ("model", "messages", "stream"):
        with pytest.raises(ConfigError, match=f"--param {name} cannot be given"):
            spec(**{name: 1})
    with pytest.raises(ConfigError, match="--param response_format cannot be given with --labels"):
        spec(Labels(("a", "b")), response_format={"type": "text"})


def test_the_same_rows_render_the_same_bytes_and_bad_rows_are_listed(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("id,text\n1,good\n2,fine\n")
    made = spec(Labels(("yes", "no")))
    first = [request.line() for request in Renderer(data, made, "id")]
    assert first == [request.line() for request in Renderer(data, made, "id")]
    assert orjson.loads(first[0]) == {"custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
                                      "body": made.body({"text": "good"})}
    data.write_text("id,text\n1,good\n1,again\n,empty\n")
    with pytest.raises(InputFileError) as caught:
        list(Renderer(data, made, "id"))
    assert "2 rows cannot be sent; nothing was sent" in str(caught.value)
    assert "d.csv:3: row 2 has id '1' (id), already used by row 1 (line 2)" in str(caught.value)
    assert "d.csv:4: row 3 has no usable id in 'id'" in str(caught.value)
