"""Prompt templates for `batchrun label`: a file of chat messages with ``{field}`` placeholders.

A template is parsed once into literal text and placeholders, then rendered for every row.
``{column}`` is replaced by the row's value of that column (strings as they are, null as
nothing, numbers, booleans, lists and objects as compact JSON); ``{{`` and ``}}`` are literal
braces. A placeholder naming a column a row lacks is an error for that row, found before
anything is sent.

Three file formats:

1. Plain text (any name not ending in ``.json``): the whole file is one user message::

       Classify the sentiment of this review.
       Review: {text}

2. Sections, for system prompts and few-shot examples: when the first non-blank line is
   ``### system``, ``### developer``, ``### user`` or ``### assistant``, each such line starts a
   message with that role (other ``###`` lines are ordinary text)::

       ### system
       You label customer reviews.
       ### user
       Review: The blender broke after a week.
       ### assistant
       negative
       ### user
       Review: {text}

3. JSON (a name ending in ``.json``): a list of ``{"role": ..., "content": ...}`` objects whose
   contents are templates.

Blank lines at either end of a message are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError
from .rows import cell

ROLES = ("system", "developer", "user", "assistant")
_INSTRUCTION_ROLES = ("system", "developer")
_SECTION = re.compile(r"^###[ \t]*(system|developer|user|assistant)[ \t]*$", re.IGNORECASE)
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}\n]*)\}|[{}]")


@dataclass(frozen=True, slots=True)
class Field:
    """A placeholder: the column whose value goes here."""

    name: str


Part = str | Field


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    role: str
    parts: tuple[Part, ...]

    def render(self, values: Mapping[str, Any]) -> dict[str, str]:
        text = "".join(part if isinstance(part, str) else cell(values[part.name]) for part in self.parts)
        return {"role": self.role, "content": text}


@dataclass(frozen=True)
class Template:
    """Chat messages with placeholders.

    :param source: where it came from, for messages.
    """

    messages: tuple[MessageTemplate, ...]
    source: str = "template"

    @property
    def fields(self) -> tuple[str, ...]:
        """The columns the template uses, each once, in order of first use."""
        names = (part.name for m in self.messages for part in m.parts if isinstance(part, Field))
        return tuple(dict.fromkeys(names))

    def render(self, values: Mapping[str, Any]) -> list[dict[str, str]]:
        """The messages for one row; every name in `fields` must be a key of ``values``."""
        return [message.render(values) for message in self.messages]

    def with_system(self, text: str) -> Template:
        """The template with a system message (itself a template) in front.

        :raises ConfigError: the template already starts with a system or developer message.
        """
        if self.messages[0].role in _INSTRUCTION_ROLES:
            raise ConfigError(f"{self.source} already has a {self.messages[0].role} message; "
                              "drop --system or the template's own")
        system = MessageTemplate("system", parse_text(text, "--system"))
        return Template((system, *self.messages), self.source)

    def with_instruction(self, text: str) -> Template:
        """The template with literal ``text`` ending its leading system (or developer) message,
        or in a system message of its own in front when it has none."""
        first = self.messages[0]
        if first.role in _INSTRUCTION_ROLES:
            joined = MessageTemplate(first.role, (*first.parts, "\n\n" + text))
            return Template((joined, *self.messages[1:]), self.source)
        return Template((MessageTemplate("system", (text,)), *self.messages), self.source)


def load_template(path: Path) -> Template:
    """Read and parse a template file (format chosen as the module docstring says).

    :raises ConfigError: the file cannot be read, or is not a valid template.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such template file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the template is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the template: {exc.strerror}") from None
    if path.suffix.lower() == ".json":
        return parse_json_template(text, str(path))
    return parse_text_template(text, str(path))


def parse_text_template(text: str, source: str = "template") -> Template:
    """A plain-text template, or one in ``### role`` sections.

    :raises ConfigError: it is empty, a message is empty, or a brace is unbalanced.
    """
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ConfigError(f"{source}: the template is empty")
    if not _SECTION.match(lines[first]):
        return Template((MessageTemplate("user", _content(lines, 0, source)),), source)
    messages = []
    starts = [i for i in range(first, len(lines)) if _SECTION.match(lines[i])]
    for start, end in zip(starts, [*starts[1:], len(lines)], strict=False):
        role = _SECTION.match(lines[start]).group(1).lower()  # type: ignore[union-attr]
        body = lines[start + 1:end]
        parts = _content(body, start + 1, source)
        if not parts:
            raise ConfigError(f"{source}:{start + 1}: the {role} message is empty")
        messages.append(MessageTemplate(role, parts))
    return Template(tuple(messages), source)


def parse_json_template(text: str, source: str = "template") -> Template:
    """A JSON list of ``{"role", "content"}`` messages.

    :raises ConfigError: it is not such a list, or a content is not a valid template.
    """
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f'{source}: expected a non-empty JSON list of {{"role": ..., "content": ...}} messages')
    messages = []
    for i, item in enumerate(data):
        where = f"{source}: message {i + 1}"
        if not isinstance(item, dict) or set(item) != {"role", "content"}:
            raise ConfigError(f'{where}: expected an object with exactly "role" and "content"')
        if item["role"] not in ROLES:
            raise ConfigError(f"{where}: role must be one of {', '.join(ROLES)}, got {item['role']!r}")
        if not isinstance(item["content"], str) or not item["content"].strip():
            raise ConfigError(f"{where}: content must be a non-empty string")
        messages.append(MessageTemplate(item["role"], parse_text(item["content"], where)))
    return Template(tuple(messages), source)


def parse_text(text: str, where: str, first_line: int | None = None) -> tuple[Part, ...]:
    """Split one message's text into literals and placeholders.

    :param first_line: the file line ``text`` starts on, so errors point at the line; ``None``
        for text that is not a file's (JSON contents, ``--system``).
    :raises ConfigError: a lone ``{`` or ``}``, or an empty ``{}``.
    """
    parts: list[Part] = []
    literal: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[pos:match.start()])
        pos = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
            continue
        name = match.group(1)
        if name is None or not name.strip():
            at = "" if first_line is None else f":{first_line + text.count(chr(10), 0, match.start())}"
            what = "an empty {}" if name is not None else f"a lone {token!r}"
            raise ConfigError(f"{where}{at}: {what}; write {{{{ and }}}} for literal braces, "
                              "{column} for a column's value")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(Field(name))
    literal.append(text[pos:])
    if any(literal):
        parts.append("".join(literal))
    return tuple(parts)


def _content(lines: list[str], first_line: int, source: str) -> tuple[Part, ...]:
    """The message made of ``lines`` (0-based ``first_line`` in the file), blank edges dropped."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return parse_text("\n".join(lines[start:end]), source, first_line + start + 1)
