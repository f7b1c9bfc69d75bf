"""The retry table of ``docs/retries.md``, over real loopback: which statuses are tried again,
what ``x-should-retry`` overrides, and the 429 that stops the run (``insufficient_quota``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun import RetryPolicy
from batchrun.records import failure

from ..rawserver import RawServer, Seen, error_body, http, ok, question, replying, run

CLOUDFLARE_PAGE = b"<html><body><h1>Error 522</h1>Connection timed out</body></html>"


@pytest.mark.parametrize("status", [520, 521, 522, 523, 524])
async def test_5xx_beyond_504_are_retried(tmp_path: Path, status: int) -> None:
    """Cloudflare's 52x (an HTML page)."""
    def script(seen: Seen, n: int) -> bytes:
        if n >= 2:
            return ok(seen)
        return http(status, CLOUDFLARE_PAGE, {"content-type": "text/html"})

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=3)
        assert [server.count(question(i)) for i in range(3)] == [3] * 3
    assert stats.exit_code == 0 and stats.succeeded == 3 and stats.retries == 6
    assert [o["batchrun"]["attempts"] for o in out] == [3] * 3


@pytest.mark.parametrize(("status", "body"), [
    (529, error_body("Overloaded", kind="overloaded_error")),  # Anthropic-compatible proxies
    (498, error_body("Flex tier capacity exceeded", code="capacity_exceeded")),  # Groq's flex
    (429, error_body("Resource Unavailable", kind="resource_unavailable")),  # OpenAI's flex
])
async def test_refusals_for_capacity_are_retried_past_the_attempts(tmp_path: Path, status: int, body: bytes) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return ok(seen) if n >= 4 else http(status, body)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=3, retry=RetryPolicy(max_attempts=2, backoff_base=0.01,
                                                                                  backoff_max=0.01))
        assert [server.count(question(i)) for i in range(3)] == [5] * 3
    assert stats.exit_code == 0 and stats.succeeded == 3
    assert [(o["batchrun"]["attempts"], o["batchrun"]["capacity_refused"]) for o in out] == [(5, 4)] * 3


@pytest.mark.parametrize("status", [501, 505])
async def test_5xx_that_name_what_the_server_cannot_do_are_final(tmp_path: Path, status: int) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(status, error_body("not here", code=f"code_{status}", kind="server_error"))

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=3, retry=RetryPolicy(max_attempts=6))
        assert len(server.seen) == 3
    assert stats.exit_code == 1 and stats.failed == 3 and stats.retries == 0
    assert {failure(o)["code"] for o in out} == {f"code_{status}"}


async def test_x_should_retry_true_retries_a_status_that_is_otherwise_final(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        if n < 2:
            return http(400, error_body("a replica is warming up", code="warming_up"), {"x-should-retry": "true"})
        return ok(seen)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=3)
        assert len(server.seen) == 9
    assert stats.exit_code == 0 and [o["batchrun"]["attempts"] for o in out] == [3] * 3


@pytest.mark.parametrize(("status", "code"), [(503, "overloaded"), (429, "rate_limit_exceeded")])
async def test_x_should_retry_false_makes_a_retried_status_final(tmp_path: Path, status: int, code: str) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(status, error_body("do not come back", code=code), {"x-should-retry": "false"}) if n == 0 \
            else ok(seen)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=3, retry=RetryPolicy(max_attempts=6))
        assert len(server.seen) == 3
    assert stats.exit_code == 1 and stats.failed == 3 and stats.retries == 0
    assert [(o["response"]["status_code"], failure(o)["code"]) for o in out] == [(status, code)] * 3


async def test_insufficient_quota_stops_the_run_resumable(tmp_path: Path) -> None:
    funded = False

    def script(seen: Seen, n: int) -> bytes:
        if funded:
            return ok(seen)
        body = error_body("You exceeded your current quota, please check your plan and billing details.",
                          code="insufficient_quota", kind="insufficient_quota")
        return http(429, body, {"retry-after": "1"})

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=200, concurrency=4)
        sent = len(server.seen)
        assert stats.exit_code == 4
        assert stats.stop_reason == ("the account is out of quota (insufficient_quota): add credits or raise the "
                                     "limit; the run is resumable")
        assert sent <= 4  # the first answers stop it: not 200 lines waiting on a quota that does not come back
        assert out == []  # none of them was written as a failure

        funded = True  # credits added: the same command goes on
        stats, out = await run(tmp_path, server.base_url, n=200, concurrency=4)
    assert stats.exit_code == 0 and len(out) == 200 and all(o["error"] is None for o in out)
    assert len(server.seen) == sent + 200


async def test_a_plain_429_is_still_waited_out_and_retried(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        body = error_body("Rate limit reached for requests", code="rate_limit_exceeded", kind="requests")
        return http(429, body, {"retry-after-ms": "5"}) if n < 2 else ok(seen)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=5, retry=RetryPolicy(max_attempts=1))
        assert len(server.seen) == 15
    assert stats.exit_code == 0 and stats.rate_limited == 10
    assert [o["batchrun"]["attempts"] for o in out] == [3] * 5
