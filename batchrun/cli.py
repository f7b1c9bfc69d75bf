"""The command line: each command parses options, builds the config, runs once, maps the exit code.

Only this module (with `progress.py`) talks to the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import click

from . import config as defaults
from .config import ApiKey, RetryPolicy, RunConfig
from .engine import run_batch
from .errors import BatchrunError
from .progress import BarProgress, LogProgress
from .runner import run_async
from .stats import EXIT_STOPPED, EXIT_USAGE, RunStats
from .summary import format_summary

log = logging.getLogger("batchrun")

RUN_EXAMPLES = """
\b
Examples:
  batchrun run samples/chat.jsonl --mock
  OPENAI_API_KEY=sk-... batchrun run requests.jsonl -o results.jsonl --concurrency 128
  batchrun run requests.jsonl --base-url http://127.0.0.1:8000/v1   # vLLM, llama.cpp, Ollama

\b
Input lines are OpenAI Batch envelopes ({"custom_id", "method", "url", "body"}) or bare
request bodies. Output has one line per input line, in input order, in the OpenAI Batch
output shape; failed lines also go to OUTPUT's sibling <name>.errors.jsonl.

\b
Exit codes: 0 all lines succeeded, 1 some lines failed, 2 usage or input error (nothing
sent), 4 stopped early (interrupted, or the endpoint rejected the API key): run the
same command again to continue where it stopped.
"""


class BatchrunGroup(click.Group):
    """Turns library errors into clean messages with SPEC §5 exit codes."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BatchrunError as exc:
            click.echo(f"batchrun: error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=BatchrunGroup)
@click.version_option(package_name="batchrun")
def main() -> None:
    """Run JSONL files of LLM requests against OpenAI-compatible endpoints."""


@main.command(epilog=RUN_EXAMPLES)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Results file. Default: INPUT with .jsonl replaced by .results.jsonl.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=defaults.DEFAULT_BASE_URL, show_default=True,
              help="OpenAI-compatible endpoint [env: OPENAI_BASE_URL].")
@click.option("--api-key-env", default=defaults.DEFAULT_API_KEY_ENV, show_default=True,
              help="Environment variable holding the API key (never pass the key itself).")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), envvar="BATCHRUN_CONCURRENCY",
              default=defaults.DEFAULT_CONCURRENCY, show_default=True, help="Requests in flight at once.")
@click.option("--window", type=click.IntRange(min=1), envvar="BATCHRUN_WINDOW",
              help="Most lines dispatched past the oldest unfinished one (bounds memory). "
                   "Default: max(1024, 16 x concurrency).")
@click.option("--max-attempts", type=click.IntRange(min=1), envvar="BATCHRUN_MAX_ATTEMPTS",
              default=defaults.DEFAULT_MAX_ATTEMPTS, show_default=True,
              help="Attempts per line for retryable failures; 429s are bounded by --rate-limit-patience.")
@click.option("--rate-limit-patience", type=click.FloatRange(min=0), envvar="BATCHRUN_RATE_LIMIT_PATIENCE",
              default=defaults.DEFAULT_RATE_LIMIT_PATIENCE, show_default=True,
              help="Seconds one line may wait on 429s before it is failed.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_TIMEOUT",
              default=defaults.DEFAULT_TIMEOUT, show_default=True, help="Seconds to wait for one response.")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True),
              default=defaults.DEFAULT_CONNECT_TIMEOUT, show_default=True, help="Seconds to wait for a connection.")
@click.option("--restart", is_flag=True,
              help="Discard the output's checkpoint (or finished output) and run every line again.")
@click.option("--retry-failed", is_flag=True,
              help="Keep the successes of the checkpoint or finished output; send only failed lines again.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=defaults.DEFAULT_DRAIN_TIMEOUT,
              show_default=True, help="After Ctrl-C or SIGTERM, seconds in-flight requests get to finish.")
@click.option("--mock", is_flag=True, help="Run against the built-in simulator: no key, no network.")
@click.option("--mock-latency-ms", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="With --mock: the simulator's response latency.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary; errors only.")
@click.option("--verbose", "-v", is_flag=True, help="Log every retry.")
@click.option("--progress-interval", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds between progress log lines when stderr is not a terminal.")
def run(input_path: Path, output: Path | None, base_url: str, api_key_env: str, concurrency: int,
        window: int | None, max_attempts: int, rate_limit_patience: float, timeout: float,
        connect_timeout: float, restart: bool, retry_failed: bool, drain_timeout: float, mock: bool,
        mock_latency_ms: float, quiet: bool, verbose: bool, progress_interval: float) -> None:
    """Run every request line of INPUT and write the ordered results."""
    _setup_logging(quiet, verbose)
    retry = RetryPolicy(max_attempts=max_attempts, rate_limit_patience=rate_limit_patience)
    with _endpoint(base_url, api_key_env, mock, mock_latency_ms) as (url, key):
        config = RunConfig(input_path, output, base_url=url, api_key=key, concurrency=concurrency,
                           window=window, timeout=timeout, connect_timeout=connect_timeout, retry=retry,
                           restart=restart, retry_failed=retry_failed, drain_timeout=drain_timeout, mock=mock)
        stats = _run_with_progress(config, quiet, progress_interval)
    if not quiet:
        click.echo(format_summary(stats), err=True)
    sys.exit(stats.exit_code)


@contextlib.contextmanager
def _endpoint(base_url: str, api_key_env: str, mock: bool, latency_ms: float) -> Iterator[tuple[str, ApiKey | None]]:
    """The URL and key to use; with ``--mock``, a simulator started for the run (and no key sent)."""
    if mock:
        from .simulator import SimulatorConfig, run_in_thread

        with run_in_thread(SimulatorConfig(latency_ms=latency_ms)) as sim:
            yield sim.base_url, None
        return
    value = os.environ.get(api_key_env)
    yield base_url, ApiKey(value) if value else None


def _run_with_progress(config: RunConfig, quiet: bool, interval: float) -> RunStats:
    progress = None if quiet else BarProgress(sys.stderr) if sys.stderr.isatty() else LogProgress(interval)
    try:
        stats: RunStats = run_async(partial(run_batch, config, observer=progress, handle_signals=True))
    except KeyboardInterrupt:  # before the run installed its own handlers
        click.echo("\nbatchrun: interrupted before any request was sent", err=True)
        sys.exit(EXIT_STOPPED)
    if progress is not None:
        progress.close(stats)
    return stats


def _setup_logging(quiet: bool, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s batchrun %(levelname)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("batchrun")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    root.propagate = False


MOCK_EXAMPLES = """
\b
Examples:
  batchrun mock-server --port 8000 --latency-ms 50
  batchrun mock-server --rate-429 0.1 --rate-500 0.05 --rate-drop 0.01 --seed 7
  batchrun run requests.jsonl --base-url http://127.0.0.1:8000/v1
"""


@main.command("mock-server", epilog=MOCK_EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--latency-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Fixed delay before every answer.")
@click.option("--jitter-ms", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Extra delay drawn uniformly from [0, jitter] per request.")
@click.option("--rate-429", type=click.FloatRange(0, 1), default=0.0, help="Share of requests answered 429.")
@click.option("--retry-after", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds a 429 asks for (Retry-After and retry-after-ms).")
@click.option("--no-retry-after", is_flag=True, help="Send 429s without any Retry-After header.")
@click.option("--rate-500", type=click.FloatRange(0, 1), default=0.0, help="Share answered 500/502/503/504.")
@click.option("--rate-timeout", type=click.FloatRange(0, 1), default=0.0, help="Share never answered (hang).")
@click.option("--hang-s", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="How long a hung request is held before its connection is closed.")
@click.option("--rate-drop", type=click.FloatRange(0, 1), default=0.0, help="Share whose connection is dropped.")
@click.option("--rate-truncate", type=click.FloatRange(0, 1), default=0.0, help="Share whose body is cut short.")
@click.option("--rate-malformed", type=click.FloatRange(0, 1), default=0.0, help="Share answered 200 with non-JSON.")
@click.option("--require-api-key-env", metavar="NAME",
              help="Answer 401 unless requests carry the key held in environment variable NAME.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of fault and jitter draws.")
def mock_server(host: str, port: int, latency_ms: float, jitter_ms: float, rate_429: float, retry_after: float,
                no_retry_after: bool, rate_500: float, rate_timeout: float, hang_s: float, rate_drop: float,
                rate_truncate: float, rate_malformed: float, require_api_key_env: str | None, seed: int) -> None:
    """Serve the OpenAI-compatible simulator on loopback until Ctrl-C (SPEC §8).

    Deterministic answers with realistic usage for /v1/chat/completions, /v1/completions,
    /v1/embeddings, /v1/responses and /v1/models; counters at /_simulator/stats.
    """
    from .simulator import Faults, SimulatorConfig, run_forever

    required = os.environ.get(require_api_key_env) if require_api_key_env else None
    if require_api_key_env and not required:
        raise click.UsageError(f"environment variable {require_api_key_env} is not set")
    try:
        faults = Faults(rate_429=rate_429, rate_500=rate_500, rate_timeout=rate_timeout, rate_drop=rate_drop,
                        rate_truncate=rate_truncate, rate_malformed=rate_malformed,
                        retry_after_s=None if no_retry_after else retry_after, hang_s=hang_s,
                        require_api_key=required)
        config = SimulatorConfig(host=host, port=port, latency_ms=latency_ms, jitter_ms=jitter_ms,
                                 faults=faults, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(base_url: str) -> None:
        click.echo(f"simulator listening on {base_url}  (Ctrl-C to stop)", err=True)

    stats = run_forever(config, on_ready=ready)
    click.echo(f"simulator stopped after {stats.requests:,} requests", err=True)
