"""The API key never leaves the Authorization header.

A recognisable key (``sk-test-CANARY-…``) is required by the endpoint, so the runs below only
get answers when it is really sent; then every file batchrun wrote and everything it printed
(at ``-v``, debug level) is searched for it, and for pieces of it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from batchrun import ApiKey, RetryPolicy, RunConfig, run_batch
from batchrun.errors import ConfigError
from batchrun.records import failure
from batchrun.scrub import RUN, Scrubber
from batchrun.simulator import Faults, SimulatorConfig, run_in_thread
from batchrun.transport import AiohttpTransport

from ..helpers import chat_line, read_jsonl, wait_for, write_jsonl
from ..leaks import KEY, batchrun_frame_locals, json_escaped, leaking_files, leaks
from ..rawserver import Handler, RawServer, Seen, chat_answer, error_body, http, replying

KEY_ENV = "BATCHRUN_TEST_SECRET_KEY"
FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.005)


def hostile_input(path: Path, n: int) -> Path:
    """Chat lines, some answered 400 (empty messages), one invalid, one duplicate id."""
    rows: list[Any] = [chat_line(i) for i in range(n)]
    for i in range(3, n, 20):
        rows[i]["body"]["messages"] = []
    rows[10] = chat_line(9)  # duplicate custom_id
    write_jsonl(path, rows)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[5] = b'{"custom_id": "req-5", "body": {"model": \n'  # not JSON
    path.write_bytes(b"".join(lines))
    return path


def batchrun_run(source: Path, out: Path, base_url: str, key: str = KEY, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHRUN_"))}
    env[KEY_ENV] = key
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(source), "-o", str(out), "--base-url", base_url,
         "--api-key-env", KEY_ENV, "-v", "--progress-interval", "0.05", "-c", "8", "--max-attempts", "8", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


def test_a_job_with_failures_retries_a_crash_and_a_resume_never_shows_the_key(tmp_path: Path) -> None:
    source = hostile_input(tmp_path / "in.jsonl", 400)
    out = tmp_path / "out.jsonl"
    checkpoint = tmp_path / "out.jsonl.checkpoint"
    # The CLI's backoff is real (1 s doubling): modest rates keep the slowest line's waits short.
    faults = Faults(rate_429=0.08, rate_500=0.04, rate_drop=0.02, rate_truncate=0.01, rate_malformed=0.02,
                    retry_after_s=0.01, require_api_key=KEY)
    printed: list[str] = []
    with run_in_thread(SimulatorConfig(faults=faults, latency_ms=10, seed=4)) as sim:
        # 1. kill -9 mid-run: the checkpoint is what is left (paced at 10 a second, so that "mid-run"
        # does not depend on how fast the machine is).
        proc = batchrun_run(source, out, sim.base_url, KEY, "--rpm", "600")
        printed.append(wait_for(proc, "progress:"))
        time.sleep(0.15)
        proc.kill()
        printed.append(finish(proc)[1])
        assert checkpoint.is_dir() and not out.exists()
        assert leaking_files(tmp_path) == {}, "after kill -9"

        # 2. SIGTERM (with most lines still to send — paced at one every 5 s, they cannot all be
        # done first): a clean stop writes the report and keeps the checkpoint.
        proc = batchrun_run(source, out, sim.base_url, KEY, "--drain-timeout", "1", "--rpm", "12")
        printed.append(wait_for(proc, "progress:"))
        proc.send_signal(signal.SIGTERM)
        code, text = finish(proc)
        printed.append(text)
        assert code == 4, text
        assert (tmp_path / "out.report.json").exists() and (checkpoint / "journal").exists()
        assert leaking_files(tmp_path) == {}, "after SIGTERM"

        # 3. resume to the end.
        code, text = finish(batchrun_run(source, out, sim.base_url))
        printed.append(text)
        assert code == 1, text
        unauthorized = sim.stats.responses.get(401, 0)

    everything = "".join(printed)
    assert unauthorized == 0  # the key really was sent, on every request
    assert "retrying in" in everything and "resum" in everything  # debug logs of retries were on
    results = read_jsonl(out)
    assert len(results) == 400 and [r["custom_id"] for r in results][:5] == [f"req-{i}" for i in range(5)]
    codes = {r["error"]["code"] for r in results if r["error"]}  # lines without a response
    assert codes == {"invalid_request_line", "duplicate_custom_id"}
    refused = [r for r in results if r["response"] and r["response"]["status_code"] == 400]
    assert refused and all(r["error"] is None and r["batchrun"]["error"]["code"] == "empty_array" for r in refused)
    assert leaks(everything) == []
    assert leaking_files(tmp_path) == {}


def echo(seen: Seen, n: int) -> bytes:
    """A server that quotes the request's Authorization header back, in every way it can."""
    auth = seen.headers.get("authorization", "")
    text = seen.text
    if text == "question 0":  # a final 400 whose message quotes the header
        return http(400, orjson.dumps({"error": {"message": f"bad request from {auth}", "code": "bad"}}))
    if text == "question 1":  # 500s whose message quotes it, retried until the attempts run out
        return http(500, orjson.dumps({"error": {"message": f"crashed serving {auth}", "type": "server_error"}}))
    if text == "question 2":  # a 2xx that is not JSON, quoting it (a proxy's debug page)
        return http(200, f"<html>debug: Authorization: {auth}</html>".encode(), {"content-type": "text/html"})
    if text == "question 3":  # a redirect whose Location carries the key
        return http(302, b"", {"location": f"http://127.0.0.1:1/login?token={auth.removeprefix('Bearer ')}"})
    if text == "question 4":  # an error without JSON, quoting it
        return http(503, f"upstream said no to {auth}".encode(), {"content-type": "text/plain"})
    if text == "question 5":  # a 2xx of the wrong shape (kept as invalid_response), quoting it
        return http(200, orjson.dumps({"object": "debug", "request_headers": {"authorization": auth}}))
    answer = chat_answer(seen)
    if text == "question 6":  # an answer that quotes it (an echo model)
        answer["choices"][0]["message"]["content"] = f"You said: {auth}"
    return http(200, orjson.dumps(answer))


async def run_against(tmp_path: Path, base_url: str, n: int, key: str = KEY) -> tuple[Any, Path]:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(n)])
    config = RunConfig(source, base_url=base_url, api_key=ApiKey(key), concurrency=4, retry=FAST,
                       outage_threshold=0)
    with anyio.fail_after(30):
        stats = await run_batch(config)
    return stats, config.out


async def test_a_server_quoting_the_key_back_never_gets_it_written(tmp_path: Path) -> None:
    with RawServer(replying(echo)) as server:
        stats, out = await run_against(tmp_path, server.base_url, 8)
        assert {s.headers["authorization"] for s in server.seen} == {f"Bearer {KEY}"}  # it did have it
    assert stats.exit_code == 1
    records = read_jsonl(out)
    assert [r["error"]["code"] if r["error"] else None for r in records] == [
        None, None, "malformed_response", None, None, "invalid_response", None, None]
    failures = [failure(r) for r in records]
    assert [f["code"] if f else None for f in failures] == [
        "bad", "server_error", "malformed_response", "http_302", "http_503", "invalid_response", None, None]
    assert "***" in records[0]["batchrun"]["error"]["message"] and "***" in records[3]["batchrun"]["error"]["message"]
    assert records[0]["response"]["body"]["error"]["message"] == "bad request from Bearer ***"  # bodies too
    assert records[6]["response"]["body"]["choices"][0]["message"]["content"] == "You said: Bearer ***"
    assert [leaks(orjson.dumps(r)) for r in records] == [[]] * 8
    assert leaks(orjson.dumps(stats.report.to_dict())) == []
    assert leaking_files(tmp_path) == {}  # output, errors file, report


async def test_a_rejected_key_quoted_back_by_the_server_is_not_shown(tmp_path: Path) -> None:
    def reject(seen: Seen, n: int) -> bytes:
        auth = seen.headers.get("authorization", "")
        return http(401, orjson.dumps({"error": {"message": f"Incorrect API key provided: {auth}",
                                                  "code": "invalid_api_key"}}))

    with RawServer(replying(reject)) as server:
        stats, _ = await run_against(tmp_path, server.base_url, 50)
    assert stats.exit_code == 4 and "Incorrect API key provided: Bearer ***" in (stats.stop_reason or "")
    assert leaks(stats.stop_reason or "") == []
    assert leaking_files(tmp_path) == {}


async def test_a_crash_traceback_does_not_show_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception in the HTTP layer, with the key one frame away."""

    async def explode(self: AiohttpTransport, url: str, headers: Any, body: bytes, timeouts: Any) -> Any:
        raise RuntimeError(f"unexpected failure posting to {url}")

    monkeypatch.setattr(AiohttpTransport, "post", explode)
    with pytest.raises(BaseException) as info:
        await run_against(tmp_path, "http://127.0.0.1:9/v1", 3)
    text = "".join(traceback.format_exception(info.value))
    assert "unexpected failure" in text and leaks(text) == []
    assert leaks(repr(info.value)) == []
    assert leaking_files(tmp_path) == {}


async def test_a_traceback_with_locals_does_not_show_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentry, rich and ``pytest -l`` print the locals of every frame: batchrun's must not hold the key
    in a form that prints (the headers travel as a dict down to aiohttp)."""
    original = AiohttpTransport._route

    def explode(self: AiohttpTransport, url: str) -> Any:
        original(self, url)
        raise RuntimeError("unexpected")

    monkeypatch.setattr(AiohttpTransport, "_route", explode)
    with pytest.raises(BaseException) as info:
        await run_against(tmp_path, "http://127.0.0.1:9/v1", 1)
    shown = batchrun_frame_locals(info.value)
    assert any("headers=" in line for line in shown)  # the frame that holds the headers was looked at
    assert [line for line in shown if leaks(line)] == []


def test_config_and_errors_hide_the_key(tmp_path: Path) -> None:
    config = RunConfig(tmp_path / "in.jsonl", base_url="https://api.example.com/v1", api_key=ApiKey(KEY))
    assert leaks(repr(config)) == [] and leaks(str(config.api_key)) == [] and leaks(f"{config.api_key}") == []


@pytest.mark.parametrize(
    ("raw", "usable"),
    [(KEY + "\n", True), (KEY + "\r\n", True), (" " + KEY + "\t", True), (KEY[:10] + "\n" + KEY[10:], False),
     (KEY + "\x1b[0m", False)],
    ids=["newline", "crlf", "spaces", "embedded-newline", "escape-sequence"],
)
def test_a_key_with_a_control_character_is_cleaned_or_refused_never_a_crash(tmp_path: Path, raw: str,
                                                                           usable: bool) -> None:
    """A key read from a file often ends in a line break; one inside it cannot go into a header."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    with run_in_thread(SimulatorConfig(faults=Faults(require_api_key=KEY))) as sim:
        code, text = finish(batchrun_run(source, tmp_path / "out.jsonl", sim.base_url, raw))
        sent = sim.stats.requests
    assert "Traceback" not in text and leaks(text) == [] and leaking_files(tmp_path) == {}
    if usable:  # the surrounding whitespace was dropped: the endpoint accepted the key
        assert code == 0, text
    else:
        assert code == 2 and "API key" in text and sent == 0


# -- a server that quotes the key back in every form -------------------------------------------

SLASHED_KEY = "sk-test-CANARY-5f1c/2b9a8e7d/4c3b2a1f0e9d"  # a "/", so that a server may write it "\/"
PADDING = "x" * 185 + " "  # a body quoted in a message is cut at 200 characters: the cut would split the key


def spliced(value: Any, spelled: str) -> bytes:
    """``value`` as JSON with each ``@@`` in it replaced by ``spelled`` as it is: escapes that a
    JSON encoder would not choose."""
    return orjson.dumps(value).replace(b"@@", spelled.encode())


def quoting() -> tuple[Handler, list[bool]]:
    """A handler that quotes the Authorization header back in every way a server can; while its
    flag is up, it holds line 0 (the lines after it wait in the journal) and answers lines 8 on
    with 401s. The flag."""
    rejecting = [True]

    def answer(seen: Seen, n: int) -> bytes:
        auth = seen.headers.get("authorization", "")
        sent = auth.removeprefix("Bearer ")
        i = int(seen.text.split()[1])
        echoed = {"x-request-id": f"req-{i} {auth}"}
        if i == 0:  # an error message with the key's "/" escaped
            body = spliced({"error": {"message": "bad request from @@", "code": "bad"}}, auth.replace("/", "\\/"))
            return http(400, body, echoed)
        if i == 1:  # every character of the key a \u escape, in the message and the code
            return http(400, spliced({"error": {"message": "key @@", "code": "bad_@@"}}, json_escaped(sent)), echoed)
        if i == 2:  # no OpenAI error object: the message quotes the body itself
            return http(422, spliced({"detail": "unauthorized @@"}, sent.replace("/", "\\/")), echoed)
        if i == 3:  # a 2xx that is not JSON, the key across the cut
            return http(200, f"{PADDING}{auth}".encode(), {"content-type": "text/html", **echoed})
        if i == 4:  # an error that is not JSON, the key across the cut
            return http(503, f"{PADDING}{auth}".encode(), {"content-type": "text/plain", **echoed})
        if i >= 8 and rejecting[0]:
            return http(401, orjson.dumps({"error": {"message": f"Incorrect API key provided: {auth}",
                                                      "code": "invalid_api_key"}}), echoed)
        answer = chat_answer(seen)
        if i == 5:  # an answer with the key's first half escaped, the rest plain
            half = len(sent) // 2
            answer["choices"][0]["message"]["content"] = "You said: @@"
            return http(200, spliced(answer, json_escaped(sent[:half]) + sent[half:]), echoed)
        if i == 6:  # pieces of the key: without its prefix, its head, its tail, as an object key too
            answer["choices"][0]["message"]["content"] = f"{sent[3:]} | {sent[:RUN]} | {sent[-RUN:]}"
            answer["debug"] = {sent[-RUN - 4 :]: "seen"}
        return http(200, orjson.dumps(answer), echoed)

    reply = replying(answer)

    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if rejecting[0] and seen.text == "question 0":
            while not writer.transport.is_closing():  # until batchrun, stopped, lets go of it
                await asyncio.sleep(0.05)
            return False
        return await reply(seen, writer)

    return handler, rejecting


def test_a_server_quoting_the_key_in_every_form_never_gets_it_written(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(14)])
    out, checkpoint = tmp_path / "out.jsonl", tmp_path / "out.jsonl.checkpoint"
    handler, rejecting = quoting()
    printed: list[str] = []
    with RawServer(handler) as server:
        # 1. line 0 is held and lines 8 on are refused: the fifth 401 in a row stops the run, lines
        # 1-7 in its journal.
        code, text = finish(batchrun_run(source, out, server.base_url, SLASHED_KEY, "-c", "2", "--max-attempts", "1",
                                         "--drain-timeout", "0.2"))
        printed.append(text)
        assert code == 4 and "Incorrect API key provided: Bearer ***" in text, text
        assert (checkpoint / "journal").stat().st_size > 0 and (checkpoint / "meta.json").exists()
        assert leaking_files(tmp_path, SLASHED_KEY) == {}, "with the checkpoint"
        # 2. the rest, resumed: output, errors file and report.
        rejecting[0] = False
        code, text = finish(batchrun_run(source, out, server.base_url, SLASHED_KEY, "-c", "1", "--max-attempts", "1"))
        printed.append(text)
        assert {s.headers["authorization"] for s in server.seen} == {f"Bearer {SLASHED_KEY}"}  # it did have it
    assert code == 1, text
    records = read_jsonl(out)
    assert [r["response"]["request_id"] for r in records] == [f"req-{i} Bearer ***" for i in range(14)]
    assert [r["error"] is None for r in records[:8]] == [True, True, True, False, True, True, True, True]
    failures = [failure(r) for r in records[:8]]
    assert [f["code"] if f else None for f in failures] == [
        "bad", "bad_***", "http_422", "malformed_response", "http_503", None, None, None]
    messages = [f["message"] for f in failures[:5] if f]
    assert messages[0] == "bad request from Bearer ***" and messages[1] == "key ***"
    assert messages[2] == 'HTTP 422: {"detail":"unauthorized ***"}'
    assert messages[3].endswith("x Bearer ***'") and messages[4].endswith("x Bearer ***")  # masked, then cut
    assert records[1]["response"]["body"]["error"]["message"] == "key ***"  # the bodies kept are scrubbed too
    contents = [r["response"]["body"]["choices"][0]["message"]["content"] for r in records[5:8]]
    assert contents == ["You said: ***", "*** | *** | ***", "QUESTION 7"]  # other answers are untouched
    assert records[6]["response"]["body"]["debug"] == {"***": "seen"}
    assert leaks("".join(printed), SLASHED_KEY) == []
    assert leaking_files(tmp_path, SLASHED_KEY) == {}


def test_runs_of_twelve_characters_of_a_secret_are_masked_shorter_pieces_and_short_secrets_kept() -> None:
    scrub = Scrubber([KEY, "ollama"])
    assert scrub.text(f"a {KEY[:RUN]} b {KEY[5 : 5 + RUN + 3]} c {KEY[-RUN:]}") == "a *** b *** c ***"
    assert scrub.text(f"{KEY[: RUN - 1]} {KEY[-RUN + 1 :]}") == f"{KEY[: RUN - 1]} {KEY[-RUN + 1 :]}"
    assert scrub.text("ollama runs models locally") == "ollama runs models locally"  # a placeholder key
    assert scrub.text(f"{KEY}{KEY}!") == "***!"


def test_the_raw_bytes_check_misses_no_escaped_form_of_the_key() -> None:
    """Only bodies `suspect` flags are walked: it must flag every JSON spelling of a run of the key,
    and pass ordinary answers (escaped non-ASCII text included) without a walk."""
    scrub = Scrubber([SLASHED_KEY])
    rng = random.Random(7)
    for start in range(len(SLASHED_KEY) - RUN + 1):
        for end in (start + RUN, rng.randrange(start + RUN, len(SLASHED_KEY) + 1)):
            piece = SLASHED_KEY[start:end]
            mixed = "".join(json_escaped(c) if rng.random() < 0.3 else c for c in piece)
            for spelled in (piece, piece.replace("/", "\\/"), json_escaped(piece), mixed):
                raw = spliced({"answer": "@@ ok"}, "caf\\u00e9 " + spelled)
                assert scrub.suspect(raw), raw
                assert scrub.json(orjson.loads(raw)) == {"answer": "café *** ok"}, raw
        # An escaped quote: the strings cannot be told from the numbers (made of the key's digits, so
        # that each is a stretch of its characters), however many there are.
        for numbers in (1, 100):
            raw = spliced({"logprobs": [0.123457890123] * numbers, "answer": "@@"}, f'\\"{piece}\\"')
            assert scrub.suspect(raw), raw
            assert scrub.json(orjson.loads(raw))["answer"] == '"***"', raw
    answer = chat_answer(Seen("POST", "/v1/chat/completions", {}, orjson.dumps(chat_line(1)["body"])))
    for clean in [b'{"answer": "caf\\u00e9 \\u003cb\\u003e ok\\n"}', orjson.dumps(answer)]:
        assert not scrub.suspect(clean)


# -- credentials in the base URL ------------------------------------------------------------------

PASSWORD = "hunter2@CANARY-9f8e7d6c"
USERINFO_URL = "http://alice:hunter2%40CANARY-9f8e7d6c@127.0.0.1:{port}/v1"


def test_a_password_in_the_base_url_is_sent_as_basic_auth_and_never_written(tmp_path: Path) -> None:
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    rejecting = [True]

    def answer(seen: Seen, n: int) -> bytes:
        auth = seen.headers.get("authorization", "")
        echoed = {"x-request-id": f"{auth} {PASSWORD}"}
        if auth != f"Basic {token}" or (rejecting[0] and seen.text != "question 0"):
            return http(401, error_body(f"bad credentials {auth} for alice:{PASSWORD}"), echoed)
        reply = chat_answer(seen)
        reply["choices"][0]["message"]["content"] = f"you are {auth}, alice:{PASSWORD}"
        return http(200, orjson.dumps(reply), echoed)

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(8)])
    out, meta = tmp_path / "out.jsonl", tmp_path / "out.jsonl.checkpoint" / "meta.json"
    printed = []
    with RawServer(replying(answer)) as server:
        url = USERINFO_URL.format(port=server.port)
        proc = batchrun_run(source, out, url, KEY, "-c", "2", "--max-attempts", "1", "--api-key-env", "UNSET_VAR")
        code, text = finish(proc)
        printed.append(text)
        assert code == 4 and "bad credentials Basic ***" in text, text  # stopped, its checkpoint kept
        options = orjson.loads(meta.read_bytes())["options"]
        assert options == {"base_url": f"http://127.0.0.1:{server.port}/v1"}
        secrets = {f"{name} {form}": tmp for form in (PASSWORD, token)
                   for name, tmp in leaking_files(tmp_path, form).items()}
        assert secrets == {}, "with the checkpoint"
        rejecting[0] = False
        code, text = finish(batchrun_run(source, out, url, KEY, "--api-key-env", "UNSET_VAR"))
        printed.append(text)
    assert code == 0, text
    assert read_jsonl(out)[3]["response"]["body"]["choices"][0]["message"]["content"] == "you are Basic ***, alice:***"
    assert "Traceback" not in "".join(printed)
    for form in (PASSWORD, token, "hunter2%40CANARY"):
        assert leaks("".join(printed), form) == [] and leaking_files(tmp_path, form) == {}, form


def test_a_password_in_the_base_url_with_an_api_key_set_too_is_a_usage_error(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    code, text = finish(batchrun_run(source, tmp_path / "out.jsonl", USERINFO_URL.format(port=9)))
    assert code == 2 and "user name and password" in text and "Traceback" not in text, text
    assert leaks(text, PASSWORD) == [] and "hunter2" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/v1", "http://127.0.0.1:0/v1", "http://127.0.0.1:http/v1",
                                 "http://alice:hunter2%40CANARY-9f8e7d6c@127.0.0.1:70000/v1", "http:///v1"])
@pytest.mark.parametrize("via", ["option", "environment"])
def test_a_base_url_without_a_usable_host_and_port_is_a_usage_error_before_anything_is_created(
        tmp_path: Path, url: str, via: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHRUN_"))}
    args = [sys.executable, "-m", "batchrun", "run", str(source), "-o", str(tmp_path / "out.jsonl")]
    if via == "option":
        args += ["--base-url", url]
    else:
        env["OPENAI_BASE_URL"] = url
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "Invalid value for '--base-url'" in text and "Traceback" not in text, text
    assert "hunter2" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    with pytest.raises(ConfigError, match="--base-url"):
        RunConfig(source, base_url=url, api_key=ApiKey(KEY))
