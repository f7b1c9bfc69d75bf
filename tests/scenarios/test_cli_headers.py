"""Extra headers: ``--header 'Name: value'`` and the openai SDK's ``OPENAI_ORG_ID`` /
``OPENAI_PROJECT_ID``, sent with every request; their values kept out of every file and message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from batchrun import RunConfig, run_batch
from batchrun.cli import main
from batchrun.errors import ConfigError
from batchrun.transport import AiohttpTransport

from ..helpers import chat_line, files_under, write_jsonl
from ..leaks import batchrun_frame_locals, leaking_files, leaks
from ..rawserver import RawServer, Seen, http, ok, replying

SECRET = "az-CANARY-header-5e1d7c9b2a41"


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stderr


def run_cli(tmp_path: Path, server: RawServer, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    return invoke("run", str(source), "--base-url", server.base_url, "--max-attempts", "1", "-v", *args, env=env)


def test_headers_and_the_sdks_organization_and_project_reach_the_server(tmp_path: Path) -> None:
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        code, err = run_cli(tmp_path, server, "--header", f"api-key: {SECRET}", "--header", "X-Route:east ",
                            env={"OPENAI_ORG_ID": "org-42", "OPENAI_PROJECT_ID": "proj_7"})
        assert code == 0, err
        assert len(server.seen) == 3
        for seen in server.seen:
            assert seen.headers["api-key"] == SECRET and seen.headers["x-route"] == "east"
            assert seen.headers["openai-organization"] == "org-42" and seen.headers["openai-project"] == "proj_7"
            assert "authorization" not in seen.headers  # no key was set
            assert seen.headers["user-agent"] == "batchrun"  # not the HTTP library's
    assert leaks(err, SECRET) == [] and leaking_files(tmp_path, SECRET) == {}


def test_a_header_wins_over_the_key_and_the_environment(tmp_path: Path) -> None:
    """As the openai SDK's ``default_headers`` do: the one given for this run is the one sent."""
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        code, err = run_cli(tmp_path, server, "--header", f"Authorization: Bearer {SECRET}",
                            "--header", "OpenAI-Organization: org-given",
                            env={"OPENAI_API_KEY": "sk-ambient-key-0123456789", "OPENAI_ORG_ID": "org-ambient"})
        assert code == 0, err
        assert {(s.headers["authorization"], s.headers["openai-organization"]) for s in server.seen} == {
            (f"Bearer {SECRET}", "org-given")}


def test_a_server_quoting_a_header_back_never_gets_its_value_written(tmp_path: Path) -> None:
    """Refused (401, the run stops with its checkpoint kept) with the header quoted in the message:
    the value reaches no output, errors file, report, checkpoint (meta.json) nor log line."""
    def refuse(seen: Seen, n: int) -> bytes:
        message = f"key {seen.headers['api-key']} is not valid here"
        return http(401, orjson.dumps({"error": {"message": message, "code": "invalid_api_key"}}))

    with RawServer(replying(refuse)) as server:
        code, err = run_cli(tmp_path, server, "--header", f"api-key: {SECRET}", "-o", str(tmp_path / "out.jsonl"))
        assert server.seen and code == 4, err
    assert (tmp_path / "out.jsonl.checkpoint" / "meta.json").exists()
    assert "***" in err and leaks(err, SECRET) == []
    assert len(files_under(tmp_path)) > 2 and leaking_files(tmp_path, SECRET) == {}


def test_a_header_holds_the_credentials_so_no_key_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no API key"):
        RunConfig(tmp_path / "in.jsonl", base_url="https://gateway.example/v1")
    config = RunConfig(tmp_path / "in.jsonl", base_url="https://gateway.example/v1", headers=(f"api-key: {SECRET}",))
    assert leaks(repr(config), SECRET) == [] and config.request_options() == {"base_url": "https://gateway.example/v1"}


@pytest.mark.parametrize(("header", "message"), [
    (f"api-key {SECRET}", "'Name: value'"),
    (f"api key: {SECRET}", "a header name cannot hold ' '"),
    (f": {SECRET}", "'Name: value'"),
    (f"api-key: {SECRET}\r\nX-Evil: 1", "line break"),
    (f"api-key: {SECRET}\n", None),  # surrounding whitespace is dropped, as a key's is
    ("api-key:   ", "empty value"),
    ("Content-Length: 5", "sets this header itself"),
    ("Host: elsewhere.example", "sets this header itself"),
])
def test_a_malformed_header_exits_2_before_anything_is_sent(tmp_path: Path, header: str, message: str | None) -> None:
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        code, err = run_cli(tmp_path, server, "--header", header)
        if message is None:
            assert code == 0 and {s.headers["api-key"] for s in server.seen} == {SECRET}
            return
        assert code == 2 and "--header" in err and message in err, err
        assert server.seen == []
    assert leaks(err, SECRET) == []


def test_a_header_given_twice_exits_2(tmp_path: Path) -> None:
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        code, err = run_cli(tmp_path, server, "--header", "X-Route: a", "--header", "x-route: b")
        assert code == 2 and "given twice" in err and server.seen == []


async def test_a_traceback_with_locals_does_not_show_a_header_value(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    original = AiohttpTransport._route

    def explode(self: AiohttpTransport, url: str) -> Any:
        original(self, url)
        raise RuntimeError("unexpected")

    monkeypatch.setattr(AiohttpTransport, "_route", explode)
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    config = RunConfig(source, base_url="http://127.0.0.1:9/v1", headers=(f"api-key: {SECRET}",), outage_threshold=0)
    with pytest.raises(BaseException) as info:
        await asyncio.wait_for(run_batch(config), 30)
    shown = batchrun_frame_locals(info.value)
    assert any("headers=" in line for line in shown)  # the frame that holds the headers was looked at
    assert [line for line in shown if leaks(line, SECRET)] == []


def test_label_sends_the_headers_too(tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text("text\ngood\n", encoding="utf-8")
    template = tmp_path / "t.txt"
    template.write_text("Review: {text}", encoding="utf-8")
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        code, err = invoke("label", str(data), "-t", str(template), "-q", "--base-url", server.base_url,
                           "--header", f"api-key: {SECRET}", env={"OPENAI_PROJECT_ID": "proj_7"})
        assert code == 0, err
        assert [(s.headers["api-key"], s.headers["openai-project"]) for s in server.seen] == [(SECRET, "proj_7")]
    assert leaking_files(tmp_path, SECRET) == {}


@pytest.mark.parametrize("form", [["--header", f"api-key: {SECRET}"], [f"--header=api-key: {SECRET}"]])
def test_the_command_printed_after_the_budget_stops_a_run_hides_header_values(tmp_path: Path, form: list[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(200)])
    code, err = invoke("run", str(source), "--mock", "--mock-latency-ms", "1", "--max-cost", "0.0001", *form)
    assert code == 3, err
    assert "higher cap" in err and "api-key: ***" in err.replace("'", "") and leaks(err, SECRET) == []
