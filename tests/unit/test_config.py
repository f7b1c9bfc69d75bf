"""The configuration as values: `RunConfig`, the key and the headers that hide themselves, the
base URL's and a header's parsing, `Bounds`, and the settings' declarations everything else is
made from."""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from pathlib import Path

import click
import pytest

from batchrun import settings
from batchrun.batchapi import options as batch_settings
from batchrun.cli import main
from batchrun.cli.bounded import Bounded
from batchrun.config import ApiKey, RetryPolicy, RunConfig, Span, split_base_url, split_header
from batchrun.disk.identity import InputScan, identity
from batchrun.errors import ConfigError
from batchrun.settings import Bounds, Setting

BASE = "http://127.0.0.1:9/v1"


# RunConfig


def test_a_config_names_every_file_of_its_run_from_its_output() -> None:
    config = RunConfig(Path("data/in.jsonl"), base_url=BASE)
    assert config.out == Path("data/in.results.jsonl")
    assert config.files() == {
        "input file": Path("data/in.jsonl"), "output": Path("data/in.results.jsonl"),
        "errors file": Path("data/in.results.errors.jsonl"), "report": Path("data/in.results.report.json"),
        "checkpoint": Path("data/in.results.jsonl.checkpoint"), "batches": Path("data/in.results.jsonl.batches")}
    bare = RunConfig(Path("in.jsonl"), Path("out"), base_url=BASE)
    assert (bare.errors_path, bare.report_path) == (Path("out-errors.jsonl"), Path("out-report.json"))


def test_building_a_config_touches_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A symlinked output, an output that is a directory, a missing folder: none is looked at
    here (`disk.runfiles.checked` does, where the files are opened)."""
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")

    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError("the filesystem was asked")

    for name in ("stat", "lstat", "readlink", "scandir", "listdir"):
        monkeypatch.setattr(os, name, no_io)
    for name in ("stat", "lstat", "is_dir", "is_symlink", "exists", "resolve", "readlink"):
        monkeypatch.setattr(pathlib.Path, name, no_io)
    for output in ("dir.jsonl", "link.jsonl", "missing/out.jsonl"):
        config = RunConfig(tmp_path / "in.jsonl", tmp_path / output, base_url=BASE)
        assert config.out == tmp_path / output  # as given: a link is not resolved


def test_two_files_of_a_run_by_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"the output x.jsonl is the input file x.jsonl"):
        RunConfig(Path("x.jsonl"), Path("./x.jsonl"), base_url=BASE)
    with pytest.raises(ConfigError, match=r"the report x.report.json is the input file"):
        RunConfig(Path("x.report.json"), Path("x.jsonl"), base_url=BASE)


def test_restart_and_retry_failed_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="exclude each other"):
        RunConfig(Path("x.jsonl"), base_url=BASE, restart=True, retry_failed=True)


def test_credentials_in_the_base_url_become_basic_auth_and_leave_the_url() -> None:
    config = RunConfig(Path("x.jsonl"), base_url="https://ann:s%40cret@gw.example/v1?x=1")
    assert config.base_url == "https://gw.example/v1?x=1"
    assert config.api_key == ApiKey.basic("ann", "s@cret") and config.api_key.secrets()[1] == "s@cret"
    with pytest.raises(ConfigError, match="an API key is set too") as refused:
        RunConfig(Path("x.jsonl"), base_url="https://ann:s3cret@gw.example/v1", api_key=ApiKey("sk-1"))
    assert "s3cret" not in str(refused.value)


def test_a_key_is_needed_but_for_loopback_or_a_header() -> None:
    with pytest.raises(ConfigError, match=r"no API key for https://api.example.com/v1"):
        RunConfig(Path("x.jsonl"), base_url="https://api.example.com/v1")
    for base_url in ("http://localhost:8000/v1", "http://[::1]:8000/v1", "http://127.0.0.2/v1"):
        assert RunConfig(Path("x.jsonl"), base_url=base_url).api_key is None
    assert RunConfig(Path("x.jsonl"), base_url="https://api.example.com/v1", headers=("api-key: abc",))


def test_headers_are_checked_one_per_name_and_hidden_in_reprs() -> None:
    config = RunConfig(Path("x.jsonl"), base_url=BASE, headers=("X-Token: t0ps3cret",), organization="org-1")
    assert config.headers == ("x-token: t0ps3cret",) and "t0ps3cret" not in repr(config)
    fields = config.header_fields()
    assert fields == {"openai-organization": "org-1", "x-token": "t0ps3cret"}
    assert "t0ps3cret" not in repr(fields)
    assert RunConfig(Path("x.jsonl"), base_url=BASE, headers=("openai-organization: b",),
                     organization="a").header_fields() == {"openai-organization": "b"}  # the header wins
    with pytest.raises(ConfigError, match="given twice"):
        RunConfig(Path("x.jsonl"), base_url=BASE, headers=("a: 1", "A: 2"))
    with pytest.raises(ConfigError, match="OPENAI_PROJECT_ID must be ASCII"):
        RunConfig(Path("x.jsonl"), base_url=BASE, project="my project")


def test_the_request_options_are_what_a_checkpoint_compares() -> None:
    assert RunConfig(Path("x.jsonl"), base_url=BASE + "/").request_options() == {"base_url": BASE}
    assert RunConfig(Path("x.jsonl"), base_url=BASE, mock=True, model="m").request_options() == {
        "base_url": "(the built-in simulator)", "model": "m"}


def test_an_online_run_s_identity_is_what_it_was_and_the_batch_api_adds_its_route() -> None:
    """A checkpoint an earlier version wrote for an online run is of the same run: no ``via``."""
    scan = InputScan(10, "d", 1)
    config = RunConfig(Path("x.jsonl"), base_url=BASE, model="m")
    assert identity(scan, config) == {"input": {"size": 10, "digest": "d"}, "options": {"base_url": BASE, "model": "m"}}
    assert identity(scan, config, "batch")["options"] == {"base_url": BASE, "model": "m", "via": "batch"}
    spanned = dataclasses.replace(config, span=Span(3, 9, 1, 1))
    assert identity(scan, spanned)["input"] == {"size": 10, "digest": "d", "span": {"start": 3, "end": 9}}


def test_a_span_and_a_run_id_are_carried_as_given() -> None:
    span = Span(100, 200, 10, 12, frozenset({11}))
    config = RunConfig(Path("x.jsonl"), Path("part.jsonl"), base_url=BASE, span=span, run_id="abc")
    assert (config.span, config.run_id, config.out) == (span, "abc", Path("part.jsonl"))
    assert not {"shard", "via"} & {field.name for field in dataclasses.fields(RunConfig)}


def test_the_window_defaults_from_the_concurrency_and_holds_it() -> None:
    assert RunConfig(Path("x.jsonl"), base_url=BASE, concurrency=8).window == settings.MIN_WINDOW
    assert RunConfig(Path("x.jsonl"), base_url=BASE, concurrency=100).window == 100 * settings.WINDOW_PER_SLOT
    with pytest.raises(ConfigError, match=r"--window \(8\) must be at least --concurrency \(64\)"):
        RunConfig(Path("x.jsonl"), base_url=BASE, window=8)


# ApiKey


def test_a_key_never_shows_itself() -> None:
    key = ApiKey("  sk-abcdef123456\r\n")
    assert key.reveal() == "sk-abcdef123456"  # the whitespace of a key file saved with CRLF is dropped
    assert repr(key) == str(key) == f"{key}" == "ApiKey('***')"
    header = key.header()
    assert header == "Bearer sk-abcdef123456" and repr(header) == "'Bearer ***'"
    assert "sk-abcdef123456" not in repr(RunConfig(Path("x.jsonl"), base_url=BASE, api_key=key))
    assert key == ApiKey("sk-abcdef123456") and hash(key) == hash(ApiKey("sk-abcdef123456"))
    assert key != ApiKey("sk-other")


@pytest.mark.parametrize(("value", "message"), [("", "empty"), ("  ", "empty"), ("sk-a\nb", "control character"),
                                                ("sk-\x7f", "control character")])
def test_a_key_that_cannot_be_a_header_is_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        ApiKey(value)
    assert value.strip() == "" or value not in str(refused.value)


def test_basic_credentials_name_every_form_of_the_secret() -> None:
    key = ApiKey.basic("ann", "pw:1")
    assert key.header() == "Basic YW5uOnB3OjE=" and key.secrets() == ("YW5uOnB3OjE=", "pw:1")
    assert repr(key.header()) == "'Basic ***'"


# split_base_url, split_header


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/v1", "must be an http"),
    ("https:///v1", "has no host"),
    ("https://example.com/v1#top", "#fragment"),
    ("https://example.com/v1/chat/completions", "names an endpoint"),
    ("https://example.com:99999/v1", "port"),
    ("https://example.com/v 1", "which a URL cannot hold"),
    ("https://example.com\\v1", "which a URL cannot hold"),
    ("https://user:hunter2@example.com/v1/chat/completions", "names an endpoint"),
])
def test_a_base_url_that_cannot_be_one_is_refused_without_its_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        split_base_url(url)
    assert "hunter2" not in str(refused.value)


def test_a_base_url_without_credentials_is_kept_as_given() -> None:
    assert split_base_url("https://example.com/openai/deployments/d?api-version=1") == (
        "https://example.com/openai/deployments/d?api-version=1", None)


def test_a_header_is_a_lower_case_name_and_its_value() -> None:
    assert split_header("  X-Api-Key :  abc def ") == ("x-api-key", "abc def")


@pytest.mark.parametrize(("line", "message"), [
    ("no colon here", "without a colon"), (": value", "without a name"), ("bad name: s3cr3t", "cannot hold ' '"),
    ("Content-Length: 5", "sets this header itself"), ("x-a:", "empty value"), ("x-a: s3cr3t\r\nx: y", "line break"),
])
def test_a_header_that_cannot_be_sent_is_refused_without_its_value(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        split_header(line)
    assert "s3cr3t" not in str(refused.value)


# Bounds


def test_bounds_admit_finite_numbers_in_range() -> None:
    closed, open_low, whole = Bounds(0, 10), Bounds(0, 10, low_open=True), Bounds(1, 5, whole=True)
    assert closed.admits(0) and closed.admits(10) and not closed.admits(10.5) and not closed.admits(-0.1)
    assert not open_low.admits(0) and open_low.admits(1e-9)
    assert whole.admits(3) and whole.admits(3.0) and not whole.admits(2.5)
    assert not any(bounds.admits(value) for bounds in (closed, open_low, whole)
                   for value in (math.nan, math.inf, -math.inf))


def test_bounds_say_what_they_take() -> None:
    assert str(Bounds(1, 10_000, whole=True)) == "a whole number from 1 to 10,000"
    assert str(Bounds(0, 86_400, low_open=True)) == "a number above 0 and at most 86,400"
    assert str(Bounds(0, 0.5)) == "a number from 0 to 0.5"
    with pytest.raises(ConfigError, match=r"^--x must be a number from 0 to 1, got nan$"):
        Bounds(0, 1).check("--x", math.nan)


# The declarations


def all_settings() -> list[Setting[object]]:
    return [*settings.RUN_SETTINGS, *settings.RETRY_SETTINGS, *batch_settings.SETTINGS]


def test_every_field_default_and_check_of_run_config_is_its_declaration_s() -> None:
    config, retry = RunConfig(Path("x.jsonl"), base_url=BASE), RetryPolicy()
    defaults = {field.name: field.default for cls in (RunConfig, RetryPolicy) for field in dataclasses.fields(cls)}
    for setting in [*settings.RUN_SETTINGS, *settings.RETRY_SETTINGS]:
        assert defaults[setting.name] == setting.default, setting.name
    assert config.concurrency == settings.CONCURRENCY.default and retry.max_attempts == settings.MAX_ATTEMPTS.default
    for setting in settings.RUN_SETTINGS:
        if setting.bounds is not None:
            with pytest.raises(ConfigError, match=f"^{setting.label} must be {setting.bounds}"):
                RunConfig(Path("x.jsonl"), base_url=BASE, **{setting.name: setting.bounds.high * 2})  # type: ignore[arg-type]
    for setting in settings.RETRY_SETTINGS:
        with pytest.raises(ConfigError, match=f"^{setting.label} must be"):
            RetryPolicy(**{setting.name: math.inf})  # type: ignore[arg-type]


def command_options(name: str) -> dict[str | None, click.Option]:
    assert isinstance(main, click.Group)
    return {param.name: param for param in main.commands[name].params if isinstance(param, click.Option)}


@pytest.mark.parametrize("command", ["run", "label"])
def test_every_declared_option_is_made_from_its_declaration(command: str) -> None:
    made = command_options(command)
    declared = [setting for setting in all_settings() if setting.flag is not None
                and (command == "run" or setting not in batch_settings.SETTINGS)]
    for setting in declared:
        option = made[setting.name]
        assert option.opts[0] == setting.flag and option.envvar == setting.env, setting.name
        assert option.help is not None and option.help.startswith(setting.help)
        assert getattr(option, "group", None) == setting.group
        if setting.bounds is not None and setting.kind != "duration":
            assert isinstance(option.type, Bounded) and option.type.bounds == setting.bounds
        if setting.kind == "flag":
            assert option.is_flag
        elif setting.default is not None and not setting.multiple:
            assert option.default == setting.default
    assert {setting.group for setting in all_settings()} <= set(settings.GROUPS)


def test_a_library_setting_has_no_option() -> None:
    library = [setting for setting in all_settings() if setting.flag is None]
    assert {setting.name for setting in library} == {"window_bytes", "outage_threshold", "backoff_base",
                                                      "backoff_max", "retry_after_max"}
    assert not {setting.name for setting in library} & set(command_options("run"))


def test_a_setting_without_a_value_is_a_flag_and_none_is_not_checked() -> None:
    assert Setting("x", "--x", False, settings.OUTPUT).kind == "flag"
    settings.MAX_COST.check(None)
    with pytest.raises(ConfigError, match="--max-cost"):
        settings.MAX_COST.check(0)
    assert settings.WINDOW_BYTES.label == "window_bytes" and settings.TIMEOUT.label == "--timeout"
    assert dataclasses.replace(settings.TIMEOUT, flag=None).label == "timeout"
