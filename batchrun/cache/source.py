"""The response cache as the engine sees it: a source of answers (`engine.sources`), and where
the run's successes are kept (`ResponseCache.keep`).

A request's key is a hash of what makes its answer: the method, the endpoint path, the body as
sent (the model and every parameter in it) and the endpoint's base URL — never the key or a
header's value. A line whose key the cache holds is answered from it and never sent: its
output line says ``batchrun.cached: true``, and it costs nothing. An answer is kept only when
it succeeded, whichever route got it (online, the Batch API), after the run's scrubber
(`client.credentials_scrubber`) has taken any credentials out of it. ``temperature > 0`` is
cached too: asking the cache is the user's choice.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import orjson

from ..client import credentials_scrubber
from ..config import RunConfig
from ..records import Job, LineError, Result
from .store import CacheBroken, Store

log = logging.getLogger("batchrun")

_KEY_VERSION = b"batchrun.cache/1"
# What the key is made of for the built-in simulator, whose port changes from start to start.
_SIMULATOR = "(the built-in simulator)"


def request_key(base_url: str, job: Job) -> bytes:
    """The cache key of ``job`` sent to ``base_url``: 32 bytes of SHA-256 over its parts, each
    preceded by its length, so that no two requests' parts run into one another."""
    digest = hashlib.sha256(_KEY_VERSION)
    for part in (b"POST", job.url.encode(), base_url.rstrip("/").encode(), job.body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


class CacheView:
    """Which lines a cache would answer, read only: a run's `ResponseCache`, and ``batchrun
    estimate --cache``, which must count exactly the lines a run would not send.

    :param store: the database (`store.Store`); closed by `close`.
    :param base_url: the endpoint's base URL; ``mock``: the built-in simulator's, whatever its port.
    """

    def __init__(self, store: Store, base_url: str, *, mock: bool = False) -> None:
        self._store = store
        self._base_url = _SIMULATOR if mock else base_url

    def holds(self, job: Job) -> bool:
        """Whether ``job``'s answer is in the cache (the Batch API's plan leaves it out)."""
        return self._answer(request_key(self._base_url, job)) is not None

    @property
    def broken(self) -> str | None:
        """Why the cache stopped being read, if it did (then it holds nothing from there on)."""
        return self._store.broken

    def close(self) -> None:
        self._store.close()

    def _answer(self, key: bytes) -> tuple[int, str | None, Any] | None:
        """The stored answer of ``key``: an entry that does not decode is a miss."""
        stored = self._store.get(key)
        if stored is None:
            return None
        try:
            status, request_id, body = orjson.loads(stored)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None
        if not isinstance(status, int) or not 200 <= status < 300 or not isinstance(request_id, (str, type(None))):
            return None
        return status, request_id, body


class ResponseCache(CacheView):
    """Answers lines from the cache, and keeps the successes the run writes (module docstring).

    :param store: the database (`store.Store`); closed by `close`.
    """

    def __init__(self, config: RunConfig, store: Store) -> None:
        super().__init__(store, config.base_url, mock=config.mock)
        self._scrubber = credentials_scrubber(config)
        # The keys of the lines asked for and not answered, until their answers are kept: at
        # most the lines in flight or waiting to be written (the window).
        self._missed: dict[int, bytes] = {}
        self.hits = 0

    def take(self, item: Job | LineError) -> Result | None:
        """``item``'s answer from the cache, or ``None``: then its answer is kept when it succeeds."""
        if isinstance(item, LineError):
            return None
        key = request_key(self._base_url, item)
        answer = self._answer(key)
        if answer is None:
            self._missed[item.index] = key
            return None
        self.hits += 1
        status, request_id, body = answer
        billed = body.get("model") if isinstance(body, dict) else None
        return Result(item.index, item.custom_id, status, request_id, body, None, model=billed or item.model,
                      cached=True)

    def keep(self, result: Result) -> None:
        """Store ``result``'s answer if it succeeded and its line was asked for and missed."""
        key = self._missed.pop(result.index, None)
        if key is None or not result.ok or result.status_code is None:
            return
        body = result.body
        entry = orjson.dumps([result.status_code, result.request_id, body])
        if self._scrubber.suspect(entry):
            entry = orjson.dumps([result.status_code, result.request_id, self._scrubber.json(body)])
        self._store.put(key, entry)


def open_cache(config: RunConfig) -> ResponseCache | None:
    """The cache ``config.cache`` names, or ``None`` without one; one that cannot be used is
    bypassed, with one warning, and the run goes on without it."""
    if config.cache is None:
        return None
    try:
        return ResponseCache(config, Store(config.cache))
    except CacheBroken as exc:
        log.warning("response cache bypassed: %s", exc)
        return None


def view_cache(directory: Path, base_url: str, *, mock: bool = False) -> CacheView:
    """The cache in ``directory``, to read: nothing is made there.

    :raises CacheBroken: no cache there, or not a usable one.
    """
    return CacheView(Store(directory, create=False), base_url, mock=mock)
