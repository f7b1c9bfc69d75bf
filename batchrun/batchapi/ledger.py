"""What a run has at the provider, kept beside its output: ``results.jsonl.batches/``.

    lock             held (flock) from planning to publishing, so two starts never submit twice
    ledger.json      the run's id, its input and options, and each batch (`Part`): its lines,
                     its uploaded file's id, its batch's id and last known state
    part-NNNN.jsonl  a batch's request file (`plan.py`)
    part-NNNN.*.jsonl  its output and error files as downloaded, and its answers in input order

The ledger is saved, fsynced, the moment an id comes back: a file id before the batch is
created from it, a batch id before anything else is done. A start killed between a reply and
its record finds what it made again: a file is uploaded again (an unused file costs nothing),
and a batch is looked up by the ``metadata`` it was created with (`api.find_batch`) before one
is created. The directory is removed once the output is published.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..disk.publish import fsync_dir, private_file, write_atomically
from ..errors import ConfigError

FORMAT = 1
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclass
class Part:
    """One batch: its lines, and what the provider has of it.

    :param first_line: the input line its first request comes from, for messages.
    :param size: bytes of its request file.
    :param counts: the batch's last ``request_counts``.
    :param failure: why the provider failed the batch as a whole (its ``errors``).
    :param collected: its answers are in input order on disk (`answers.order`).
    :param first_index: the input index of its first request.
    :param worst_usd: the most its requests can cost at the Batch API's price (`--max-cost`);
        ``None`` until a capped start needs it.
    :param tokens: what it enqueues against the provider's batch queue limit (`queue.py`).
    :param refused: the last batch of it the provider refused for that limit: not its batch.
    """

    number: int
    url: str
    model: str | None
    first_line: int
    lines: int = 0
    size: int = 0
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    failure: str | None = None
    collected: bool = False
    first_index: int = 0
    worst_usd: float | None = None
    tokens: int = 0
    refused: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def update(self, batch: dict[str, Any]) -> bool:
        """Take in the Batch object the provider returned; whether anything changed."""
        before = (self.status, self.counts, self.output_file_id, self.error_file_id, self.failure)
        status = batch.get("status")
        self.status = status if isinstance(status, str) else self.status
        counts = batch.get("request_counts")
        if isinstance(counts, dict):
            self.counts = {key: value for key, value in counts.items() if isinstance(value, int)}
        for key in ("output_file_id", "error_file_id"):
            value = batch.get(key)
            if isinstance(value, str) and value:
                setattr(self, key, value)
        if self.status == "failed":
            self.failure = _failure(batch.get("errors"))
        return before != (self.status, self.counts, self.output_file_id, self.error_file_id, self.failure)


class Ledger:
    """``ledger.json``: see the module docstring.

    :param run: the run's own random id, in each batch's ``metadata`` (`api.metadata`).
    :param created: when the run planned its batches (seconds since the epoch): a deadline
        counts from there, and a batch made before it is not this run's.
    :param identity: the input and options (`disk.identity.identity`).
    :param retry_failed: the batches hold the failed lines of a finished output, not every line.
    :param queue_tokens: the batch queue limit learned from a batch the provider refused (`queue.py`).
    """

    def __init__(self, directory: Path, run: str, created: float, identity: dict[str, Any], parts: list[Part],
                 *, retry_failed: bool = False, queue_tokens: int | None = None) -> None:
        self.dir = directory
        self.run = run
        self.created = created
        self.identity = identity
        self.parts = parts
        self.retry_failed = retry_failed
        self.queue_tokens = queue_tokens

    @staticmethod
    def path(directory: Path) -> Path:
        return directory / "ledger.json"

    @classmethod
    def load(cls, directory: Path) -> Ledger | None:
        """The ledger in ``directory``, or ``None`` when nothing was planned there.

        :raises ConfigError: it cannot be read, or a newer batchrun wrote it.
        """
        try:
            with open(cls.path(directory), "rb", opener=private_file) as f:
                doc = orjson.loads(f.read())
            if doc.get("format") != FORMAT:
                raise ConfigError(f"{cls.path(directory)}: written by another version of batchrun (format "
                                  f"{doc.get('format')}); collect or cancel its batches with that version")
            parts = [Part(**part) for part in doc["parts"]]
            return cls(directory, doc["run"], float(doc["created"]), doc["identity"], parts,
                       retry_failed=bool(doc.get("retry_failed")), queue_tokens=doc.get("queue_tokens"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{cls.path(directory)}: cannot be read ({exc}); its batches may still be at the "
                              "provider: look them up there before removing the directory") from None

    def save(self) -> None:
        """Write the ledger whole, durably (the rename too), before the caller goes on.

        :raises OSError: it was not written; the previous one stays.
        """
        doc = {"format": FORMAT, "run": self.run, "created": self.created, "identity": self.identity,
               "retry_failed": self.retry_failed,
               "queue_tokens": self.queue_tokens, "parts": [dataclasses.asdict(part) for part in self.parts]}
        write_atomically(self.path(self.dir), orjson.dumps(doc, option=orjson.OPT_INDENT_2), private=True)
        fsync_dir(self.dir)

    @property
    def in_flight(self) -> list[Part]:
        """Batches created and not ended."""
        return [part for part in self.parts if part.batch_id is not None and not part.ended]

    def remove(self) -> None:
        """Delete the directory: the output holds everything the batches answered.

        :raises OSError: some of it is left.
        """
        remove_dir(self.dir)


def remove_dir(directory: Path, keep: str | None = None) -> None:
    """Empty ``directory`` (but the file named ``keep``), and remove it when nothing is kept.

    :raises OSError: some of it is left.
    """
    for path in directory.iterdir():
        if path.name != keep:
            path.unlink(missing_ok=True)
    if keep is None:
        os.rmdir(directory)


def _failure(errors: Any) -> str:
    """The first of a failed batch's ``errors.data`` messages, and how many more there are."""
    data = errors.get("data") if isinstance(errors, dict) else None
    messages = [str(item.get("message") or item.get("code")) for item in data or [] if isinstance(item, dict)]
    if not messages:
        return "the provider failed the batch without saying why"
    more = f" (and {len(messages) - 1} more errors)" if len(messages) > 1 else ""
    return messages[0] + more
