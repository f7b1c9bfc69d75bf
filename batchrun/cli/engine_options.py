"""The options of every command that runs the engine (`run`, `label`), and what they become:
the endpoint and key, the `RunConfig`, logging, and a run with its progress display."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import config as defaults
from ..batchapi.lifecycle import Pending, run_via_batch
from ..batchapi.options import BatchOptions
from ..config import ApiKey, RetryPolicy, RunConfig, split_base_url, split_header
from ..engine import run_batch
from ..errors import ConfigError
from ..runner import run_async
from ..stats import EXIT_STOPPED, RunStats
from .bounded import Bounded
from .progress import BarLogHandler, BarProgress, LogProgress

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = [
    click.option("--base-url", envvar="OPENAI_BASE_URL", default=defaults.DEFAULT_BASE_URL, show_default=True,
                 callback=lambda ctx, param, value: _base_url(value),
                 help="OpenAI-compatible endpoint [env: OPENAI_BASE_URL]."),
    click.option("--api-key-env", default=defaults.DEFAULT_API_KEY_ENV, show_default=True,
                 help="Environment variable holding the API key (never pass the key itself)."),
    click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                 callback=lambda ctx, param, value: _headers(value),
                 help="Header sent with every request (repeatable): Azure's api-key, a gateway's token. Wins over "
                      "batchrun's own, Authorization included; never logged. OPENAI_ORG_ID and OPENAI_PROJECT_ID "
                      "are sent as OpenAI-Organization and OpenAI-Project."),
    click.option("--concurrency", "-c", type=Bounded(defaults.CONCURRENCY_RANGE), envvar="BATCHRUN_CONCURRENCY",
                 default=defaults.DEFAULT_CONCURRENCY, show_default=True, help="Requests in flight at once."),
    click.option("--window", type=Bounded(defaults.WINDOW_RANGE), envvar="BATCHRUN_WINDOW",
                 help="Most lines dispatched past the oldest unfinished one (bounds memory). "
                      "Default: max(4096, 64 x concurrency)."),
    click.option("--max-attempts", type=Bounded(defaults.ATTEMPTS_RANGE), envvar="BATCHRUN_MAX_ATTEMPTS",
                 default=defaults.DEFAULT_MAX_ATTEMPTS, show_default=True,
                 help="Attempts per line for retryable failures; 429s are bounded by --rate-limit-patience."),
    click.option("--rate-limit-patience", type=Bounded(defaults.WAIT_RANGE), envvar="BATCHRUN_RATE_LIMIT_PATIENCE",
                 default=defaults.DEFAULT_RATE_LIMIT_PATIENCE, show_default=True,
                 help="Seconds one line may wait on 429s before it is failed."),
    click.option("--timeout", type=Bounded(defaults.DEADLINE_RANGE), envvar="BATCHRUN_TIMEOUT",
                 default=defaults.DEFAULT_TIMEOUT, show_default=True,
                 help="Seconds one attempt may take, from connecting to the response's last byte."),
    click.option("--connect-timeout", type=Bounded(defaults.DEADLINE_RANGE),
                 default=defaults.DEFAULT_CONNECT_TIMEOUT, show_default=True,
                 help="Seconds to wait for a connection."),
    click.option("--rpm", type=Bounded(defaults.RPM_RANGE), envvar="BATCHRUN_RPM",
                 help="Requests per minute not to exceed. Without it, limits the endpoint announces "
                      "(x-ratelimit-* headers) are learned and followed."),
    click.option("--tpm", type=Bounded(defaults.TPM_RANGE), envvar="BATCHRUN_TPM",
                 help="Tokens per minute not to exceed (estimated before sending, corrected by usage)."),
    click.option("--max-outage", type=Bounded(defaults.WAIT_RANGE), default=defaults.DEFAULT_MAX_OUTAGE,
                 show_default=True,
                 help="Seconds the endpoint may stay down (dispatch paused, probing) before the run stops."),
    click.option("--max-cost", type=Bounded(defaults.COST_RANGE), envvar="BATCHRUN_MAX_COST",
                 metavar="USD", help="Spend at most this many dollars: dispatch stops before a request could "
                                     "pass it (exit 3); the summary prints the command that continues with a higher cap."),
    click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
                 help="Price file (JSON or TOML) overriding or extending the built-in table."),
    click.option("--batch-discount", is_flag=True,
                 help="Price the lines answered online at the Batch API's 50% too (lines answered through it always are)."),
    click.option("--limit", type=Bounded(defaults.LIMIT_RANGE), metavar="N",
                 help="Send only the first N lines, to check a prompt before the whole file: their answers stay in "
                      "the checkpoint (not published), and the same command without --limit sends only the rest."),
    click.option("--restart", is_flag=True,
                 help="Discard earlier results for this output (checkpoint or finished) and run everything again."),
    click.option("--retry-failed", is_flag=True,
                 help="Keep the earlier successes for this output; send only what failed again."),
    click.option("--drain-timeout", type=Bounded(defaults.WAIT_RANGE), default=defaults.DEFAULT_DRAIN_TIMEOUT,
                 show_default=True, help="After Ctrl-C or SIGTERM, seconds in-flight requests get to finish."),
    click.option("--mock", is_flag=True, help="Run against the built-in simulator: no key, no network."),
    click.option("--mock-latency-ms", type=Bounded(defaults.MILLISECONDS_RANGE), default=20.0, show_default=True,
                 help="With --mock: the simulator's response latency."),
    click.option("--quiet", "-q", is_flag=True,
                 help="No progress and no summary; errors only, and one line when the exit code is not 0."),
    click.option("--verbose", "-v", is_flag=True, help="Log every retry."),
    click.option("--progress-interval", type=Bounded(defaults.DEADLINE_RANGE), default=30.0,
                 show_default=True, help="Seconds between progress log lines when stderr is not a terminal."),
]


def _base_url(value: str) -> str:
    """Checked here too, so that a bad one is a usage error naming the option; `RunConfig` splits it."""
    try:
        split_base_url(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _headers(values: tuple[str, ...]) -> tuple[str, ...]:
    try:
        for value in values:
            split_header(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("--header ")) from None
    return values


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
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class EngineOptions:
    """The shared options' values, as click passes them."""

    base_url: str
    api_key_env: str
    headers: tuple[str, ...]
    concurrency: int
    window: int | None
    max_attempts: int
    rate_limit_patience: float
    timeout: float
    connect_timeout: float
    rpm: float | None
    tpm: float | None
    max_outage: float
    max_cost: float | None
    prices_path: Path | None
    batch_discount: bool
    limit: int | None
    restart: bool
    retry_failed: bool
    drain_timeout: float
    mock: bool
    mock_latency_ms: float
    quiet: bool
    verbose: bool
    progress_interval: float

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
        """:param request: more of `RunConfig`'s request-shaping fields (``run``'s ``model``)."""
        retry = RetryPolicy(max_attempts=self.max_attempts, rate_limit_patience=self.rate_limit_patience)
        return RunConfig(input_path, output_path, base_url=base_url, api_key=api_key, concurrency=self.concurrency,
                         window=self.window, timeout=self.timeout, connect_timeout=self.connect_timeout,
                         retry=retry, restart=self.restart, retry_failed=self.retry_failed,
                         drain_timeout=self.drain_timeout, mock=self.mock, rpm=self.rpm, tpm=self.tpm,
                         max_outage=self.max_outage, max_cost=self.max_cost, prices_path=self.prices_path,
                         batch_discount=self.batch_discount, limit=self.limit, headers=self.headers, api_key_env=self.api_key_env,
                         organization=os.environ.get("OPENAI_ORG_ID") or None,
                         project=os.environ.get("OPENAI_PROJECT_ID") or None, **request)

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

    def run(self, config: RunConfig) -> RunStats:
        """Run the engine with a progress display: a bar on a terminal, log lines elsewhere."""
        stats: RunStats = self._run(partial(run_batch, config))
        return stats

    def run_via_batch(self, config: RunConfig, batch: BatchOptions) -> RunStats | Pending:
        """`run` through the provider's Batch API (`batchapi.lifecycle`): its batches may still
        be running when this returns (`Pending`)."""
        outcome: RunStats | Pending = self._run(partial(run_via_batch, config, batch))
        return outcome

    def _run(self, job: Callable[..., Any]) -> Any:
        progress = (None if self.quiet else BarProgress(sys.stderr) if sys.stderr.isatty()
                    else LogProgress(self.progress_interval))
        try:
            outcome = run_async(partial(job, observer=progress, handle_signals=True))
        except KeyboardInterrupt:  # before the run installed its own handlers
            click.echo("\nbatchrun: interrupted before any request was sent", err=True)
            sys.exit(EXIT_STOPPED)
        if progress is not None and isinstance(outcome, RunStats):
            progress.close(outcome)
        return outcome
