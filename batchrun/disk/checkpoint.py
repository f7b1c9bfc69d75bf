"""Where a run keeps its state between starts, so any interruption can be resumed (docs/reliability.md, "Checkpoints and resume").

Beside ``results.jsonl`` a run keeps ``results.jsonl.checkpoint/``:

    lock          held (flock) while a run writes this output
    meta.json     what the run is: the input's size and digest, the request-shaping options, and
                  its own random id (what makes its lines' ids differ from another run's)
    output.jsonl  the ordered prefix: lines 0 … P-1, exactly as the final output will have them
    errors.jsonl  the failed lines among them
    journal       the lines finished before an earlier line, in completion order (see journal.py);
                  with output.jsonl, every finished line
    prefix.json   the report's counters over the prefix as of the last fsync (see snapshot.py)
    spend.json    the spend ledger: what the starts' lost answers may have cost (accounting/ledger.py)
    previous.jsonl  with --retry-failed: the finished output whose failures are being re-sent
    report.json   on completion: the report, published with the output
    committed     on completion: the checkpoint is final and being published (see publish.py)

Every finished line is in the kernel (the output or the journal) before the next event-loop
step, so a killed process loses only requests in flight; a periodic fsync bounds what a power
loss can take. On completion the
ordered files and the report are renamed into place (no half-written file ever has a final
name) and the directory is removed, as one step that a crash cannot leave half done
(`publish.py`).

The directory is private (`rundir.py`): its files are created 0600 and never opened through a
symlink. It is opened once, when a start takes it, and its files are reached through that
descriptor, never through its path: in a directory others can write in, they could otherwise
swap it for one of theirs once it was checked.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import os
import secrets
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeGuard

import orjson

from ..config import RunConfig
from ..errors import ConfigError
from ..json_numbers import is_int
from ..records import Result
from . import journal, publish, snapshot
from .identity import ENDPOINT_OPTIONS, InputScan, check_same_run, identity
from .lock import RunLock
from .rundir import open_run_dir

log = logging.getLogger("batchrun")

FORMAT = 1


class PrefixCounter(Protocol):
    """What counts the ordered prefix a resume carries over (`RunStats`)."""

    def record(self, result: Result) -> None: ...

    def restore(self, report: dict[str, Any], lines: int) -> None: ...


@dataclass
class Recovered:
    """What an earlier start of this run left finished.

    :param prefix: lines already in order in ``output.jsonl``; they are not looked at again.
    :param finished: lines past the prefix that the journal holds, by index.
    :param previous: lines of an earlier finished output past the prefix, read in step with the input.
    :param sizes: bytes in ``output.jsonl`` and ``errors.jsonl``.
    :param last_custom_id: of the prefix's last line.
    """

    prefix: int = 0
    finished: dict[int, journal.Entry] | None = None
    previous: Generator[bytes, None, None] | None = None
    sizes: tuple[int, int] = (0, 0)
    last_custom_id: str | None = None


class Opened(enum.Enum):
    """What `Checkpoint.open` found."""

    RUN = enum.auto()  # lines are left to send
    PUBLISHED = enum.auto()  # an earlier start had finished the run: its publishing is now completed
    UP_TO_DATE = enum.auto()  # the output holds this very run, complete (`Checkpoint.finished` is its report)


class Checkpoint:
    """The checkpoint directory of one output file."""

    def __init__(self, config: RunConfig, via: str | None = None) -> None:
        """:param via: the route besides online, as `identity` takes it.
        :raises ConfigError: the errors file or the report cannot be published (`_publish_targets`)."""
        self.config = config
        self.via = via
        self.dir = config.checkpoint_path
        self.output = self.dir / "output.jsonl"
        self.errors = self.dir / "errors.jsonl"
        self.journal = self.dir / "journal"
        self.previous = self.dir / "previous.jsonl"
        self.meta = self.dir / "meta.json"
        self.report = self.dir / "report.json"
        self.snapshot = self.dir / "prefix.json"
        self.spend = self.dir / "spend.json"
        self._lock = RunLock(self.dir / "lock", config.out)
        self._fd: int | None = None  # the directory, from `open` until the lock is released
        self._finals = (config.out, *_publish_targets(config))
        self.finished: dict[str, Any] | None = None  # when the output is up to date: its run's report
        self.run_id = ""  # set by `open`, read from meta.json or made for a new run
        # The index of the first line its files hold: a span's lines keep the whole input's.
        self.first_index = config.span.first_index if config.span is not None else 0

    def open(self, scan: InputScan, *, restart: bool, retry_failed: bool) -> Opened:
        """Take the lock and make the directory describe this run.

        :returns: `Opened.RUN`, or why there is nothing to send: an earlier start had already
            finished the run and committed it (its publishing has now been completed), or the
            output already holds this run, complete — the same input, the same options — as its
            report says (`finished`); then no file is left behind that was not there before.
        :raises ConfigError: another run holds the lock; the checkpoint belongs to a different
            input or options; or the output already holds a finished run, of another input or
            options or without a report that says, and neither ``restart`` nor
            ``retry_failed`` says what to do with it. A refused start leaves no file behind
            that was not there before.
        """
        self._fd, created = open_run_dir(self.dir, self.config.out)
        try:
            self._lock.acquire(self._fd)
        except BaseException:
            if created:
                self._remove_dir()
            self._release()
            raise
        try:
            if not restart and self._complete_publishing():
                self._release()
                return Opened.PUBLISHED
            self._prepare(scan, restart=restart, retry_failed=retry_failed)
        except BaseException:
            if created or self._holds_no_run():
                self._remove_dir()
            self._release()
            raise
        if self.finished is None:
            return Opened.RUN
        if created or self._holds_no_run():
            self._remove_dir()
        self._release()
        return Opened.UP_TO_DATE

    def _holds_no_run(self) -> bool:
        """Whether the directory holds nothing but the lock: what a crash at the very end of
        publishing leaves (the record removed, the directory not yet), or a start taking the lock."""
        try:
            return set(os.listdir(self._dir_fd())) <= {"lock"}
        except OSError:
            return False

    def _complete_publishing(self) -> bool:
        try:
            return publish.complete(self.dir, dir_fd=self._dir_fd())
        except OSError as exc:
            raise ConfigError(f"{self.dir}: could not finish publishing the finished run: {exc}; nothing was "
                              "sent: run the same command again once the disk is writable") from None

    def _prepare(self, scan: InputScan, *, restart: bool, retry_failed: bool) -> None:
        if restart or not self._exists(self.meta):
            # Without meta.json nothing here was started: at most a crash left the link to a
            # finished output that --retry-failed makes before writing it.
            self._clear()
        run_id = self.config.run_id or secrets.token_hex(8)
        meta = {"format": FORMAT, **identity(scan, self.config, self.via), "run_id": run_id}
        if self._exists(self.meta):
            with self._open(self.meta, "rb") as f:
                saved = orjson.loads(f.read())
            where = f"{self.config.out} has a checkpoint of a different run"
            restart_hint = "run again with --restart to discard it and start over"
            if saved.get("format") != FORMAT:
                raise ConfigError(f"{where} (checkpoint format {saved.get('format')}); {restart_hint}")
            moved = self._unpin(saved, meta)
            check_same_run(saved, meta, where, restart_hint)
            has_run_id = isinstance(saved.get("run_id"), str)
            self.run_id = saved["run_id"] if has_run_id else run_id  # else: started by a version that kept none
            if moved:
                log.info("no line in the checkpoint of %s was sent yet: it takes this start's %s", self.config.out,
                         " and ".join(moved))
            if moved or not has_run_id:
                self._write(self.meta, orjson.dumps({**saved, "run_id": self.run_id}, option=orjson.OPT_INDENT_2))
            if retry_failed and not self._exists(self.previous) and self._exists(self.output):
                self._unlink(self.snapshot)  # it describes the output moved away
                fd = self._dir_fd()  # its failures are to be re-sent:
                os.replace(self.output.name, self.previous.name, src_dir_fd=fd, dst_dir_fd=fd)
            return
        final = self.config.out
        if final.exists() and not restart:
            if not retry_failed:
                self.finished = self._finished_report(final, meta)
                if self.finished is not None:
                    return
                raise ConfigError(
                    f"{final} already holds a finished run: pass --retry-failed to re-send its failed "
                    "lines, or --restart to run every line again"
                )
            # A link, not a move: the finished output stays where the user expects it until the
            # new one replaces it.
            os.link(final, self.previous.name, dst_dir_fd=self._dir_fd())
        self.run_id = run_id
        self._write(self.meta, orjson.dumps(meta, option=orjson.OPT_INDENT_2))

    def _unpin(self, saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
        """Let ``saved`` (meta.json) take this start's `ENDPOINT_OPTIONS` when no line of the
        checkpoint was sent: an endpoint that answered nothing (a mistyped --base-url, a server not
        started) shaped none of the output, so fixing it is not another run.

        :returns: the options ``saved`` took (then meta.json is to be written again).
        """
        before, now = saved.get("options", {}), current["options"]
        moved = [name for name in ENDPOINT_OPTIONS if before.get(name) != now.get(name)]
        if not moved or not isinstance(before, dict) or self._sent_any():
            return []
        saved["options"] = {**before, **{name: now.get(name) for name in moved}}
        return moved

    def _sent_any(self) -> bool:
        """Whether a line this checkpoint holds was sent to the endpoint (an input line that could
        not be sent was not). Read until the first one: that is the first line, unless the input
        starts with lines that could not be sent."""
        if self._exists(self.previous):  # a finished output whose failures are being sent again
            return True
        if self._exists(self.output):
            with self._open(self.output, "rb") as f:
                if any(_was_sent(line) for line in f):
                    return True
        if self._exists(self.journal):
            with self._open(self.journal, "rb") as f:
                return any(_was_sent(entry.line) for entry in journal.scan(f))
        return False

    def _finished_report(self, final: Path, current: dict[str, Any]) -> dict[str, Any] | None:
        """The report of the complete run ``final`` holds, if its report says ``final`` is what
        that run published (by its size) and the run had this input and these options.

        :returns: ``None`` when no report says what ``final`` holds.
        :raises ConfigError: its run had another input or other options.
        """
        try:
            with open(self.config.report_path, "rb") as f:
                report = orjson.loads(f.read())
            size = final.stat().st_size
        except (OSError, orjson.JSONDecodeError):
            return None
        if not _describes_complete_run(report, size):
            return None
        check_same_run(report, current, f"{final} holds a finished run of another input or options",
                        "run with --restart to run every line again and replace it, or write to another -o")
        return report

    def recover(self, counter: PrefixCounter) -> Recovered:
        """Read back what earlier starts finished; repair torn tails; compact the journal.

        :param counter: told the ordered prefix: the snapshot's counters (`snapshot.py`), then
            each line after them.
        """
        prefix, sizes, last_custom_id = self._recover_prefix(counter)
        finished: dict[int, journal.Entry] = {}
        if self._exists(self.journal):
            with self._open(self.journal, "rb") as f:
                for entry in journal.scan(f):
                    if entry.index >= self.first_index + prefix:
                        finished[entry.index] = entry  # a later record of a line wins
        self._write(self.journal, b"".join(journal.encode(e.index, e.ok, e.line) for e in finished.values()))
        previous = _lines_from(self.open_previous(), prefix) if self._exists(self.previous) else None
        return Recovered(prefix, finished, previous, sizes, last_custom_id)

    def _recover_prefix(self, counter: PrefixCounter) -> tuple[int, tuple[int, int], str | None]:
        """Count the intact ordered lines, cut anything torn after them, rebuild the errors file
        after the snapshot (all of it without one); the prefix's length, the two files' sizes
        and the last line's custom_id."""
        saved = snapshot.load(self.snapshot, self.output, self.errors, self._dir_fd())
        count = good = 0
        last_custom_id = None
        if saved is not None:
            try:
                counter.restore(saved.report, saved.lines)
            except (KeyError, TypeError, ValueError):
                saved = None  # a report state this version cannot read: count every line
            else:
                count, good, last_custom_id = saved.lines, saved.output_bytes, saved.last_custom_id
                self._truncate(self.errors, saved.errors_bytes)
        with self._open(self.errors, "ab" if saved is not None else "wb") as errors:
            if self._exists(self.output):
                with self._open(self.output, "rb") as f:
                    f.seek(good)
                    for line in f:
                        try:
                            result = Result.from_line(count, line) if line.endswith(b"\n") else None
                        except ValueError:
                            result = None
                        if result is None:
                            break
                        counter.record(result)
                        last_custom_id = result.custom_id
                        if result.error is not None:
                            errors.write(line)
                        count += 1
                        good += len(line)
                self._truncate(self.output, good)
            errors_size = errors.tell()
        return count, (good, errors_size), last_custom_id

    def save_snapshot(self, saved: snapshot.Snapshot) -> None:
        """Record the prefix as of the last fsync (`snapshot.py`); call only once its bytes are fsynced.

        :raises OSError: it was not written (the previous one stays, still true).
        """
        self._write(self.snapshot, snapshot.encode(saved))

    def save_spend(self, ledger: bytes) -> None:
        """Record the spend ledger (`accounting.ledger.SpendLedger.encode`).

        :raises OSError: it was not written (the previous one stays, smaller but true).
        """
        self._write(self.spend, ledger)

    def load_spend(self) -> Any:
        """The saved spend ledger, decoded; ``None`` when there is none (or it cannot be read:
        the ledger then starts from nothing, as before there was one)."""
        try:
            with self._open(self.spend, "rb") as f:
                return orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError):
            return None

    def open_files(self) -> tuple[BinaryIO, BinaryIO, BinaryIO]:
        """The ordered output, errors and journal, open for appending."""
        return self._open(self.output, "ab"), self._open(self.errors, "ab"), self._open(self.journal, "ab")

    def open_previous(self) -> BinaryIO:
        """The finished output whose failures --retry-failed sends again, open for reading."""
        return self._open(self.previous, "rb")

    def commit(self, report: bytes | None) -> None:
        """Give the finished files (and ``report``) their final names and remove the checkpoint.

        :raises OSError: publishing failed part way; the next start completes it (sending nothing).
        """
        out, errors, report_path = self._finals
        moves = [(self.output, out), (self.errors, errors)]
        if report is not None:
            try:
                self._write(self.report, report)
                moves.append((self.report, report_path))
            except OSError as exc:  # the report is not worth keeping the finished output back for
                log.warning("could not write the report %s: %s", self.config.report_path, exc)
        try:
            publish.commit(self.dir, moves, dir_fd=self._dir_fd())
        finally:
            self._release()

    def close(self) -> None:
        """Leave the checkpoint for the next start."""
        self._release()

    def _release(self) -> None:
        self._lock.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- the directory's files, through its descriptor ---------------------------------------------

    def _dir_fd(self) -> int:
        assert self._fd is not None, "the checkpoint is not open"
        return self._fd

    def _open(self, path: Path, mode: str) -> BinaryIO:
        return open(path.name, mode, opener=publish.private_opener(self._dir_fd()))  # type: ignore[return-value]

    def _exists(self, path: Path) -> bool:
        try:
            os.stat(path.name, dir_fd=self._dir_fd(), follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name, dir_fd=self._dir_fd())

    def _write(self, path: Path, data: bytes) -> None:
        publish.write_atomically(path, data, private=True, dir_fd=self._dir_fd())

    def _truncate(self, path: Path, size: int) -> None:
        fd = publish.private_opener(self._dir_fd())(path.name, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)

    def _clear(self) -> None:
        for path in (self.output, self.errors, self.journal, self.previous, self.meta, self.report, self.snapshot,
                     self.spend):
            self._unlink(path)

    def _remove_dir(self) -> None:
        """Undo the directory a refused start created, or remove one that holds no run (its lock
        file is all either can hold)."""
        for name in os.listdir(self._dir_fd()):
            self._unlink(self.dir / name)
        if publish.same_file(self.dir, self._dir_fd()):
            with contextlib.suppress(OSError):  # not empty: another start took the lock meanwhile, and uses it
                self.dir.rmdir()


def _publish_targets(config: RunConfig) -> tuple[Path, Path]:
    """Where the errors file and the report are published: where a symlink at either name
    points (`publish.link_target`), on the output's filesystem, since publishing is a rename.

    :raises ConfigError: naming the file and why.
    """
    targets = []
    for what, path in (("errors file", config.errors_path), ("report", config.report_path)):
        try:
            target = publish.link_target(path)
            if target.parent != path.parent and os.stat(target.parent).st_dev != os.stat(path.parent).st_dev:
                raise ConfigError(f"the {what} {path} is a symlink to {target}, on another filesystem than the "
                                  "output; batchrun publishes by renaming: link within the filesystem, or remove the link")
        except OSError as exc:
            raise ConfigError(f"the {what} {path}: {exc.strerror}") from None
        targets.append(target)
    return targets[0], targets[1]


def _describes_complete_run(report: Any, output_bytes: int) -> TypeGuard[dict[str, Any]]:
    """Whether ``report`` is the report of a complete run that published ``output_bytes`` bytes,
    with every field `Checkpoint.open` reads back (an earlier version's report has none)."""
    if not (isinstance(report, dict) and report.get("status") == "complete" and report.get("output_bytes") == output_bytes):
        return False
    given, options, requests = report.get("input"), report.get("options"), report.get("requests")
    return (isinstance(given, dict) and is_int(given.get("size")) and isinstance(options, dict)
            and isinstance(requests, dict) and is_int(report.get("lines"))
            and all(is_int(requests.get(key)) for key in ("succeeded", "failed")))


def _was_sent(line: bytes) -> bool:
    """Whether an output line is of a request that was sent (a torn line may have been: it counts)."""
    try:
        result = Result.from_line(0, line)
    except ValueError:
        return True
    return result.attempts > 0 or result.status_code is not None


def _lines_from(file: BinaryIO, start: int) -> Generator[bytes, None, None]:
    """The lines of ``file`` from line ``start`` on; those before are read past now, in the
    caller's thread (a resume's worker thread), not at the first ``next`` on the event loop."""
    lines = _lines_after(file, start)
    next(lines)
    return lines


def _lines_after(file: BinaryIO, start: int) -> Generator[bytes, None, None]:
    with file as f:
        for _ in itertools.islice(f, start):
            pass
        yield b""  # primed: the lines before ``start`` are read past
        yield from f
