"""Every numeric option of every command, and every ``BATCHRUN_*`` variable behind one, refuses
nan, inf and values out of its range as a usage error naming it (exit 2, nothing started); the
library's `RunConfig` refuses the same values."""

from __future__ import annotations

import math
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from batchrun import RetryPolicy, RunConfig
from batchrun.cli import main
from batchrun.cli.bounded import Bounded
from batchrun.errors import ConfigError
from batchrun.settings import MAX_CONCURRENCY, Bounds

from ...helpers import chat_line, write_jsonl

BASE = "http://127.0.0.1:9/v1"


def numeric_options() -> list[tuple[str, click.Option]]:
    assert isinstance(main, click.Group)
    return [(name, param) for name, command in sorted(main.commands.items()) for param in command.params
            if isinstance(param, click.Option) and isinstance(param.type, Bounded)]


def refused(bounds: Bounds) -> list[str]:
    """nan, the infinities, and the nearest values outside the range."""
    step = 1 if bounds.whole else 0.5
    number = int if bounds.whole else float
    values = ["nan", "inf", "-inf", "NaN", str(number(bounds.high + step)),
              str(number(bounds.low)) if bounds.low_open else str(number(bounds.low - step))]
    return values + (["2.5"] if bounds.whole else [])


def cases(*, from_env: bool) -> list[object]:
    return [pytest.param(command, option, value, id=f"{command} {option.opts[0]} {value}")
            for command, option in numeric_options() if not from_env or option.envvar
            for value in refused(option.type.bounds)]  # type: ignore[attr-defined]


def argv_for(command: str) -> list[str]:
    """What the command needs besides the option under test; each fails at once if reached (no
    such file, no such choice), so an option let through fails the test instead of serving."""
    return {"run": ["in.jsonl"], "label": ["data.csv", "-t", "t.txt"], "estimate": ["in.jsonl"],
            "mock-server": ["--token-charge", "none"]}[command]


def test_every_numeric_option_is_bounded() -> None:
    """No option of a plain int or float type, which would take nan, inf or any size."""
    assert isinstance(main, click.Group)
    plain = [(name, param.name) for name, command in main.commands.items() for param in command.params
             if isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType))]
    assert plain == [("mock-server", "seed")]  # any integer seeds the draws
    names = {(command, option.name) for command, option in numeric_options()}
    assert {("run", "timeout"), ("label", "concurrency"), ("estimate", "default_max_tokens"),
            ("mock-server", "rate_429")} <= names


@pytest.mark.parametrize(("command", "option", "value"), cases(from_env=False))
def test_a_value_out_of_range_is_a_usage_error_naming_the_option(command: str, option: click.Option,
                                                                 value: str) -> None:
    result = CliRunner().invoke(main, [command, f"{option.opts[0]}={value}", *argv_for(command)])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option.opts[0]}'" in result.stderr and "$" not in result.stderr


@pytest.mark.parametrize(("command", "option", "value"), cases(from_env=True))
def test_a_variable_out_of_range_is_a_usage_error_naming_it(command: str, option: click.Option, value: str) -> None:
    assert isinstance(option.envvar, str)
    result = CliRunner().invoke(main, [command, *argv_for(command)], env={option.envvar: value})
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option.opts[0]}'" in result.stderr and f"${option.envvar}" in result.stderr


def test_concurrency_has_a_ceiling(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    result = CliRunner().invoke(main, ["run", str(source), "--mock", "-c", "1000000"])
    assert result.exit_code == 2 and f"from 1 to {MAX_CONCURRENCY:,}" in result.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["in.jsonl"]  # nothing started
    assert CliRunner().invoke(main, ["run", str(source), "--mock", "-q", "-c", str(MAX_CONCURRENCY)]).exit_code == 0


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    result = CliRunner().invoke(main, ["run", str(source), "--mock", "-q", "--timeout", "86400",
                                       "--rate-limit-patience", "0", "--max-attempts", "100", "--mock-latency-ms", "0"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("field", ["timeout", "connect_timeout", "drain_timeout", "max_outage", "rpm", "tpm",
                                   "max_cost", "concurrency", "window", "window_bytes", "outage_threshold"])
def test_run_config_refuses_what_the_options_refuse(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field.replace("_", "[-_]")):
        RunConfig(Path("x.jsonl"), base_url=BASE, **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["max_attempts", "rate_limit_patience", "backoff_base", "backoff_max",
                                   "retry_after_max"])
def test_retry_policy_refuses_nan(field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("_", "[-_]")):
        RetryPolicy(**{field: math.nan})  # type: ignore[arg-type]


def test_run_config_refuses_too_many_connections() -> None:
    with pytest.raises(ConfigError, match="--concurrency must be a whole number from 1 to 10,000"):
        RunConfig(Path("x.jsonl"), base_url=BASE, concurrency=MAX_CONCURRENCY + 1)
    assert RunConfig(Path("x.jsonl"), base_url=BASE, concurrency=MAX_CONCURRENCY).window == 64 * MAX_CONCURRENCY
