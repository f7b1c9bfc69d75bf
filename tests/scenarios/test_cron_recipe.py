"""docs/cron.md's recipe, as written, in the environment cron gives it: ``env -i``, no PATH to a
virtual environment, no HOME. It runs the day's batch against the simulator, mails a partial
failure once rather than every hour, says what is wrong when batchrun is not where it looks, and
keeps quiet while all is well."""

from __future__ import annotations

import fcntl
import os
import re
import sys
from pathlib import Path

import anyio
import pytest

from batchrun.simulator import Simulator, serve

from ..helpers import chat_line, read_jsonl, write_jsonl

ROOT = Path(__file__).parents[2]
DAY = "2026-11-27"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell recipe")


def recipe() -> str:
    """The first ``sh`` block of docs/cron.md, "The recipe"."""
    section = (ROOT / "docs" / "cron.md").read_text(encoding="utf-8").split("\n## The recipe\n", 1)[1]
    found = re.search(r"^```sh\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert found is not None
    return found[1]


def install(folder: Path, sim: Simulator, batchrun: Path | None = None) -> Path:
    """The recipe with its three settings pointed at ``folder``, and this checkout's batchrun (a
    wrapper, as pip's console script is one) unless ``batchrun`` says where else to look."""
    if batchrun is None:
        batchrun = folder / "bin" / "batchrun"
        batchrun.parent.mkdir()
        batchrun.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m batchrun "$@"\n')
        batchrun.chmod(0o755)
    secrets = folder / "batchrun.env"
    secrets.write_text(f"export OPENAI_BASE_URL={sim.base_url}\n")  # loopback: no key needed
    settings = {"BATCHRUN": batchrun, "FOLDER": folder, "SECRETS": secrets}
    text, replaced = re.subn(r"^(BATCHRUN|FOLDER|SECRETS)=\S+", lambda m: f"{m[1]}={settings[m[1]]}", recipe(),
                             flags=re.MULTILINE)
    assert replaced == 3
    script = folder / "daily-batch"
    script.write_text(text)
    return script


async def start(script: Path, *day: str) -> tuple[int, str]:
    """One start as cron makes it: an empty environment, whatever the test's own."""
    done = await anyio.run_process(["env", "-i", "/bin/sh", str(script), *day], check=False, stderr=None)
    return done.returncode, done.stdout.decode()


async def test_a_partial_failure_is_mailed_once_and_a_good_day_not_at_all(tmp_path: Path) -> None:
    write_jsonl(tmp_path / f"requests-{DAY}.jsonl",
                [chat_line(i, messages=[]) if i == 2 else chat_line(i) for i in range(6)])  # line 3 gets a 400
    async with serve() as sim:
        script = install(tmp_path, sim)
        code, mailed = await start(script, DAY)
        assert code == 1, mailed
        assert f"results-{DAY}.jsonl: some lines failed: results-{DAY}.errors.jsonl" in mailed
        assert len(read_jsonl(tmp_path / f"results-{DAY}.jsonl")) == 6
        assert len(read_jsonl(tmp_path / f"results-{DAY}.errors.jsonl")) == 1
        sent = sim.stats.requests

        for _ in range(2):  # the next hours: the output is up to date, exit 1 again, and nothing to say
            assert await start(script, DAY) == (1, "")
        assert sim.stats.requests == sent

        write_jsonl(tmp_path / "requests-2026-11-28.jsonl", [chat_line(i) for i in range(4)])
        assert await start(script, "2026-11-28") == (0, "")
        assert len(read_jsonl(tmp_path / "results-2026-11-28.jsonl")) == 4
        assert await start(script, "2026-11-29") == (0, "")  # no input yet that day: nothing to do


async def test_batchrun_missing_from_where_the_recipe_looks_is_named_not_taken_for_a_refusal(tmp_path: Path) -> None:
    write_jsonl(tmp_path / f"requests-{DAY}.jsonl", [chat_line(0)])
    async with serve() as sim:
        code, mailed = await start(install(tmp_path, sim, batchrun=tmp_path / "venv" / "bin" / "batchrun"), DAY)
        assert sim.stats.requests == 0
    assert code == 2
    assert f"no batchrun at {tmp_path}/venv/bin/batchrun" in mailed and "command -v batchrun" in mailed


async def test_a_start_while_the_last_one_runs_leaves_it_alone_quietly(tmp_path: Path) -> None:
    write_jsonl(tmp_path / f"requests-{DAY}.jsonl", [chat_line(0)])
    async with serve() as sim:
        script = install(tmp_path, sim)
        running = os.open(tmp_path, os.O_RDONLY)  # the lock the earlier start holds while its run goes on
        try:
            fcntl.flock(running, fcntl.LOCK_EX)
            assert await start(script, DAY) == (0, "")
        finally:
            os.close(running)
        assert sim.stats.requests == 0
        assert await start(script, DAY) == (0, "")
        assert sim.stats.requests == 1
