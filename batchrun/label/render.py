"""Rows → OpenAI Batch request lines: the first step of `batchrun label`.

Every row becomes one line ``{"custom_id", "method", "url", "body"}`` for
``/v1/chat/completions``, built only from the row and the `RequestSpec`, with keys in a fixed
order: the same data, template and options always give byte-identical lines, which is what
lets the engine's checkpoint (fingerprinted by the file's digest) resume a label run.

Every problem that would waste a request — a placeholder naming a column a row lacks, a
missing or repeated ``--id-field`` value, a data column the answer would overwrite — is found
in this one pass, before anything is sent, and reported with its row and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError, InputFileError
from ..idset import IdSet
from ..json_numbers import is_int
from .answers import AnswerSpec, FreeText
from .rows import Row, RowReader
from .template import Template

CHAT_URL = "/v1/chat/completions"
ERROR_COLUMN = "_error"
RAW_COLUMN = "_raw"
MAX_REPORTED = 10  # problems listed; the rest are counted
# A chat request's output cap: OpenAI's reasoning models take only the first, every chat model
# of theirs takes it, and vLLM too; the second is the older spelling other servers know.
OUTPUT_CAPS = ("max_completion_tokens", "max_tokens")
_RESERVED = {"model": "it is set by --model", "messages": "they come from the template",
             "stream": "a streamed answer is not JSON, so it cannot be read back"}


@dataclass(frozen=True)
class RequestSpec:
    """Everything besides the row that shapes its request.

    :param params: extra body fields (``temperature``, ``max_tokens`` …); sent in key order.
        Without ``max_completion_tokens`` or ``max_tokens`` among them, the answer's own cap
        (`AnswerSpec.output_cap`, that of ``--labels``) is sent as ``max_completion_tokens``,
        and kept in `default_cap`.
    :param response_format: send the answer's ``response_format`` (structured outputs); off for
        endpoints that reject it — the prompt still states what to answer.
    :raises ConfigError: a param that another option sets.
    """

    template: Template
    model: str
    answer: AnswerSpec = field(default_factory=FreeText)
    params: Mapping[str, Any] = field(default_factory=dict)
    response_format: bool = True
    _prompt: Template = field(init=False, repr=False, compare=False)
    _extra: dict[str, Any] = field(init=False, repr=False, compare=False)
    default_cap: int | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in self.params:
            if name in _RESERVED:
                raise ConfigError(f"--param {name} cannot be given: {_RESERVED[name]}")
        if "response_format" in self.params and self.answer.response_format() is not None:
            raise ConfigError("--param response_format cannot be given with --labels or --json-schema, which set "
                              "it (--no-response-format sends none)")
        instruction = self.answer.instruction()
        prompt = self.template.with_instruction(instruction) if instruction else self.template
        params = dict(self.params)
        cap = None if any(name in params for name in OUTPUT_CAPS) else self.answer.output_cap()
        if cap is not None:
            params[OUTPUT_CAPS[0]] = cap
        extra = dict(sorted(params.items()))
        fmt = self.answer.response_format() if self.response_format else None
        if fmt is not None:
            extra = {"response_format": fmt, **extra}
        object.__setattr__(self, "_prompt", prompt)
        object.__setattr__(self, "_extra", extra)
        object.__setattr__(self, "default_cap", cap)

    @property
    def added_columns(self) -> tuple[str, ...]:
        """The columns the output adds to every row."""
        return (*self.answer.columns, ERROR_COLUMN, RAW_COLUMN)

    def body(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The request body for a row that has every field of the template."""
        return {"model": self.model, "messages": self._prompt.render(values), **self._extra}


@dataclass(slots=True)
class Request:
    """A rendered row."""

    row: Row
    custom_id: str
    body: dict[str, Any]

    def line(self) -> bytes:
        """The OpenAI Batch input line, newline included."""
        envelope = {"custom_id": self.custom_id, "method": "POST", "url": CHAT_URL, "body": self.body}
        return orjson.dumps(envelope, option=orjson.OPT_APPEND_NEWLINE)


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``["temperature=0", "stop=[\\"\\\\n\\"]", "reasoning_effort=low"]`` → a dict: each value is
    read as JSON, and taken as a plain string when it is not JSON.

    :raises ConfigError: an item without ``=``, or a name given twice.
    """
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. temperature=0")
        if name in params:
            raise ConfigError(f"--param {name} is given twice")
        try:
            params[name] = orjson.loads(text)
        except orjson.JSONDecodeError:
            params[name] = text
    return params


class Renderer:
    """Iterate to get the `Request` of every row, in order.

    After the iteration, `columns` holds the data's columns (a CSV header, or every key of a
    JSONL file in order of first appearance), `rows` their count, and `delimiter` a CSV/TSV
    file's delimiter, as given or sniffed, and `bom` whether the file began with a UTF-8 BOM.

    :param id_field: the column whose value is each row's ``custom_id``; default ``line-<N>``,
        N the line the row starts on.
    :param delimiter: of a CSV/TSV file (`RowReader`).
    :raises InputFileError: at the end of the iteration, when any row has a problem (all are
        listed, up to `MAX_REPORTED`); at once when the file cannot be read.
    """

    def __init__(self, path: Path, spec: RequestSpec, id_field: str | None = None,
                 delimiter: str | None = None) -> None:
        self.path = path
        self.spec = spec
        self.id_field = id_field
        self.delimiter = delimiter
        self.bom = False
        self.columns: list[str] = []
        self.rows = 0
        self._problems: list[tuple[int, str]] = []  # (row number, message): listed in row order
        self._count = 0
        self._repeats: list[tuple[Row, str]] = []

    def __iter__(self) -> Iterator[Request]:
        with RowReader(self.path, delimiter=self.delimiter) as reader:
            self.delimiter, self.bom = reader.delimiter, reader.bom
            if reader.columns is not None:
                self.columns = reader.columns
                self._check_header(reader.columns)
            yield from self._requests(reader)
        self._find_first_uses()
        if self._count:
            listed = [message for _, message in sorted(self._problems)]
            if self._count > len(listed):
                listed.append(f"… and {self._count - len(listed):,} more")
            rows = "1 row cannot" if self._count == 1 else f"{self._count:,} rows cannot"
            raise InputFileError(f"{self.path}: {rows} be sent; nothing was sent:\n  " + "\n  ".join(listed))

    def _requests(self, reader: RowReader) -> Iterator[Request]:
        fields = self.spec.template.fields
        added = self.spec.added_columns
        known: dict[str, None] | None = None if reader.columns is not None else {}
        seen = IdSet() if self.id_field is not None else None
        for row in reader:
            self.rows += 1
            values = row.values
            if known is not None:  # JSONL: every object may have keys of its own
                known.update(dict.fromkeys(values))
                clash = [name for name in added if name in values]
                if clash:
                    self._problem(row, f"has {_names(clash)}, which the answer columns would overwrite")
                    continue
            missing = [name for name in fields if name not in values]
            if missing:
                self._problem(row, f"has no value for {', '.join('{' + name + '}' for name in missing)}"
                                   f"{_width(values, reader.columns)}")
                continue
            custom_id = self._custom_id(row)
            if custom_id is None:
                continue
            if seen is not None and not seen.add(custom_id):
                if len(self._repeats) < MAX_REPORTED:
                    self._repeats.append((row, custom_id))  # named after a second pass
                else:
                    self._count += 1
                continue
            yield Request(row, custom_id, self.spec.body(values))
        if known is not None:
            self.columns = list(known)

    def _check_header(self, columns: list[str]) -> None:
        where = f"{self.path}:1 (the header)"
        missing = [name for name in self.spec.template.fields if name not in columns]
        if missing:
            raise InputFileError(f"{where}: the template uses {', '.join('{' + n + '}' for n in missing)}, which "
                                 f"{'is not a column' if len(missing) == 1 else 'are not columns'}; the columns "
                                 f"are: {', '.join(columns)} (for a literal brace, write {{{{ or }}}})")
        if self.id_field is not None and self.id_field not in columns:
            raise InputFileError(f"{where}: --id-field {self.id_field!r} is not a column; the columns are: "
                                 f"{', '.join(columns)}")
        clash = [name for name in self.spec.added_columns if name in columns]
        if clash:
            raise InputFileError(f"{where}: the data already has {_names(clash)}, which the answer columns "
                                 "would overwrite; rename them in the data")

    def _custom_id(self, row: Row) -> str | None:
        custom_id = row_id(row, self.id_field)
        if custom_id is None:
            self._problem(row, f"has no usable id in {self.id_field!r} (a non-empty string or an integer), "
                               f"got {row.values.get(self.id_field or '')!r}")
        return custom_id

    def _find_first_uses(self) -> None:
        """Name the earlier row of each repeated id, with a second pass over the data (the
        first one keeps only 16 bytes per id, so it knows an id is repeated, not where from)."""
        if not self._repeats:
            return
        wanted = {custom_id: None for _, custom_id in self._repeats}
        first: dict[str, Row] = {}
        with RowReader(self.path, delimiter=self.delimiter) as reader:
            for row in reader:
                key = row_id(row, self.id_field)
                if key in wanted and key not in first:
                    first[key] = row
        for row, custom_id in self._repeats:
            earlier = first.get(custom_id)
            if earlier is not None and earlier.number < row.number:  # else a hash twin, not a repeat
                self._problem(row, f"has id {custom_id!r} ({self.id_field}), already used by row {earlier.number} "
                                   f"(line {earlier.line})")

    def _problem(self, row: Row, message: str) -> None:
        self._count += 1
        if len(self._problems) < MAX_REPORTED:
            self._problems.append((row.number, f"{self.path}:{row.line}: row {row.number} {message}"))


def row_id(row: Row, id_field: str | None) -> str | None:
    """The ``custom_id`` of a row: its ``id_field`` value (a non-empty string, or an integer
    as text), ``line-<N>`` without one; ``None`` when the row has no usable value."""
    if id_field is None:
        return f"line-{row.line}"
    value = row.values.get(id_field)
    if is_int(value):
        return str(value)
    return value if isinstance(value, str) and value else None


def _names(names: list[str]) -> str:
    return ("a column " if len(names) == 1 else "columns ") + ", ".join(map(repr, names))


def _width(values: Mapping[str, Any], columns: list[str] | None) -> str:
    return f" (it has {len(values)} of the header's {len(columns)} fields)" if columns is not None else ""
