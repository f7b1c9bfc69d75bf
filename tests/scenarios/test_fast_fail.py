"""Failures that every line would meet stop the run at once, with a message that names the fix:
a base URL where the endpoint is not, nothing listening, no API key; and Ctrl-C while nothing is
on the wire exits at once."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchrun import RetryPolicy
from batchrun.records import failure

from ..helpers import chat_line, wait_for, write_jsonl
from ..rawserver import RawServer, Seen, error_body, http, ok, question, replying, run

NOT_FOUND_PAGE = b"<html><head><title>404 Not Found</title></head><body>nginx</body></html>"


def not_found(seen: Seen, n: int) -> bytes:
    return http(404, NOT_FOUND_PAGE, {"content-type": "text/html"})


def invalid_url(seen: Seen, n: int) -> bytes:
    """OpenAI's own answer to a path it does not serve."""
    return http(404, error_body(f"Invalid URL (POST {seen.path})"))


@pytest.mark.parametrize("answer", [not_found, invalid_url], ids=["html", "openai"])
@pytest.mark.parametrize("n", [200, 3])  # past the first 8 404s; or every line of a short file
async def test_every_line_answered_404_for_the_path_stops_naming_it(tmp_path: Path, n: int,
                                                                   answer: Callable[[Seen, int], bytes]) -> None:
    with RawServer(replying(answer)) as server:
        stats, out = await run(tmp_path, server.base_url, n=n, concurrency=2)
        sent = len(server.seen)
    assert stats.exit_code == 4
    assert (stats.stop_reason or "").startswith("the endpoint has no /v1/chat/completions")
    assert f"check --base-url {server.base_url} (it should end where `chat/completions` can be appended)" in (
        stats.stop_reason or "")
    assert sent <= min(n, 8 + 2)
    assert out == []  # none of them was written as the line's failure: a resume sends them


async def test_a_404_that_is_the_apis_own_error_is_the_lines_failure(tmp_path: Path) -> None:
    """OpenAI answers an unknown model 404 ``model_not_found``: every line of that model fails, the
    run does not stop."""
    def script(seen: Seen, n: int) -> bytes:
        return http(404, error_body("The model `gpt-9` does not exist or you do not have access to it.",
                                    code="model_not_found"))

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=20, concurrency=2)
        assert len(server.seen) == 20
    assert stats.exit_code == 1 and stats.stop_reason is None
    assert {failure(o)["code"] for o in out} == {"model_not_found"}


async def test_once_a_line_succeeded_404s_are_those_lines_failures(tmp_path: Path) -> None:
    """Three 404 pages, two answers, then ten more 404 pages: more than would stop a run where
    none succeeded, and every one is its line's failure, those sent before the answers too."""
    answered = (question(3), question(4))

    def script(seen: Seen, n: int) -> bytes:
        return ok(seen) if seen.text in answered else not_found(seen, n)

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=15, concurrency=1)
    assert stats.exit_code == 1 and stats.stop_reason is None
    assert [o["response"]["status_code"] for o in out] == [404] * 3 + [200] * 2 + [404] * 10


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("threshold", [0, 10])  # without the outage breaker, and with it
async def test_connection_refused_before_any_answer_stops_naming_the_address(tmp_path: Path, threshold: int) -> None:
    port = closed_port()
    stats, out = await run(tmp_path, f"http://127.0.0.1:{port}/v1", n=100, concurrency=16, outage_threshold=threshold,
                           retry=RetryPolicy(max_attempts=6, backoff_base=0.01, backoff_max=0.05))
    assert stats.exit_code == 4
    assert (stats.stop_reason or "").startswith(f"connection refused: 127.0.0.1:{port}")
    assert out == []  # no line was failed for it: a resume sends them all


async def test_connection_refused_after_the_endpoint_answered_is_not_a_stop(tmp_path: Path) -> None:
    """Once the endpoint has answered, refusals are an outage (retries, the breaker), as before."""
    gone = asyncio.Event()

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(seen))
        if len(server.seen) == 2:
            assert server._server is not None
            server._server.close()  # no more connections: they are refused
            gone.set()
        return False  # and none kept open

    with RawServer(handler) as server:
        stats, out = await run(tmp_path, server.base_url, n=6, concurrency=1)
    assert gone.is_set()
    assert stats.stop_reason is None and stats.exit_code == 1
    codes = [o["error"]["code"] if o["error"] else "ok" for o in out]
    assert sorted(codes) == ["connection_error"] * 4 + ["ok"] * 2


@pytest.mark.parametrize(("variable", "hint"), [
    ("OPENAI_API_KEY", "set OPENAI_API_KEY (or the variable named by --api-key-env)"),
    ("MY_KEY", "set MY_KEY (the variable named by --api-key-env)"),
])
async def test_401_with_no_key_sent_says_which_variable_to_set(tmp_path: Path, variable: str, hint: str) -> None:
    def script(seen: Seen, n: int) -> bytes:
        assert "authorization" not in seen.headers
        return http(401, error_body("You didn't provide an API key.", kind="invalid_request_error"))

    with RawServer(replying(script)) as server:
        stats, out = await run(tmp_path, server.base_url, n=50, concurrency=2, api_key_env=variable)
        assert len(server.seen) <= 2
    assert stats.exit_code == 4 and out == []
    assert (stats.stop_reason or "").startswith("no API key was sent (HTTP 401")
    assert (stats.stop_reason or "").endswith(hint)


async def test_401_to_a_key_sent_in_a_header_is_a_rejected_key_not_a_missing_one(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        assert seen.headers["api-key"] == "azure-secret-value"
        return http(401, error_body("Access denied due to invalid subscription key.", kind="invalid_request_error"))

    with RawServer(replying(script)) as server:
        stats, _ = await run(tmp_path, server.base_url, n=10, concurrency=2, headers=("api-key: azure-secret-value",))
    assert stats.exit_code == 4
    assert (stats.stop_reason or "").startswith("the endpoint rejected the credentials (HTTP 401)")


def test_the_cli_names_the_variable_of_api_key_env(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    env = {k: v for k, v in os.environ.items() if k != "MY_KEY"}
    with RawServer(replying(lambda seen, n: http(401, error_body("no key")))) as server:
        proc = subprocess.run([sys.executable, "-m", "batchrun", "run", str(source), "--base-url", server.base_url,
                               "--api-key-env", "MY_KEY"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 4 and "set MY_KEY (the variable named by --api-key-env)" in proc.stderr


def interrupt_while_waiting(tmp_path: Path, server: RawServer, lines: int, *extra: str) -> tuple[int, str]:
    """``batchrun run`` with a drain far longer than the hang guard, interrupted once the server
    has seen a request and its answer has had time to arrive: its exit code and what it printed."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(lines)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(source), "--base-url", server.base_url, "-c", "1", "-v",
         "--drain-timeout", "600", *extra], stderr=subprocess.PIPE, text=True)
    try:
        printed = wait_for(proc, "started:")
        while not server.seen:
            time.sleep(0.01)
        time.sleep(0.5)  # the answer is in, and the line is waiting: the case under test
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)  # the hang guard: the drain would wait 600 s
        return proc.returncode, printed + rest
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_ctrl_c_during_a_backoff_exits_at_once(tmp_path: Path) -> None:
    def script(seen: Seen, n: int) -> bytes:
        return http(503, error_body("down for maintenance"), {"retry-after": "300"})

    with RawServer(replying(script)) as server:
        code, printed = interrupt_while_waiting(tmp_path, server, 1)
        assert len(server.seen) == 1  # the retry, due in 300 s, was not sent
    assert code == 4, printed
    assert "retrying in" in printed and "SIGINT: no new requests; none in flight: stopping now" in printed
    assert "interrupted by SIGINT" in printed and "run the same command again" in printed


def test_ctrl_c_while_paced_exits_at_once(tmp_path: Path) -> None:
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        # At 1 request a minute the first line goes at once and the second waits its turn.
        code, printed = interrupt_while_waiting(tmp_path, server, 3, "--rpm", "1")
        assert len(server.seen) == 1
    assert code == 4, printed
    assert "interrupted by SIGINT" in printed and "run the same command again" in printed


@pytest.mark.parametrize("last", ["answer", "retry"])
def test_ctrl_c_drains_what_is_on_the_wire_then_exits(tmp_path: Path, last: str) -> None:
    """One line waits out a 300 s Retry-After while another is on the wire: the drain ends when
    that one's answer comes (or its own 503 sends it to wait too), not 300 s later."""
    wait_long = http(503, error_body("down for maintenance"), {"retry-after": "300"})

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.text == question(0):
            await asyncio.sleep(1)  # on the wire when the SIGINT comes
            writer.write(ok(seen) if last == "answer" else wait_long)
        else:
            writer.write(wait_long)
        return True

    with RawServer(handler) as server:
        code, printed = interrupt_while_waiting(tmp_path, server, 2, "-c", "2")
        assert sorted(s.text for s in server.seen) == [question(0), question(1)]
    assert code == 4, printed
    assert "SIGINT: no new requests; waiting up to 600 s for the 1 in flight" in printed
    assert "interrupted by SIGINT" in printed
