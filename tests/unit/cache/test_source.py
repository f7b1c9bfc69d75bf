"""`cache.source`: what a request's key is made of, what is kept (successes, scrubbed), and an
entry that no longer decodes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from batchrun.cache.source import ResponseCache, request_key, view_cache
from batchrun.cache.store import CacheBroken, Store, cache_file
from batchrun.config import ApiKey, RunConfig
from batchrun.records import Job, LineError, Result

KEY = "sk-proj-Abcdefghijklmnopqrstuvwxyz0123456789"
ANSWER = {"model": "gpt-4o-mini", "choices": [{"message": {"content": "hi"}}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def job(index: int = 0, body: dict[str, object] | None = None, url: str = "/v1/chat/completions") -> Job:
    return Job(index, index + 1, f"req-{index}", url, orjson.dumps(body or {"model": "gpt-4o-mini", "temperature": 0}),
               "gpt-4o-mini")


def opened(tmp_path: Path, **config: object) -> ResponseCache:
    settings: dict[str, object] = {"base_url": "http://127.0.0.1:9/v1", **config}
    return ResponseCache(RunConfig(tmp_path / "in.jsonl", **settings), Store(tmp_path / "cache"))  # type: ignore[arg-type]


def test_the_key_is_made_of_the_path_the_body_and_the_base_url() -> None:
    base = request_key("https://api.openai.com/v1", job())
    assert request_key("https://api.openai.com/v1/", job()) == base  # one API root, one key
    assert request_key("https://example.com/v1", job()) != base
    assert request_key("https://api.openai.com/v1", job(url="/v1/responses")) != base
    assert request_key("https://api.openai.com/v1", job(body={"model": "gpt-4o-mini", "temperature": 0.5})) != base
    assert request_key("https://api.openai.com/v1", job(body={"model": "gpt-4o", "temperature": 0})) != base
    assert request_key("https://api.openai.com/v1", job(index=7)) == base  # the line's place and id are not in it
    assert len(base) == 32


def test_a_success_is_kept_and_answers_the_same_request_later(tmp_path: Path) -> None:
    cache = opened(tmp_path)
    assert cache.take(job()) is None
    cache.keep(Result(0, "req-0", 200, "req_abc", ANSWER, None, attempts=1, model="gpt-4o-mini"))
    cache.close()
    again = opened(tmp_path)
    hit = again.take(job(index=5))
    again.close()
    assert hit is not None and hit.cached and hit.ok and hit.index == 5 and hit.custom_id == "req-5"
    assert (hit.status_code, hit.request_id, hit.body, hit.attempts) == (200, "req_abc", ANSWER, 0)
    assert orjson.loads(hit.encode("0" * 16))["batchrun"] == {"attempts": 0, "latency_ms": None, "cached": True}


def test_failures_and_lines_never_asked_for_are_not_kept(tmp_path: Path) -> None:
    cache = opened(tmp_path)
    assert cache.take(job(0)) is None and cache.take(job(1, {"model": "gpt-4o-mini", "n": 2})) is None
    cache.keep(Result(0, "req-0", 500, None, {"error": {"message": "boom"}}, {"code": "http_500", "message": "boom"}))
    cache.keep(Result(2, "req-2", 200, None, ANSWER, None))  # carried over: never asked for
    cache.keep(Result(1, "req-1", None, None, None, {"code": "timeout", "message": "timed out"}))
    assert cache.take(LineError(3, 4, "req-3", "invalid_json", "bad")) is None
    cache.close()
    assert sqlite3.connect(cache_file(tmp_path / "cache")).execute("SELECT count(*) FROM answers").fetchone() == (0,)


def test_the_key_is_never_written_into_the_cache(tmp_path: Path) -> None:
    cache = opened(tmp_path, api_key=ApiKey(KEY), headers=(f"X-Gateway: {KEY[::-1]}",))
    assert cache.take(job()) is None
    quoting = {**ANSWER, "choices": [{"message": {"content": f"your key is {KEY} and {KEY[::-1]}"}}]}
    cache.keep(Result(0, "req-0", 200, None, quoting, None))
    cache.close()
    written = b"".join(path.read_bytes() for path in (tmp_path / "cache").iterdir())
    assert b"your key is ***" in written
    for secret in (KEY, KEY[::-1], KEY[8:20]):
        assert secret.encode() not in written


def test_an_entry_that_no_longer_decodes_is_a_miss(tmp_path: Path) -> None:
    cache = opened(tmp_path)
    cache.take(job())
    cache.keep(Result(0, "req-0", 200, None, ANSWER, None))
    cache.close()
    db = sqlite3.connect(cache_file(tmp_path / "cache"))
    for garbage in (b"\xff not json", b'{"a": 1}', b"[500, null, {}]", b'[200, 5, {}]'):
        db.execute("UPDATE answers SET answer = ?", (garbage,))
        db.commit()
        again = opened(tmp_path)
        assert again.take(job()) is None, garbage
        again.close()


def test_a_view_holds_what_a_run_kept_for_its_endpoint_and_makes_no_cache(tmp_path: Path) -> None:
    """What ``batchrun estimate --cache`` reads: the run's own key, so exactly the lines it would
    not send; a folder with no cache is refused, not made."""
    cache = opened(tmp_path)
    assert cache.take(job()) is None
    cache.keep(Result(0, "req-0", 200, "req_abc", ANSWER, None, attempts=1, model="gpt-4o-mini"))
    cache.close()
    view = view_cache(tmp_path / "cache", "http://127.0.0.1:9/v1")
    other = view_cache(tmp_path / "cache", "https://api.openai.com/v1")
    simulated = view_cache(tmp_path / "cache", "http://127.0.0.1:9/v1", mock=True)
    try:
        assert view.holds(job(index=3)) and not view.holds(job(body={"model": "gpt-4o-mini", "temperature": 1}))
        assert not other.holds(job()) and not simulated.holds(job())
    finally:
        for each in (view, other, simulated):
            each.close()
    with pytest.raises(CacheBroken, match="holds no response cache"):
        view_cache(tmp_path / "nothing-here", "http://127.0.0.1:9/v1")
    assert not (tmp_path / "nothing-here").exists()
