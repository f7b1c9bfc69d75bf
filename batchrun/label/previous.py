"""Labeling only what is new: the answers a finished label run already bought, kept by request.

When the data, template or options changed since the run that wrote the output, the earlier
requests and results are set aside (`set_aside`: ``OUT.batch/previous.requests.jsonl`` and
``previous.results.jsonl``, line for line) and the requests rendered anew. `Previous` is then
the first of the engine's sources (`engine.sources`): a request rendered exactly as before
gets the answer it had, and is not sent; the new and changed rows are sent, and the rows gone
from the data are gone from the output. With ``--id-field`` a row keeps its answer when its id
and its request are unchanged; without one (ids are line numbers, which move when rows are
inserted), when its request is. A failed answer is not kept: that row is sent again. Once the
output is joined the set-aside files are removed (`discard`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import orjson

from ..disk.publish import fsync_dir
from ..records import Job, LineError, Result, failure
from .workspace import Workspace


def unchanged(work: Workspace, lines: Iterable[bytes]) -> bool:
    """Whether ``lines``, the requests as rendered now, are the earlier requests byte for byte."""
    now = hashlib.blake2b(digest_size=16)
    for line in lines:
        now.update(line)
    try:
        with work.requests.open("rb") as f:
            return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).digest() == now.digest()
    except FileNotFoundError:
        return False


def set_aside(work: Workspace) -> None:
    """Move the finished run's results, then its requests, aside, durably. Repeatable: a start
    killed between the two renames finds the results aside and the requests still the earlier
    ones, and the next completes the move."""
    if work.results.exists():
        os.replace(work.results, work.previous_results)
    if not work.previous_requests.exists():
        os.replace(work.requests, work.previous_requests)
    fsync_dir(work.dir)


def discard(work: Workspace) -> None:
    for path in (work.previous_results, work.previous_requests):
        path.unlink(missing_ok=True)


def _key(url: str, body: bytes, custom_id: str | None) -> bytes:
    """A request's identity: its endpoint and body (as JSON re-encoded), and its id if given."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (custom_id.encode() if custom_id is not None else b"", url.encode(), orjson.dumps(orjson.loads(body))):
        digest.update(b"%d:" % len(part) + part)
    return digest.digest()


class Previous:
    """The answered requests of the run set aside (module docstring), asked for by request: a
    `Source`. Holds a digest and an offset per answered request, never the answers.

    :param by_id: a row keeps its answer only under the same ``custom_id`` (``--id-field``).
    """

    def __init__(self, work: Workspace, *, by_id: bool) -> None:
        self._by_id = by_id
        self._at: dict[bytes, tuple[int, int]] = {}
        self._results = open(work.previous_results, "rb")  # noqa: SIM115 -- closed by close()
        try:
            self._index(work.previous_requests)
        except BaseException:
            self._results.close()
            raise

    def _index(self, requests_path: Path) -> None:
        offset = 0
        with open(requests_path, "rb") as requests:
            for request, result in zip(requests, self._results, strict=False):
                try:
                    asked, answered = orjson.loads(request), orjson.loads(result)
                    if failure(answered) is None:
                        key = _key(asked["url"], orjson.dumps(asked["body"]), asked["custom_id"] if self._by_id else None)
                        self._at.setdefault(key, (offset, len(result)))
                except (ValueError, KeyError, TypeError):
                    pass  # a line that cannot be read is not kept: its row is sent
                offset += len(result)

    def take(self, item: Job | LineError) -> Result | None:
        if isinstance(item, LineError):
            return None
        where = self._at.get(_key(item.url, item.body, item.custom_id if self._by_id else None))
        if where is None:
            return None
        self._results.seek(where[0])
        record = orjson.loads(self._results.read(where[1]))
        record["custom_id"] = item.custom_id  # a row's line number moves when rows are inserted before it
        return Result.from_line(item.index, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def close(self) -> None:
        self._results.close()
