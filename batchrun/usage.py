"""Token usage: one normalised shape for chat, Responses API and embeddings answers.

`Usage.from_body` reads whichever shape the endpoint returned (`accounting/report.py` adds them
up per model). The shapes it reads:

- chat and legacy completions (OpenAI, vLLM, llama.cpp …): ``prompt_tokens``,
  ``completion_tokens``, ``total_tokens``, ``prompt_tokens_details.cached_tokens``,
  ``completion_tokens_details.reasoning_tokens``;
- the Responses API: ``input_tokens``, ``output_tokens``, ``input_tokens_details.cached_tokens``,
  ``output_tokens_details.reasoning_tokens``;
- embeddings: ``prompt_tokens`` and ``total_tokens`` only.

Reasoning tokens are a part of the completion tokens and cached tokens a part of the prompt
tokens, as the APIs report them; nothing here adds them twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    total: int = 0
    cached: int = 0
    reasoning: int = 0

    @classmethod
    def from_body(cls, body: Any) -> Usage | None:
        """The usage of a response body, or ``None`` when it reports none."""
        usage = body.get("usage") if isinstance(body, dict) else None
        return cls.from_dict(usage) if isinstance(usage, dict) else None

    @classmethod
    def from_dict(cls, usage: dict[str, Any]) -> Usage:
        """A ``usage`` object of any of the shapes above; missing or odd fields count as 0."""
        if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
            prompt = _int(usage.get("input_tokens"))
            completion = _int(usage.get("output_tokens"))
            cached = _int(_detail(usage, "input_tokens_details", "cached_tokens"))
            reasoning = _int(_detail(usage, "output_tokens_details", "reasoning_tokens"))
        else:  # chat and legacy completions; embeddings have no completion tokens
            prompt = _int(usage.get("prompt_tokens"))
            completion = _int(usage.get("completion_tokens"))
            cached = _int(_detail(usage, "prompt_tokens_details", "cached_tokens"))
            reasoning = _int(_detail(usage, "completion_tokens_details", "reasoning_tokens"))
        total = _int(usage.get("total_tokens")) or prompt + completion
        return cls(prompt, completion, total, cached, reasoning)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: Usage) -> None:
        self.prompt += other.prompt
        self.completion += other.completion
        self.total += other.total
        self.cached += other.cached
        self.reasoning += other.reasoning

    def minus(self, part: Usage) -> Usage:
        """These tokens without ``part``, which was added to them."""
        return Usage(self.prompt - part.prompt, self.completion - part.completion, self.total - part.total,
                     self.cached - part.cached, self.reasoning - part.reasoning)


def _detail(usage: dict[str, Any], group: str, key: str) -> Any:
    details = usage.get(group)
    return details.get(key) if isinstance(details, dict) else None


def _int(value: Any) -> int:
    return value if type(value) is int else 0  # `json_numbers.is_int`, inline: five fields an answer
