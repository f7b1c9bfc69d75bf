"""Rows + results → labeled rows: the last step of `batchrun label`.

The engine writes one result line per request line, in request order, and requests were
rendered one per row in row order, so the data file and the results file are read in step,
a row and a line at a time: memory does not grow with the file.

For each row the result decides the new columns:

- the request failed (HTTP error, timeout …): the answer columns are empty, ``_error`` is
  ``"<code>: <message>"`` as the engine recorded it;
- it succeeded but the answer does not fit (`answers.InvalidAnswer`), or stopped at the
  output cap (``output_cap``): the answer columns are empty, ``_error`` says why and ``_raw``
  keeps the answer text;
- else the answer columns are filled and ``_error``/``_raw`` are empty.

An unusable answer is also written back into the results file as batchrun's reading of its
line, ``batchrun.error`` (OpenAI's ``error`` stays null: the request was answered; the response
is kept as it came), so the engine's ``--retry-failed`` sends that row again, and
``batchrun report`` counts it as failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from ..errors import ConfigError
from ..records import failure
from .answers import ANSWER_CODES, AnswerSpec, InvalidAnswer, answer_text
from .render import ERROR_COLUMN, RAW_COLUMN
from .rows import Row, RowWriter


@dataclass
class JoinCounts:
    """What the labeled output holds."""

    rows: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.rows - self.ok


@dataclass(frozen=True)
class Outcome:
    """A row's new columns, and its result's error as it should now be recorded."""

    values: dict[str, Any]
    error: dict[str, Any] | None


def join(rows: Iterable[Row], results: Iterable[bytes], answer: AnswerSpec, custom_id: Callable[[Row], str | None],
         writer: RowWriter, marked: IO[bytes], marked_errors: IO[bytes]) -> JoinCounts:
    """Write every row with its answer; copy the results, with unusable answers marked failed.

    :param custom_id: a row's id as the requests have it, to check each line is the row's.
    :param marked: receives every result line (changed only where an answer is unusable).
    :param marked_errors: receives the failed ones among them.
    :raises ConfigError: the results are not those of these rows (another data file).
    """
    counts = JoinCounts()
    lines = iter(results)
    for row in rows:
        line = next(lines, None)
        record = orjson.loads(line) if line else None
        if not isinstance(record, dict) or record.get("custom_id") != custom_id(row):
            raise _mismatch(row, record)
        outcome = read_outcome(record, answer)
        if outcome.error != failure(record):
            _mark(record, outcome.error)
            line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        assert line is not None
        writer.write(row, outcome.values)
        marked.write(line)
        counts.rows += 1
        if outcome.error is None:
            counts.ok += 1
        else:
            counts.errors[str(outcome.error.get("code"))] += 1
            marked_errors.write(line)
    if next(lines, None) is not None:
        raise ConfigError("there are more results than data rows: the data file changed since the requests were "
                          "rendered; run again with --restart")
    return counts


def read_outcome(record: dict[str, Any], answer: AnswerSpec) -> Outcome:
    """The new columns for a result record (an OpenAI Batch output line, decoded)."""
    empty: dict[str, Any] = dict.fromkeys(answer.columns)
    error = failure(record)
    if error is not None and error.get("code") not in ANSWER_CODES:
        return Outcome({**empty, ERROR_COLUMN: f"{error.get('code')}: {error.get('message')}", RAW_COLUMN: None},
                       error)
    response = record.get("response")
    text = None
    try:
        text = answer_text(response.get("body") if isinstance(response, dict) else None)
        values = answer.parse(text)
    except InvalidAnswer as exc:
        raw = text if text is not None else exc.text
        return Outcome({**empty, ERROR_COLUMN: f"{exc.code}: {exc.message}", RAW_COLUMN: raw},
                       {"code": exc.code, "message": exc.message})
    return Outcome({**values, ERROR_COLUMN: None, RAW_COLUMN: None}, None)


def _mark(record: dict[str, Any], error: dict[str, Any] | None) -> None:
    """Record an answer's outcome in its line: only a failure with no response to show is OpenAI's ``error``."""
    extra = record.get("batchrun")
    if not isinstance(extra, dict):
        extra = record["batchrun"] = {}
    if error is None:
        extra.pop("error", None)
    else:
        extra["error"] = error


def _mismatch(row: Row, record: Any) -> ConfigError:
    found = record.get("custom_id") if isinstance(record, dict) else None
    what = f"the result for custom_id {found!r}" if found else "no result"
    return ConfigError(f"row {row.number} (line {row.line}) has {what}: the data file changed since the requests "
                       "were rendered; run again with --restart")
