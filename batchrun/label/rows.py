"""Data rows in and out for `batchrun label`: CSV, TSV or JSONL, streamed one row at a time.

The data file is read once to render requests and once more to join the answers back, and never
held in memory: `RowReader` yields `Row`\\s, `RowWriter` writes the labeled rows to a temporary
file that `RowWriter.commit` renames into place, so a half-written output never has the final
name.

- CSV/TSV: a header row, then one row per record (quoted fields may span lines); lines end in
  LF, CRLF or a lone CR (as old Mac Excel saves a CSV), and a line's number counts them so. Values
  are strings. A TSV is split on tabs; a CSV on the delimiter given, else the one of ``, ; TAB |``
  that splits its header into the most fields (`sniff_delimiter`). A row with fewer fields
  than the header is allowed (the missing ones are empty in the output, and absent for the
  template); one with more is an error. Written out, a cell
  that a spreadsheet would run as a formula gets a ``'`` in front (`formulas.defuse`).
- JSONL: one JSON object per line, read as the run's input is (`reader.jsonl_lines`: blank
  lines skipped, a line over its size limit an error, never held in memory). JSONL written
  from JSONL keeps each original object byte for byte and adds the new keys at its end.

Both are UTF-8; a BOM is tolerated, and a CSV/TSV output written from data that began with one
begins with one too (Excel reads a CSV without it in the locale's legacy encoding: mojibake).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, final

import orjson

from ..disk.publish import AtomicFile
from ..errors import ConfigError, InputFileError
from ..reader import BOM, jsonl_lines, open_input, too_long
from .formulas import defuse

Format = Literal["csv", "tsv", "jsonl"]

_EXTENSIONS: dict[str, Format] = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_DELIMITER = {"csv": ",", "tsv": "\t"}  # written; read unless --delimiter (a CSV's is sniffed)
DELIMITERS = ",;\t|"  # what a CSV header is sniffed for
# The csv module refuses fields over 128 KiB by default; a labeled document can be longer.
_FIELD_LIMIT = 1 << 30


def format_of(path: Path) -> Format | None:
    """The format a file name asks for, by its extension (``None`` when it names none)."""
    return _EXTENSIONS.get(path.suffix.lower())


def data_format(path: Path) -> Format:
    """The format of a data file.

    :raises ConfigError: the extension is not one of ``.csv``, ``.tsv``, ``.jsonl``, ``.ndjson``.
    """
    fmt = format_of(path)
    if fmt is None:
        raise ConfigError(f"{path}: cannot tell the data format from the name; use .csv, .tsv or .jsonl")
    return fmt


@dataclass(slots=True)
class Row:
    """One data row.

    :param number: 1-based among the data rows (the header and blank lines do not count).
    :param line: 1-based physical line on which the row starts, for messages and default ids.
    :param values: column → value; strings for CSV, any JSON value for JSONL.
    :param raw: for JSONL, the object exactly as read (stripped), so it can be written back as is.
    """

    number: int
    line: int
    values: dict[str, Any]
    raw: bytes | None = None


@final
class RowReader:
    """Streams the rows of a data file; use as a context manager, iterate once.

    :param delimiter: of a CSV/TSV file; by default a tab for TSV, and sniffed for CSV.
    :param columns: the CSV header, known on opening; ``None`` for JSONL, whose objects may
        each have other keys.
    :param bom: whether the file begins with a UTF-8 BOM.
    :raises InputFileError: the file cannot be opened, is not in its format (with the line), or
        its delimiter cannot be told.
    """

    def __init__(self, path: Path, fmt: Format | None = None, delimiter: str | None = None) -> None:
        self.path = path
        self.format = fmt or data_format(path)
        self.columns: list[str] | None = None
        self.delimiter = delimiter
        self._file = open_input(path, "a data file")
        self._text: io.TextIOWrapper | None = None
        try:
            self.bom = self._file.read(len(BOM)) == BOM
            self._file.seek(0)
        except OSError as exc:
            self.close()
            raise InputFileError(f"{path}: read failed: {exc.strerror}") from None
        if self.format != "jsonl":
            csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
            try:
                lines = self._text_lines()
                if self.delimiter is None:
                    self.delimiter, lines = self._sniff(lines) if self.format == "csv" else (_DELIMITER["tsv"], lines)
                # strict: an unbalanced quote is an error, not a field that silently swallows
                # every row after it.
                self._csv = csv.reader(lines, dialect="excel", delimiter=self.delimiter, strict=True)
                self.columns = self._header()
            except BaseException:
                self.close()
                raise

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        (self._text or self._file).close()  # the text reader closes the file under it

    def __iter__(self) -> Iterator[Row]:
        try:
            yield from self._jsonl() if self.format == "jsonl" else self._csv_rows()
        except OSError as exc:
            raise InputFileError(f"{self.path}: read failed: {exc.strerror}") from None

    def _text_lines(self) -> Iterator[str]:
        """The file's lines as text with their ends (LF, CRLF or CR), as the csv module reads
        them; a byte that is not UTF-8 is reported on its line (it decodes to a lone surrogate,
        which no UTF-8 text holds, and fails to encode back)."""
        self._text = io.TextIOWrapper(self._file, encoding="utf-8", errors="surrogateescape", newline="")
        for line_no, line in enumerate(self._text, start=1):
            try:
                line.encode()
            except UnicodeEncodeError:
                raise InputFileError(f"{self.path}:{line_no}: not UTF-8 text") from None
            yield line.removeprefix("\ufeff") if line_no == 1 else line

    def _sniff(self, lines: Iterator[str]) -> tuple[str, Iterator[str]]:
        """The delimiter of the header line, and ``lines`` as if none had been read."""
        read = []
        for line_no, line in enumerate(lines, start=1):
            read.append(line)
            if line.strip():
                return sniff_delimiter(line, f"{self.path}:{line_no}"), itertools.chain(read, lines)
        return ",", iter(read)

    def _header(self) -> list[str]:
        try:
            header = next((fields for fields in self._csv if fields), None)
        except csv.Error as exc:
            raise InputFileError(f"{self.path}:{self._csv.line_num}: not valid CSV: {exc}") from None
        if header is None:
            raise InputFileError(f"{self.path}: no header row: the first row must name the columns")
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise InputFileError(f"{self.path}:{self._csv.line_num}: the header names column {name!r} twice")
            seen.add(name)
        return header

    def _csv_rows(self) -> Iterator[Row]:
        assert self.columns is not None
        columns, reader = self.columns, self._csv
        number, ended = 0, reader.line_num
        while True:
            try:
                fields = next(reader, None)
            except csv.Error as exc:
                raise InputFileError(f"{self.path}:{ended + 1}: not valid CSV: {exc}") from None
            if fields is None:
                return
            start, ended = ended + 1, reader.line_num
            if not fields:
                continue  # a blank line
            number += 1
            if len(fields) > len(columns):
                raise InputFileError(f"{self.path}:{start}: row {number} has {len(fields)} fields, "
                                     f"the header {len(columns)}")
            yield Row(number, start, dict(zip(columns, fields, strict=False)))

    def _jsonl(self) -> Iterator[Row]:
        for number, (line_no, line) in enumerate(jsonl_lines(self._file), start=1):
            if isinstance(line, int):
                raise InputFileError(f"{self.path}:{line_no}: row {number}: {too_long(line)} a row may have")
            try:
                values = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputFileError(f"{self.path}:{line_no}: row {number} is not valid JSON: {exc}") from None
            if not isinstance(values, dict):
                raise InputFileError(f"{self.path}:{line_no}: row {number} is a JSON {type(values).__name__}, "
                                     "not an object")
            yield Row(number, line_no, values, line)


def sniff_delimiter(header: str, where: str) -> str:
    """The one of `DELIMITERS` that splits a CSV header line into the most fields (a comma when
    none splits it: one column).

    :raises InputFileError: two of them split it into as many fields: which one is meant
        cannot be told from the header.
    """
    try:
        fields = {delimiter: len(next(csv.reader([header], delimiter=delimiter))) for delimiter in DELIMITERS}
    except csv.Error as exc:
        raise InputFileError(f"{where}: not valid CSV: {exc}") from None
    most = max(fields.values())
    if most == 1:
        return ","
    best = [delimiter for delimiter, count in fields.items() if count == most]
    if len(best) > 1:
        names = " and ".join(_DELIMITER_NAMES[delimiter] for delimiter in best)
        raise InputFileError(f"{where}: the header splits into {most} columns on {names} alike: cannot tell the "
                             "delimiter; give it with --delimiter")
    return best[0]


_DELIMITER_NAMES = {",": "',' (comma)", ";": "';' (semicolon)", "\t": "a tab", "|": "'|' (pipe)"}


class RowWriter:
    """Writes labeled rows to a temporary file beside ``path``; `commit` gives it its name.

    :param fmt: the output format.
    :param columns: the data's columns, in order (for CSV out; JSONL out keeps each row's own).
    :param added: the new columns, in order, appended after the data's.
    :param raw_cells: write CSV/TSV cells as they are, even those a spreadsheet would run as
        formulas (by default they get a ``'`` in front: `formulas.defuse`). The header too.
    :param delimiter: of CSV/TSV output; by default a comma for CSV, a tab for TSV.
    :param bom: begin CSV/TSV output with a UTF-8 BOM (as the data did).
    """

    def __init__(self, path: Path, fmt: Format, columns: Sequence[str], added: Sequence[str], *,
                 raw_cells: bool = False, delimiter: str | None = None, bom: bool = False) -> None:
        self.path = path
        self.format = fmt
        self._columns = list(columns)
        self._text = cell if raw_cells else _defused_cell
        self._target = AtomicFile(path, text=fmt != "jsonl")
        self._file = self._target.file
        if fmt != "jsonl":
            if bom:
                self._file.write("\ufeff")
            self._csv = csv.writer(_LineFeeds(self._file), dialect="excel", lineterminator="\r\n",
                                   delimiter=delimiter or _DELIMITER[fmt])
            self._csv.writerow(map(self._text, [*self._columns, *added]))

    def write(self, row: Row, added: dict[str, Any]) -> None:
        """Write ``row`` with the new columns' values, in the order given at construction."""
        if self.format == "jsonl":
            self._file.write(_jsonl_line(row, self._columns, added))
        else:
            values, text = row.values, self._text
            self._csv.writerow([*(text(values.get(name)) for name in self._columns), *map(text, added.values())])

    def commit(self) -> None:
        self._target.commit()

    def discard(self) -> None:
        self._target.discard()


class _LineFeeds:
    """Rows from a csv writer, written to ``file`` ending in "\n", as Unix tools and pandas write
    and expect. The writer itself ends them in "\r\n": only then does it quote a field holding a
    lone CR, which, left bare, every reader takes for the end of the row."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def write(self, row: str) -> int:
        assert row.endswith("\r\n")  # the csv module writes each row whole, in one call
        return self._file.write(row[:-2] + "\n")


def cell(value: Any) -> str:
    """A value as CSV text: strings as they are, null as empty, anything else as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return orjson.dumps(value).decode()


def _defused_cell(value: Any) -> str:
    return defuse(cell(value))


def _jsonl_line(row: Row, columns: list[str], added: dict[str, Any]) -> bytes:
    extra = orjson.dumps(added)
    if row.raw is not None:
        base, empty = row.raw, not row.values
    else:  # a CSV row: every column, as strings, then the new keys
        values = {name: row.values.get(name, "") for name in columns}
        base, empty = orjson.dumps(values), not values
    if empty:
        return extra + b"\n"
    # Splice the new keys in before the closing brace: the original stays byte for byte.
    return base[:-1] + b"," + extra[1:] + b"\n"
