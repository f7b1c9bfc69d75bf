"""``--help`` lists a command's options in sections, its own first, then the declared sections
in their order (`settings.GROUPS`), each option in its own, the help texts in one column."""

from __future__ import annotations

import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.cli.declared import OWN, DeclaredOption

HEADING = re.compile(r"^(\S.*):$")


def sections(command: str) -> dict[str, list[str]]:
    """Each section's heading and the options it lists (their first flag), in order."""
    result = CliRunner().invoke(main, [command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    found: dict[str, list[str]] = {}
    current = None
    for line in result.output.split("\n\n  Examples:")[0].splitlines():
        if heading := HEADING.match(line):
            current = found.setdefault(heading[1], [])
        elif current is not None and (flag := re.match(r"^  (-\w, )?(--[\w-]+)", line)):
            current.append(flag[2])
    return found


def test_run_lists_its_own_options_then_the_sections_in_order() -> None:
    found = sections("run")
    assert list(found) == [OWN, "Endpoint", "Throughput and pacing", "Budget", "Output", "Batch API", "Ray",
                           "Simulator"]
    assert found[OWN] == ["--output", "--model", "--html", "--help"]
    assert found["Endpoint"] == ["--base-url", "--api-key-env", "--header"]
    assert found["Batch API"][0] == "--via" and found["Ray"] == ["--ray", "--shards"]
    assert found["Simulator"] == ["--mock", "--mock-latency-ms"]


@pytest.mark.parametrize("command", ["run", "label"])
def test_every_option_is_listed_once_in_its_declared_section(command: str) -> None:
    assert isinstance(main, click.Group)
    found = sections(command)
    listed = [flag for flags in found.values() for flag in flags]
    options = [param for param in main.commands[command].params if isinstance(param, click.Option) and not param.hidden]
    assert sorted(listed) == sorted([next(o for o in option.opts if o.startswith("--")) for option in options]
                                    + ["--help"])
    for option in options:
        flag = next(o for o in option.opts if o.startswith("--"))
        assert flag in found[option.group if isinstance(option, DeclaredOption) else OWN], flag


def test_the_help_texts_start_in_one_column_in_every_section() -> None:
    result = CliRunner().invoke(main, ["run", "--help"], env={"COLUMNS": "100"})
    starts = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in result.output.splitlines()
              if re.match(r"^  -", line) and "  " in line[2:].strip()}
    assert len(starts) == 1, starts


def test_help_loads_neither_the_engine_nor_its_http_stack() -> None:
    """``batchrun --help`` (and every command's options) come from the command line's modules
    alone: the engine, the client and aiohttp load when a command runs them."""
    code = ("import sys, runpy\n"
            "sys.argv = ['batchrun', 'run', '--help']\n"
            "try:\n    runpy.run_module('batchrun', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('aiohttp', 'batchrun.client', 'batchrun.engine', 'httpx') if m in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--max-cost" in shown.stdout and shown.stdout.splitlines()[-1] == "[]"
