"""A wrong --base-url (or a server not started) stops the run with the fix named, and the fixed
command continues it: a checkpoint in which no line was sent does not pin the endpoint. One in
which a line was sent does (its answers came from there)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.simulator import Simulator, SimulatorConfig, run_in_thread

from ..helpers import chat_line, read_jsonl, write_jsonl


@pytest.fixture(scope="module")
def openai_like() -> Iterator[Simulator]:
    """The simulator as --mock runs it: a path outside /v1 is a 404, as at OpenAI."""
    with run_in_thread(SimulatorConfig(any_model=False, any_root=False)) as sim:
        yield sim


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--max-attempts", "2"], env={"OPENAI_API_KEY": "sk-test"},
                                catch_exceptions=False)
    return result.exit_code, result.stderr


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrong_urls(sim: Simulator) -> dict[str, tuple[str, str]]:
    """A wrong base URL, and what its stop says to do."""
    return {"no-v1": (sim.base_url.removesuffix("/v1"), "correct --base-url"),
            "refused": (f"http://127.0.0.1:{closed_port()}/v1", "start the server, or correct --base-url")}


@pytest.mark.parametrize("mistake", ["no-v1", "refused"])
def test_the_stop_names_the_fix_and_the_fixed_command_continues(tmp_path: Path, openai_like: Simulator,
                                                               mistake: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(12)])
    wrong, fix = wrong_urls(openai_like)[mistake]
    code, err = run(str(source), "--base-url", wrong)
    assert code == 4, err
    flat = " ".join(err.split())
    assert f"{fix} (a checkpoint with no line sent yet takes the new one), then run the command again" in flat
    assert "run the same command again" not in flat  # that would fail the same way
    meta = orjson.loads((tmp_path / "in.results.jsonl.checkpoint" / "meta.json").read_bytes())
    assert meta["options"]["base_url"] == wrong

    code, err = run(str(source), "--base-url", openai_like.base_url)
    assert code == 0, err
    out = read_jsonl(tmp_path / "in.results.jsonl")
    assert [o["custom_id"] for o in out] == [f"req-{i}" for i in range(12)]
    assert all(o["response"]["status_code"] == 200 for o in out)
    assert orjson.loads((tmp_path / "in.results.report.json").read_bytes())["options"]["base_url"] == openai_like.base_url


def test_lines_that_could_not_be_sent_do_not_pin_the_endpoint(tmp_path: Path, openai_like: Simulator) -> None:
    """A bad input line is written at once, as the line's failure; it was not sent anywhere."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"{not json\n" + b"".join(orjson.dumps(chat_line(i)) + b"\n" for i in range(3)))
    wrong, _ = wrong_urls(openai_like)["no-v1"]
    assert run(str(source), "--base-url", wrong)[0] == 4
    assert (tmp_path / "in.results.jsonl.checkpoint" / "output.jsonl").read_bytes().count(b"\n") == 1
    code, err = run(str(source), "--base-url", openai_like.base_url)
    assert code == 1, err  # the bad line's failure
    assert [o["response"] and o["response"]["status_code"] for o in read_jsonl(tmp_path / "in.results.jsonl")] == [
        None, 200, 200, 200]


def test_a_checkpoint_holding_answers_keeps_its_endpoint(tmp_path: Path, openai_like: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(12)])
    code, err = run(str(source), "--base-url", openai_like.base_url, "--limit", "3")
    assert code == 0, err
    other = f"http://127.0.0.1:{closed_port()}/v1"
    code, err = run(str(source), "--base-url", other)
    assert code == 2 and "options changed (base_url" in err and "--restart" in err
    meta = orjson.loads((tmp_path / "in.results.jsonl.checkpoint" / "meta.json").read_bytes())
    assert meta["options"]["base_url"] == openai_like.base_url
