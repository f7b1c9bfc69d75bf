"""Token usage in one shape from the chat, Responses API and embeddings answers."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.usage import Usage


def test_a_chat_answers_usage_with_its_details() -> None:
    body = {"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                      "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}}
    assert Usage.from_body(body) == Usage(prompt=10, completion=5, total=15, cached=4, reasoning=2)


def test_a_responses_api_answers_usage_with_its_details() -> None:
    usage = {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10,
             "input_tokens_details": {"cached_tokens": 1}, "output_tokens_details": {"reasoning_tokens": 2}}
    assert Usage.from_dict(usage) == Usage(7, 3, 10, 1, 2)


def test_an_embeddings_answer_has_no_completion_and_a_missing_total_is_the_sum() -> None:
    assert Usage.from_dict({"prompt_tokens": 8, "total_tokens": 8}) == Usage(8, 0, 8, 0, 0)
    assert Usage.from_dict({"prompt_tokens": 8, "completion_tokens": 2}) == Usage(8, 2, 10, 0, 0)


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": "8", "completion_tokens": 2.5, "total_tokens": True, "prompt_tokens_details": [4]},
    {"prompt_tokens": None, "completion_tokens": -0.0, "prompt_tokens_details": {"cached_tokens": "x"}},
])
def test_odd_fields_count_as_zero(usage: dict[str, Any]) -> None:
    read = Usage.from_dict(usage)
    assert (read.prompt, read.completion, read.cached, read.reasoning) == (0, 0, 0, 0)


@pytest.mark.parametrize("body", [None, [], {"usage": None}, {"usage": [1]}, {"choices": []}])
def test_a_body_without_a_usage_object_reports_none(body: Any) -> None:
    assert Usage.from_body(body) is None


def test_adding_and_taking_back_a_part() -> None:
    total = Usage(10, 5, 15, 4, 2)
    part = Usage(3, 1, 4, 1, 0)
    total.add(part)
    assert total == Usage(13, 6, 19, 5, 2)
    assert total.minus(part) == Usage(10, 5, 15, 4, 2)
    assert part.as_dict() == {"prompt": 3, "completion": 1, "total": 4, "cached": 1, "reasoning": 0}
