"""What the model is asked to answer, and how an answer becomes the row's new column(s).

An `AnswerSpec` says three things about a labeling run, used at both of its ends:

- when rendering requests: the ``response_format`` to send (structured outputs) and an
  instruction for the prompt, so an endpoint without structured outputs answers well too;
- when joining results: how to turn the answer text into column values, or refuse it with an
  `InvalidAnswer` — the row then gets an error, never a silently wrong value.

Three kinds:

- `FreeText`: the answer as it is, in column ``answer``.
- `Labels` (``--labels a,b,c``): one of a fixed set, in column ``label``. Sent as a JSON schema
  with an ``enum``; the answer is normalised before it is compared — surrounding whitespace,
  quotes, backticks and asterisks, a trailing period, a ``{"label": …}`` wrapper, a Markdown
  code fence, letter case — and given back spelled as in the set.
- `JsonSchema` (``--json-schema FILE``): a JSON object; each top-level property is a column.
  Checked against the subset of JSON Schema in `schema.py`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from ..errors import ConfigError
from .schema import schema_problem, strict_compatible, unchecked_keywords, validate

log = logging.getLogger("batchrun")

NO_ANSWER = "no_answer"
INVALID_LABEL = "invalid_label"
INVALID_JSON = "invalid_json"
SCHEMA_MISMATCH = "schema_mismatch"
OUTPUT_CAP = "output_cap"
ANSWER_CODES = frozenset({NO_ANSWER, INVALID_LABEL, INVALID_JSON, SCHEMA_MISMATCH, OUTPUT_CAP})
"""Error codes of a request that succeeded but whose answer could not be used."""

# The thinking a reasoning model (OpenAI's o-series, gpt-5) gets within the output cap that
# `Labels` sets by default: reasoning tokens count toward the cap, and an answer the cap cuts
# off is empty yet paid for. A one-word answer alone needs a few tokens.
REASONING_ROOM = 4096

_WRAPPING = " \t\r\n\"'`*“”‘’"
_FENCE = re.compile(r"^```[\w-]*\s*\n(.*?)\n?```$", re.DOTALL)
_NAME = re.compile(r"[^A-Za-z0-9_-]")


class InvalidAnswer(Exception):
    """An answer that cannot fill the row's columns.

    :param code: one of `ANSWER_CODES`.
    :param text: the answer's text, when there is one to keep.
    """

    def __init__(self, code: str, message: str, text: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.text = text


class AnswerSpec(Protocol):
    """What to ask for, and how to read the answer."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns added to every row, in order."""

    def response_format(self) -> dict[str, Any] | None:
        """The chat ``response_format`` to send, if any."""

    def instruction(self) -> str | None:
        """Text added to the system prompt, if any."""

    def output_cap(self) -> int | None:
        """The output tokens to allow when the user sets no cap, if the answer is known to be short."""

    def parse(self, text: str) -> dict[str, Any]:
        """Column values from the answer text.

        :raises InvalidAnswer: the answer does not fit.
        """


@dataclass(frozen=True)
class FreeText:
    """The answer, as it is."""

    @property
    def columns(self) -> tuple[str, ...]:
        return ("answer",)

    def response_format(self) -> dict[str, Any] | None:
        return None

    def instruction(self) -> str | None:
        return None

    def output_cap(self) -> int | None:
        return None

    def parse(self, text: str) -> dict[str, Any]:
        return {"answer": text}


@dataclass(frozen=True)
class Labels:
    """One label of a fixed set.

    :raises ConfigError: fewer than two labels, or one given twice (ignoring case).
    """

    labels: tuple[str, ...]
    _by_key: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ConfigError("--labels needs at least two labels, separated by commas")
        by_key = {label_key(label): label for label in self.labels}
        if len(by_key) != len(self.labels) or "" in by_key:
            raise ConfigError(f"--labels must be distinct and non-empty (ignoring case), got {', '.join(self.labels)}")
        object.__setattr__(self, "_by_key", by_key)

    @classmethod
    def parse_option(cls, text: str) -> Labels:
        """From ``positive,negative,neutral``."""
        return cls(tuple(label.strip() for label in text.split(",") if label.strip()))

    @property
    def columns(self) -> tuple[str, ...]:
        return ("label",)

    def response_format(self) -> dict[str, Any] | None:
        schema = {"type": "object", "properties": {"label": {"type": "string", "enum": list(self.labels)}},
                  "required": ["label"], "additionalProperties": False}
        return {"type": "json_schema", "json_schema": {"name": "label", "strict": True, "schema": schema}}

    def instruction(self) -> str | None:
        # Worded so that a model without structured outputs answers with the bare label (and
        # the simulator, which looks for "one of: a, b", picks one).
        return f"Answer with exactly one of: {', '.join(self.labels)}"

    def output_cap(self) -> int | None:
        """The longest answer's bytes as structured output, ``{"label":"…"}`` (a bound on its
        tokens: every token of a byte-level BPE covers a byte at least), and `REASONING_ROOM`."""
        return REASONING_ROOM + max(len(orjson.dumps({"label": label})) for label in self.labels)

    def parse(self, text: str) -> dict[str, Any]:
        label = self._by_key.get(label_key(text))
        if label is None:
            raise InvalidAnswer(INVALID_LABEL, f"{_short(text)} is not one of: {', '.join(self.labels)}")
        return {"label": label}


@dataclass(frozen=True)
class JsonSchema:
    """A JSON object checked against a schema; its top-level properties are the columns.

    :param name: the ``json_schema.name`` sent (letters, digits, ``_`` and ``-``).
    :param strict: ask the endpoint to enforce the schema exactly (OpenAI's ``strict``).
    """

    schema: dict[str, Any]
    name: str = "answer"
    strict: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema["properties"])

    def response_format(self) -> dict[str, Any] | None:
        return {"type": "json_schema",
                "json_schema": {"name": self.name, "strict": self.strict, "schema": self.schema}}

    def instruction(self) -> str | None:
        return f"Answer with a JSON object that matches this JSON schema: {orjson.dumps(self.schema).decode()}"

    def output_cap(self) -> int | None:
        return None

    def parse(self, text: str) -> dict[str, Any]:
        try:
            value = orjson.loads(_unfence(text.strip()))
        except orjson.JSONDecodeError as exc:
            raise InvalidAnswer(INVALID_JSON, f"the answer is not JSON: {exc}") from None
        # The columns are the top-level properties, so the answer must be an object.
        problem = validate(value, {"type": "object"}) or validate(value, self.schema)
        if problem is not None:
            raise InvalidAnswer(SCHEMA_MISMATCH, f"the answer does not match the schema: {problem}")
        return {name: value.get(name) for name in self.columns}


def load_json_schema(path: Path) -> JsonSchema:
    """Read a schema file: a JSON schema of an object with ``properties``, or OpenAI's wrapper
    ``{"name": …, "schema": {…}, "strict": …}``. Sent with ``strict: true`` when the schema
    allows it (see `strict_compatible`), else ``strict: false``, with a warning.

    :raises ConfigError: unreadable, not JSON, or not a schema of an object with properties.
    """
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such schema file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the schema: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    wrapped = isinstance(data, dict) and isinstance(data.get("schema"), dict)
    schema = data["schema"] if wrapped else data
    problem = schema_problem(schema)
    if problem is None and (not isinstance(schema.get("properties"), dict) or not schema["properties"]):
        problem = "the schema must describe an object with properties: each top-level property becomes a column"
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    chosen = wrapped and "strict" in data
    strict = bool(data["strict"]) if chosen else strict_compatible(schema)
    if not strict and not chosen:
        log.warning("%s: sent with strict: false: strict structured outputs need every object to list all its "
                    "properties in required and to set additionalProperties: false", path)
    unchecked = unchecked_keywords(schema)
    if unchecked:
        log.warning("%s: not checked locally, left to the endpoint: %s", path, ", ".join(unchecked))
    name = data.get("name") if wrapped else schema.get("title")
    name = name if isinstance(name, str) and name.strip() else path.stem
    return JsonSchema(schema, _NAME.sub("_", name)[:64], strict)


def answer_text(body: Any) -> str:
    """The assistant's text in a chat completion body.

    :raises InvalidAnswer: no choices, a refusal, no text content, or an answer that stopped at
        its output cap (cut short, or empty when a reasoning model spent the cap thinking).
    """
    try:
        choice = body["choices"][0]
        message = choice["message"]
    except (KeyError, IndexError, TypeError):
        raise InvalidAnswer(NO_ANSWER, "the response has no choices[0].message") from None
    if isinstance(message, dict) and message.get("refusal"):
        raise InvalidAnswer(NO_ANSWER, f"the model refused: {_short(message['refusal'])}")
    content = message.get("content") if isinstance(message, dict) else None
    if choice.get("finish_reason") == "length":
        what = "was cut short" if isinstance(content, str) and content else "is empty"
        raise InvalidAnswer(OUTPUT_CAP, f"the answer {what}: it hit the output cap (finish_reason 'length'); allow "
                            "more output tokens, e.g. --param max_completion_tokens=N",
                            content if isinstance(content, str) else None)
    if not isinstance(content, str):
        raise InvalidAnswer(NO_ANSWER, f"the answer has no text (finish_reason {choice.get('finish_reason')!r})")
    return content


def label_key(text: str) -> str:
    """What an answer or a label is compared by: unwrapped (see the module docstring), with
    runs of whitespace made one space, case-folded."""
    candidate = _unfence(text.strip())
    if candidate.startswith("{"):
        candidate = _unwrap(candidate)
    previous = None
    while candidate != previous:  # quotes around a period around quotes …
        previous = candidate
        candidate = candidate.strip(_WRAPPING).removesuffix(".")
    return " ".join(candidate.split()).casefold()


def _unwrap(text: str) -> str:
    """``{"label": "x"}`` (or any one-key object) → ``x``; anything else as it was."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text
    if isinstance(value, dict):
        inner = value.get("label", next(iter(value.values())) if len(value) == 1 else None)
        if isinstance(inner, str):
            return inner
    return text


def _unfence(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77] + "...")
