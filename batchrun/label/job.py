"""`batchrun label` end to end: rows become a batch, the engine runs it, answers are joined back.

    DATA ──render──▶ OUT.batch/requests.jsonl ──the engine──▶ OUT.batch/results.jsonl
                                                                   │
    DATA ─────────────────────────── join, row by row ◀────────────┘──▶ OUT

The engine is whatever runs a `RunConfig` — `run_batch`, or the routes ``batchrun run`` takes
(the Batch API, Ray shards) — since the requests are an input file like any other. The work
folder ``OUT.batch/`` beside the output holds the batch: ``requests.jsonl`` (an OpenAI Batch
input file), and the engine's ``results.jsonl``, ``results.errors.jsonl`` and, until it has
published them, its checkpoint, batches or shards (`engine_folders`). It stays after the run:
``--retry-failed`` re-sends from it, and ``batchrun report OUT.batch/results.jsonl`` reports on
it.

Running the same command again continues whatever stopped, because every step is repeatable:
the requests are rendered again, byte for byte the same (checked line by line against the
earlier ones: a changed data file, template or option is refused unless ``--restart``), the
engine resumes from its checkpoint, and the join, which writes the output to a temporary file
renamed into place, runs again from the start.

Over a finished output, the same command is up to date, as with ``batchrun run``: nothing is
sent, the output is joined again, and the exit code is that run's. When the data, template or
options changed, only the rows whose requests are new are sent; the others keep their answers
(`previous`). ``--restart`` labels every row again.

``--retry-failed`` over a finished run may change the template and the request options (the
prompt being what a user fixes after seeing failures): the rows that have an answer keep it,
and the failed ones are sent as now rendered. The data must be the same rows, which
``OUT.batch/rows`` (a digest of every row's id and values, written with the requests) tells.

The join is itself published in steps (the marked results, their errors, the output), so
``OUT.batch/joined`` records which results file the output was joined from (its inode, size
and mtime), written last. Engine results that differ from it have not been joined yet: a
start that finds them only joins, whatever its options — the answers of a ``--retry-failed``
that crashed before its join are kept, not bought again.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, final

import anyio
import httpx
import orjson

from ..config import RunConfig
from ..disk import publish
from ..disk.lock import RunLock
from ..disk.rundir import make_run_dir
from ..engine import Observer, run_batch
from ..engine.sources import Source
from ..errors import ConfigError
from ..stats import EXIT_FAILED_LINES, EXIT_OK, EXIT_STOPPED, RunStats
from ..transport import Transport
from . import previous
from .answers import AnswerSpec, FreeText, Labels, load_json_schema
from .formulas import is_formula
from .join import JoinCounts, join
from .render import Renderer, Request, RequestSpec, parse_params, row_id
from .rows import Format, RowReader, RowWriter, data_format, format_of
from .template import load_template
from .workspace import Workspace, engine_folders

log = logging.getLogger("batchrun")

DEFAULT_MODEL = "gpt-4o-mini"

EngineConfig = Callable[[Path, Path], RunConfig]
"""Builds the engine's config from the requests and results paths: everything else (endpoint,
key, concurrency, restart …) is the caller's, e.g. ``functools.partial(RunConfig, base_url=…)``."""


@dataclass(frozen=True)
class LabelJob:
    """What to label and where the answers go.

    :param output_path: default ``<data stem>.labeled<data suffix>`` beside the data. Its
        extension picks the output format (.csv, .tsv, .jsonl); another keeps the data's.
    :param id_field: the column whose values are the rows' ``custom_id``s (unique); default
        ``line-<N>``, N the line the row starts on.
    :param raw_cells: write CSV/TSV cells as they are, even those a spreadsheet would run as
        formulas (by default they get a ``'`` in front).
    :param delimiter: of CSV/TSV data, and of an output in the data's format; by default a tab
        for TSV, and sniffed from the header for CSV (`rows.sniff_delimiter`).
    :raises ConfigError: the data format is unknown, the output is the data file, or a
        delimiter is given for JSONL data.
    """

    data_path: Path
    spec: RequestSpec
    output_path: Path | None = None
    id_field: str | None = None
    raw_cells: bool = False
    delimiter: str | None = None
    data_format: Format = field(init=False)
    output_format: Format = field(init=False)

    def __post_init__(self) -> None:
        data = Path(self.data_path)
        fmt = data_format(data)
        out = Path(self.output_path) if self.output_path else data.with_name(f"{data.stem}.labeled{data.suffix}")
        if out.resolve() == data.resolve():
            raise ConfigError(f"the output {out} is the data file; choose another -o")
        if self.delimiter is not None and fmt == "jsonl":
            raise ConfigError(f"--delimiter is for CSV/TSV data; {data} is JSONL")
        object.__setattr__(self, "data_path", data)
        object.__setattr__(self, "output_path", out)
        object.__setattr__(self, "data_format", fmt)
        object.__setattr__(self, "output_format", format_of(out) or fmt)

    @classmethod
    def from_files(cls, data_path: Path, template_path: Path, *, output_path: Path | None = None,
                   model: str = DEFAULT_MODEL, system: str | None = None, labels: str | None = None,
                   schema_path: Path | None = None, params: Sequence[str] = (), id_field: str | None = None,
                   response_format: bool = True, raw_cells: bool = False, delimiter: str | None = None) -> LabelJob:
        """A job from what a user types (``batchrun label``'s options): file paths, the labels as
        ``a,b,c``, params as ``NAME=VALUE``. Warns when a label would be a formula in a
        CSV/TSV output.

        :raises ConfigError: an unreadable or invalid template or schema, bad labels or params,
            or both ``labels`` and ``schema_path``.
        """
        if labels is not None and schema_path is not None:
            raise ConfigError("--labels and --json-schema exclude each other: one label, or an object of fields")
        template = load_template(template_path)
        if system is not None:
            template = template.with_system(system)
        answer: AnswerSpec = FreeText()
        if labels is not None:
            answer = Labels.parse_option(labels)
        elif schema_path is not None:
            answer = load_json_schema(schema_path)
        spec = RequestSpec(template, model, answer, parse_params(params), response_format=response_format)
        job = cls(data_path, spec, output_path, id_field, raw_cells=raw_cells, delimiter=delimiter)
        if isinstance(answer, Labels) and job.output_format != "jsonl":
            _warn_formula_labels(answer.labels, job.out, raw_cells=raw_cells)
        return job

    @property
    def out(self) -> Path:
        assert self.output_path is not None
        return self.output_path


@dataclass
class LabelOutcome:
    """How a label run ended.

    :param counts: what the output holds; ``None`` when the run stopped before writing it.
    :param stats: the engine's counters; ``None`` when no request had to be sent.
    :param stopped: why the output could not be written (a disk error): the same command
        writes it once the cause is fixed, sending nothing.
    """

    output_path: Path
    counts: JoinCounts | None
    stats: RunStats | None
    stopped: str | None = None

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:  # writing the output failed; the answers are kept
            return EXIT_STOPPED
        if self.counts is None:  # the engine stopped early (interrupted, budget): resumable
            assert self.stats is not None
            return self.stats.exit_code
        return EXIT_FAILED_LINES if self.counts.failed else EXIT_OK


@final
class LabelRun:
    """One ``batchrun label``, in three steps around the engine, under the work folder's lock::

        with LabelRun(job, engine) as run:
            config = run.prepare()            # render; None if the batch is already finished
            stats = run_batch(config, sources=run.sources) if config else None  # or another route
            outcome = run.finish(stats)       # join

    A start refused before the engine kept anything (a row that cannot be sent, the engine's
    options) leaves no work folder behind if it made it.

    :raises ConfigError: the engine options are invalid, or the output is a symlink that is
        not followed (another user's, or a loop), before anything is written.
    """

    def __init__(self, job: LabelJob, engine: EngineConfig) -> None:
        try:
            publish.link_target(job.out)  # as the join will write it: refused now, not after every row was sent
        except OSError as exc:
            raise ConfigError(f"the output {job.out}: {exc.strerror}; remove the link or choose another -o") from None
        self.job = job
        self.work = Workspace(job.out)
        self.config = engine(self.work.requests, self.work.results)
        self.work.unfinished = engine_folders(self.config)
        self._lock = RunLock(self.work.lock, job.out)
        self._columns: list[str] = []
        self._delimiter = job.delimiter  # a CSV's, as the rendering read it
        self._bom = False  # whether the data began with a BOM, as the rendering read it
        self._data_stamp: tuple[int, int] | None = None
        self._created = False
        self._previous: previous.Previous | None = None
        self.up_to_date = False  # the output already holds this run (`prepare`)

    def __enter__(self) -> LabelRun:
        self._created = make_run_dir(self.work.dir, self.job.out)
        try:
            self._lock.acquire()
        except BaseException:
            self._remove_if_new()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self._previous is not None:
            self._previous.close()
        self._lock.release()
        if kind is not None:
            self._remove_if_new()

    def _remove_if_new(self) -> None:
        """Remove the work folder if this start made it and the engine keeps nothing in it."""
        if self._created and not self.work.results.exists() and not self.work.running():
            shutil.rmtree(self.work.dir, ignore_errors=True)

    def prepare(self) -> RunConfig | None:
        """Check what earlier runs left, render the requests, and say what the engine must do.

        :returns: the engine's config (with `sources`), or ``None`` when the batch already
            finished (only the join is left: after a crash while writing the output, or the
            same command again, `up_to_date`).
        :raises ConfigError: an output no run in the work folder wrote would be overwritten
            unasked, or the requests now differ from those of the run being continued.
        :raises InputFileError: rows that cannot be sent (nothing was sent).
        """
        work, out, config = self.work, self.job.out, self.config
        if config.restart:
            previous.discard(work)
        incremental = work.previous_results.exists()  # only new rows are being labeled (`previous`)
        running = work.running()
        finished = work.results.exists() and not running
        if not config.restart and work.join_pending():
            self._data_stamp = _stamp(self.job.data_path)
            self._render(compare=True)
            return None
        if not config.restart and not incremental:
            if out.exists() and not (finished or running):
                raise ConfigError(f"{out} already exists and {work.dir} holds no run that wrote it: pass --restart "
                                  "to label every row and replace it")
            if out.exists() and finished and not config.retry_failed:
                self._data_stamp = _stamp(self.job.data_path)
                renderer = Renderer(self.job.data_path, self.job.spec, self.job.id_field, self.job.delimiter)
                if previous.unchanged(work, (request.line() for request in renderer)):
                    self.up_to_date = True  # the same command again: nothing to send, the output is joined again
                    self._render(compare=True)
                    return None
                incremental, finished = True, False
        if incremental:
            previous.set_aside(work)
            self._previous = previous.Previous(work, by_id=self.job.id_field is not None)
        self._data_stamp = _stamp(self.job.data_path)
        self._render(compare=(finished or running) and not config.restart, new_requests=finished and config.retry_failed)
        return None if finished and not config.retry_failed and not config.restart else config

    @property
    def sources(self) -> list[Source]:
        """Where the engine finds answers before sending: the answers kept from the run set aside."""
        return [self._previous] if self._previous is not None else []

    def finish(self, stats: RunStats | None) -> LabelOutcome:
        """Join the answers with the rows into the output, unless the engine stopped early.

        :raises ConfigError: the data file changed during the run.
        """
        job, work = self.job, self.work
        if stats is not None and stats.stop_reason is not None:
            return LabelOutcome(job.out, None, stats)
        if _stamp(job.data_path) != self._data_stamp:
            raise ConfigError(f"{job.data_path} changed while it was being labeled; the answers are kept in "
                              f"{work.dir}: restore the data and run again, or run again with --restart")
        try:
            counts = self._join()
        except OSError as exc:
            where = exc.filename or job.out
            return LabelOutcome(job.out, None, stats, f"could not write the output ({where}: {exc.strerror or exc}); "
                                f"the answers are kept in {work.dir}: fix that and run the same command again "
                                "to write it (nothing is sent again)")
        return LabelOutcome(job.out, counts, stats)

    def _join(self) -> JoinCounts:
        """:raises OSError: writing failed; nothing was published but what is whole."""
        job, work = self.job, self.work
        targets: list[RowWriter | publish.AtomicFile] = []
        try:
            # An output in the data's format keeps its delimiter (a ;-separated CSV stays one).
            writer = RowWriter(job.out, job.output_format, self._columns, job.spec.added_columns,
                               raw_cells=job.raw_cells, bom=self._bom,
                               delimiter=self._delimiter if job.output_format == job.data_format else None)
            targets.append(writer)
            results = publish.AtomicFile(work.results)
            targets.append(results)
            errors = publish.AtomicFile(work.errors)
            targets.append(errors)
            with RowReader(job.data_path, job.data_format, self._delimiter) as rows, work.results.open("rb") as earlier:
                counts = join(rows, earlier, job.spec.answer, lambda row: row_id(row, job.id_field), writer,
                              results.file, errors.file)
            results.commit()
            errors.commit()
            writer.commit()
            work.mark_joined(job.out)  # last: from here the results have been joined
            previous.discard(work)
        except BaseException:
            for target in targets:
                target.discard()
            raise
        return counts

    def _render(self, *, compare: bool, new_requests: bool = False) -> None:
        """Write the requests file anew, and the digest of the rows they were made from.

        :param compare: the requests must equal the earlier ones, line for line.
        :param new_requests: unless the rows are those of the earlier requests, which may differ
            in their template or options (``--retry-failed`` over a finished run).
        """
        requests = publish.AtomicFile(self.work.requests)
        earlier: IO[bytes] | None = self.work.requests.open("rb") if compare and self.work.requests.exists() else None
        renderer = Renderer(self.job.data_path, self.job.spec, self.job.id_field, self.job.delimiter)
        rows = hashlib.blake2b(digest_size=16)
        changed: tuple[int, Request] | None = None  # how many requests differ, and the first of them
        try:
            for request in renderer:
                line = request.line()
                requests.file.write(line)
                rows.update(orjson.dumps([request.custom_id, request.row.values], option=orjson.OPT_APPEND_NEWLINE))
                if earlier is not None and earlier.readline() != line:
                    if not new_requests:
                        raise self._changed(f"at row {request.row.number} (line {request.row.line})")
                    changed = (changed[0] + 1, changed[1]) if changed else (1, request)
            if earlier is not None and earlier.readline():
                raise self._changed(f"after row {renderer.rows}: the data has fewer rows")
            digest = rows.hexdigest()
            if changed is not None:
                self._check_same_rows(digest, changed[1])
                log.info("the template or request options changed since the earlier run (%s of %s requests "
                         "differ): --retry-failed keeps the answers the rows have and sends the failed rows "
                         "as now rendered", f"{changed[0]:,}", f"{renderer.rows:,}")
            requests.commit()
            if self._recorded_rows() != digest:
                publish.write_atomically(self.work.rows, digest.encode())
        except BaseException:
            requests.discard()
            raise
        finally:
            if earlier is not None:
                earlier.close()
        self._columns, self._delimiter, self._bom = renderer.columns, renderer.delimiter, renderer.bom

    def _recorded_rows(self) -> str | None:
        """The digest of the rows the requests were last rendered from (`_render`)."""
        try:
            return self.work.rows.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return None

    def _check_same_rows(self, digest: str, first: Request) -> None:
        """:raises ConfigError: the rows differ from those of the earlier requests (or the
        earlier run recorded none), so their answers cannot be kept."""
        if self._recorded_rows() != digest:
            raise self._changed(f"at row {first.row.number} (line {first.row.line}), and the data rows are not "
                                "those of that run")

    def _changed(self, where: str) -> ConfigError:
        return ConfigError(f"{self.job.out}: the data, template or request options changed since the earlier run in "
                           f"{self.work.dir} (the requests differ {where}); use the original ones to continue it, "
                           "or --restart to label every row again")


async def label_dataset(job: LabelJob, engine: EngineConfig, *,
                        transport: Transport | httpx.AsyncBaseTransport | None = None,
                        observer: Observer | None = None, handle_signals: bool = False) -> LabelOutcome:
    """Label ``job.data_path`` into ``job.out``: `LabelRun`'s three steps, with `run_batch`.

    The keyword arguments are `run_batch`'s.
    """
    with LabelRun(job, engine) as run:
        config = await anyio.to_thread.run_sync(run.prepare)
        stats = None
        if config is not None:
            stats = await run_batch(config, transport=transport, observer=observer, handle_signals=handle_signals,
                                    sources=run.sources)
        return await anyio.to_thread.run_sync(run.finish, stats)


def _warn_formula_labels(labels: Sequence[str], out: Path, *, raw_cells: bool) -> None:
    formulas = [label for label in labels if is_formula(label)]
    if formulas:
        outcome = ("--raw-cells writes such labels as given" if raw_cells
                   else "such labels are written with a ' in front, as text (--raw-cells writes them as given)")
        log.warning("--labels: a spreadsheet opening %s would run %s as a formula; %s", out,
                    ", ".join(map(repr, formulas)), outcome)


def _stamp(path: Path) -> tuple[int, int] | None:
    """Enough of a file's identity to notice that it was rewritten (``None``: it is gone)."""
    try:
        stat = path.stat()
    except OSError:
        return None  # reading it says why
    return stat.st_size, stat.st_mtime_ns
