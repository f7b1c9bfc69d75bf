"""``batchrun estimate --like REPORT``: the answers' lengths of a previous run, to expect again.

A nightly job has the report of last night's run (``batchrun.report/1``, the ``.report.json``
beside its output). Its mean completion tokens per model — ``models.<model>.tokens.completion``
over the model's succeeded lines that reported usage (``succeeded`` less
``responses_without_usage``) — is what an estimate of tonight's file expects of each answer,
within the request's own cap. The report names the model an answer was billed as, which may be
the request's model with a date (``gpt-4o-mini-2024-07-18``): such names count for the undated
model too, pooled.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError

_DATED = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")  # how OpenAI dates a model's snapshot


class Like:
    """The mean completion tokens per model of the run reported in ``source``."""

    def __init__(self, source: str, means: dict[str, float]) -> None:
        self.source = source
        self.means = means

    def mean(self, model: str) -> float | None:
        """The mean completion tokens of ``model``'s answers, or ``None`` when the run had none."""
        return self.means.get(model, self.means.get(_DATED.sub("", model)))


def load_like(path: Path) -> Like:
    """The means of the report in ``path``.

    :raises ConfigError: it cannot be read, or is not a ``batchrun.report/1`` document.
    """
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--like: cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--like: {path} is not JSON ({exc}); it takes a run's report (.report.json, "
                          "or batchrun report --json)") from None
    if not isinstance(doc, dict) or doc.get("schema") != "batchrun.report/1" or not isinstance(doc.get("models"), dict):
        raise ConfigError(f"--like: {path} is not a batchrun report (schema batchrun.report/1); it takes a run's "
                          "report (.report.json, or batchrun report --json)")
    tokens: dict[str, int] = {}
    answers: dict[str, int] = {}
    for model, entry in doc["models"].items():
        counted = _answers_and_tokens(entry)
        if counted is None:
            raise ConfigError(f"--like: {path}: model {model!r} has no succeeded/tokens.completion counts")
        for name in {model, _DATED.sub("", model)}:
            answers[name] = answers.get(name, 0) + counted[0]
            tokens[name] = tokens.get(name, 0) + counted[1]
    return Like(str(path), {model: tokens[model] / n for model, n in sorted(answers.items()) if n > 0})


def _answers_and_tokens(entry: Any) -> tuple[int, int] | None:
    """``(answers with usage, their completion tokens)`` of one model's entry of a report."""
    try:
        succeeded = entry["succeeded"]
        completion = entry["tokens"]["completion"]
        without = entry.get("responses_without_usage", 0)
    except (KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(n, int) and n >= 0 for n in (succeeded, completion, without)):
        return None
    return max(succeeded - without, 0), completion
