"""The work folder ``OUT.batch/`` beside a label run's output, and what its files say about the
run (`job` describes the steps that write them)."""

from __future__ import annotations

from pathlib import Path

import orjson

from ..config import RunConfig, errors_path_for
from ..disk import publish
from ..scale.parts import shards_folder


class Workspace:
    """The paths of the work folder beside an output."""

    def __init__(self, out: Path) -> None:
        self.dir = out.with_name(out.name + ".batch")
        self.requests = self.dir / "requests.jsonl"
        self.results = self.dir / "results.jsonl"
        self.errors = errors_path_for(self.results)
        # What the engine keeps until it publishes the results (`engine_folders`): any of them
        # is a run to continue.
        self.unfinished: tuple[Path, ...] = ()
        self.lock = self.dir / "lock"
        self.joined = self.dir / "joined"
        self.rows = self.dir / "rows"
        # A finished run's requests and results, set aside while only new rows are labeled (`previous`).
        self.previous_requests = self.dir / "previous.requests.jsonl"
        self.previous_results = self.dir / "previous.results.jsonl"

    def running(self) -> bool:
        """Whether an engine run on the requests is under way (stopped, or still at the provider)."""
        return any(path.exists() for path in self.unfinished)

    def join_pending(self) -> bool:
        """Whether the engine finished results the output was not joined from (`job`'s docstring)."""
        if not self.results.exists() or self.running():
            return False
        try:
            return bool(orjson.loads(self.joined.read_bytes()) != _identity(self.results))
        except FileNotFoundError:
            return True

    def mark_joined(self, out: Path) -> None:
        """Record that ``out`` was joined from the results as they are now."""
        publish.fsync_dir(self.dir)
        publish.fsync_dir(out.parent)
        publish.write_atomically(self.joined, orjson.dumps(_identity(self.results)))
        publish.fsync_dir(self.dir)


def engine_folders(config: RunConfig) -> tuple[Path, ...]:
    """The folders a run of ``config`` keeps until it publishes its output: its checkpoint, its
    batches at the provider (``--via batch``), its shards (``--ray``)."""
    return config.checkpoint_path, config.batches_path, shards_folder(config.out)


def _identity(path: Path) -> list[int]:
    """Which file ``path`` is now: a rename puts another file there, a rewrite changes it."""
    stat = path.stat()
    return [stat.st_ino, stat.st_size, stat.st_mtime_ns]
