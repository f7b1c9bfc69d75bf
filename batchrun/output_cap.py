"""Answers the output-token cap cut short: an endpoint answers 200 with what it had, often
nothing at all when a reasoning model spent the whole cap thinking."""

from __future__ import annotations

from typing import Any

# What to do about it, where the report says how many answers were cut.
ADVICE = ("raise max_tokens / max_completion_tokens in the requests (batchrun label: --param max_tokens=N); "
          "a reasoning model thinks within it")


def hit_output_cap(body: Any) -> bool:
    """Whether an answer stopped at its output cap: a chat or completions choice that finished
    with ``"length"``, or a Responses API answer left ``incomplete`` at ``max_output_tokens``."""
    if not isinstance(body, dict):
        return False
    choices = body.get("choices")
    if isinstance(choices, list):
        return any(isinstance(choice, dict) and choice.get("finish_reason") == "length" for choice in choices)
    details = body.get("incomplete_details")
    return (body.get("status") == "incomplete" and isinstance(details, dict)
            and details.get("reason") == "max_output_tokens")
