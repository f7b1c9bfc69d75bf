"""The options of every command that runs the engine (`run`, `label`), and what they become:
the endpoint and key, the `RunConfig`, logging, and a run with its progress display."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import settings as declared
from ..batchapi.options import BatchOptions
from ..batchapi.pending import Pending
from ..cache.store import default_dir
from ..config import ApiKey, RetryPolicy, RunConfig, split_base_url, split_header
from ..disk.runfiles import checked
from ..errors import ConfigError
from ..settings import OUTPUT, SIMULATOR, Setting
from ..stats import EXIT_STOPPED, RunStats
from ..tiers import FLEX, FLEX_TIMEOUT
from .declared import option
from .progress import BarLogHandler, BarProgress, LogProgress

if TYPE_CHECKING:
    from ..engine.sources import Source

F = TypeVar("F", bound=Callable[..., Any])

# The options of the command line alone: how it shows a run, and the simulator it starts.
MOCK_LATENCY_MS = Setting("mock_latency_ms", "--mock-latency-ms", 20.0, SIMULATOR, bounds=declared.MILLISECONDS_RANGE,
                          help="With --mock: the simulator's response latency.")
QUIET = Setting("quiet", "--quiet", False, OUTPUT, short="-q",
                help="No progress and no summary; errors only, and one line when the exit code is not 0.")
VERBOSE = Setting("verbose", "--verbose", False, OUTPUT, short="-v", help="Log every retry.")
PROGRESS_INTERVAL = Setting("progress_interval", "--progress-interval", 30.0, OUTPUT, bounds=declared.DEADLINE_RANGE,
                            help="Seconds between progress log lines when stderr is not a terminal.")

# The options, in --help's order within each section: every setting of `RunConfig` and
# `RetryPolicy` that has an option, and those above.
SETTINGS: tuple[Setting[Any], ...] = (
    declared.BASE_URL, declared.API_KEY_ENV, declared.HEADERS, declared.CONCURRENCY, declared.WINDOW,
    declared.MAX_ATTEMPTS, declared.RATE_LIMIT_PATIENCE, declared.TIMEOUT, declared.CONNECT_TIMEOUT, declared.RPM,
    declared.TPM, declared.TIER, declared.TIER_FALLBACK, declared.MAX_OUTAGE, declared.DRAIN_TIMEOUT,
    declared.MAX_COST, declared.PRICES, declared.BATCH_DISCOUNT, declared.CACHE, declared.RESTART,
    declared.RETRY_FAILED, declared.LIMIT, QUIET, VERBOSE, PROGRESS_INTERVAL, declared.MOCK, MOCK_LATENCY_MS)
_RETRY = tuple(setting for setting in SETTINGS if setting in declared.RETRY_SETTINGS)
_RUN = tuple(setting for setting in SETTINGS
             if setting in declared.RUN_SETTINGS and setting not in (declared.BASE_URL, declared.MOCK))


def _checked_by(parse: Callable[[str], object]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback making ``parse``'s `ConfigError` a usage error naming the option (`RunConfig`
    checks the value again, and splits it)."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            for each in value if isinstance(value, tuple) else (value,):
                parse(each)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).removeprefix("--header ")) from None
        return value

    return check


def _cache_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """``--cache`` alone is the default location (`cache.default_dir`); ``--cache DIR`` is DIR."""
    if value is None:
        return None
    return Path(value) if value else default_dir()


_CALLBACKS = {"base_url": _checked_by(split_base_url), "headers": _checked_by(split_header), "cache": _cache_dir}
# Options whose value may be left out: click takes them as text, the callback makes the value.
_OPTIONAL_VALUE = {"cache": {"is_flag": False, "flag_value": "", "type": click.STRING}}


def cache_option(help_text: str) -> Callable[[F], F]:
    """``--cache [DIR]`` for a command that only reads the cache (``estimate``): DIR, or the
    default location, as a run takes it."""
    return option(declared.CACHE, callback=_cache_dir, help=help_text, **_OPTIONAL_VALUE["cache"])


def base_url_option(help_text: str) -> Callable[[F], F]:
    """``--base-url URL`` (its variable and default as a run's), checked as a run checks it."""
    return option(declared.BASE_URL, callback=_checked_by(split_base_url), help=help_text)


def _defaulted(name: str) -> bool:
    """Whether the option ``name`` of the running command was left at its default (neither the
    command line nor its environment variable set it)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) in (None, click.core.ParameterSource.DEFAULT)


def no_stdio(what: str) -> Callable[[click.Context, click.Parameter, Path | None], Path | None]:
    """A callback refusing ``-``: a run reads its input again to resume, and writes its output
    where an interrupted run can go on; neither can be a pipe."""
    why = {"input": "the input is read more than once (fingerprinted, sent, and read again to resume "
                    "after an interruption); save stdin to a file first and pass that file",
           "output": "the results are written to a file that an interrupted run goes on with; "
                     "pass -o FILE, then read FILE (cat FILE) once the run has finished"}[what]

    def check(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None and str(value) == "-":
            raise click.BadParameter(f"'-' (standard {'in' if what == 'input' else 'out'}put) is not supported: {why}")
        return value

    return check


def engine_options(command: F) -> F:
    """Add the shared options to a command; it receives them as keyword arguments."""
    for setting in reversed(SETTINGS):
        command = option(setting, callback=_CALLBACKS.get(setting.name), **_OPTIONAL_VALUE.get(setting.name, {}))(command)
    return command


class EngineOptions:
    """The shared options' values, as click passes them (named as `SETTINGS`)."""

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @contextlib.contextmanager
    def endpoint(self) -> Iterator[Callable[..., RunConfig]]:
        """A `RunConfig` maker for the endpoint: the URL and key given, or a simulator started for
        the run with ``--mock`` (and no key sent). Call it with the input and output paths."""
        if self.mock:
            from ..simulator import SimulatorConfig, run_in_thread

            # It refuses a model or a path OpenAI would refuse: a rehearsal meets those mistakes.
            config = SimulatorConfig(latency_ms=self.mock_latency_ms, any_model=False, any_root=False)
            with run_in_thread(config) as sim:
                yield partial(self._config, sim.base_url, None)
            return
        value = os.environ.get(self.api_key_env)
        yield partial(self._config, self.base_url, ApiKey(value) if value else None)

    def _config(self, base_url: str, api_key: ApiKey | None, input_path: Path, output_path: Path | None,
                **request: Any) -> RunConfig:
        """:param request: more of `RunConfig`'s request-shaping fields (``run``'s ``model``).
        :raises ConfigError: as `RunConfig` and `runfiles.checked` do."""
        retry = RetryPolicy(**{setting.name: self._values[setting.name] for setting in _RETRY})
        run = {setting.name: self._values[setting.name] for setting in _RUN}
        if run["tier"] == FLEX and _defaulted("timeout"):
            run["timeout"] = FLEX_TIMEOUT
        return checked(RunConfig(input_path, output_path, base_url=base_url, api_key=api_key, retry=retry,
                                 mock=self.mock, organization=os.environ.get("OPENAI_ORG_ID") or None,
                                 project=os.environ.get("OPENAI_PROJECT_ID") or None, **run, **request))

    def setup_logging(self) -> None:
        handler = BarLogHandler(sys.stderr)
        # ISO 8601 in UTC: a log kept by cron is read on other days, and in other time zones.
        formatter = logging.Formatter("%(asctime)s batchrun %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
        root = logging.getLogger("batchrun")
        root.handlers[:] = [handler]
        root.setLevel(logging.DEBUG if self.verbose else logging.ERROR if self.quiet else logging.INFO)
        root.propagate = False

    def run(self, config: RunConfig, sources: Sequence[Source] = ()) -> RunStats:
        """Run the engine with a progress display: a bar on a terminal, log lines elsewhere."""
        from ..engine import run_batch  # the engine and its HTTP stack, loaded by a command that runs

        stats: RunStats = self._run(partial(run_batch, config, sources=sources))
        return stats

    def run_via_batch(self, config: RunConfig, batch: BatchOptions, sources: Sequence[Source] = ()) -> RunStats | Pending:
        """`run` through the provider's Batch API (`batchapi.lifecycle`): its batches may still
        be running when this returns (`Pending`)."""
        from ..batchapi.lifecycle import run_via_batch

        outcome: RunStats | Pending = self._run(partial(run_via_batch, config, batch, sources=sources))
        return outcome

    def progress(self) -> BarProgress | LogProgress | None:
        """The progress display: a bar on a terminal, log lines elsewhere, none with ``--quiet``."""
        return (None if self.quiet else BarProgress(sys.stderr) if sys.stderr.isatty()
                else LogProgress(self.progress_interval))

    def _run(self, job: Callable[..., Any]) -> Any:
        from ..runner import run_async

        progress = self.progress()
        try:
            outcome = run_async(partial(job, observer=progress, handle_signals=True))
        except KeyboardInterrupt:  # before the run installed its own handlers
            click.echo("\nbatchrun: interrupted before any request was sent", err=True)
            sys.exit(EXIT_STOPPED)
        if progress is not None and isinstance(outcome, RunStats):
            progress.close(outcome)
        return outcome
