"""Token usage: one normalised shape for chat, Responses API and embeddings answers (SPEC §4).

`Usage.from_body` reads whichever shape the endpoint returned; `UsageTotals` adds them up per
model in constant memory.
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
        if not isinstance(usage, dict):
            return None
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

    def add(self, other: Usage) -> None:
        self.prompt += other.prompt
        self.completion += other.completion
        self.total += other.total
        self.cached += other.cached
        self.reasoning += other.reasoning


class UsageTotals:
    """Usage summed per model."""

    def __init__(self) -> None:
        self.by_model: dict[str, Usage] = {}

    def add(self, model: str | None, usage: Usage) -> None:
        key = model or "unknown"
        totals = self.by_model.get(key)
        if totals is None:
            totals = self.by_model[key] = Usage()
        totals.add(usage)

    def overall(self) -> Usage:
        total = Usage()
        for usage in self.by_model.values():
            total.add(usage)
        return total

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {model: asdict(usage) for model, usage in sorted(self.by_model.items())}


def _detail(usage: dict[str, Any], group: str, key: str) -> Any:
    details = usage.get(group)
    return details.get(key) if isinstance(details, dict) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
