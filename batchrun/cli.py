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
sent), 3 stopped by --max-cost, 4 stopped early (interrupted, the endpoint rejected the
API key or stayed down): run the same command again to continue where it stopped.
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
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_RPM",
              help="Requests per minute not to exceed. Without it, limits the endpoint announces "
                   "(x-ratelimit-* headers) are learned and followed.")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_TPM",
              help="Tokens per minute not to exceed (estimated before sending, corrected by usage).")
@click.option("--max-outage", type=click.FloatRange(min=0), default=defaults.DEFAULT_MAX_OUTAGE, show_default=True,
              help="Seconds the endpoint may stay down (dispatch paused, probing) before the run stops.")
@click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_MAX_COST", metavar="USD",
              help="Spend at most this many dollars: dispatch stops before a request could pass it "
                   "(exit 3); run again with a higher cap to continue.")
@click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
              help="Price file (JSON or TOML) overriding or extending the built-in table.")
@click.option("--batch-discount", is_flag=True, help="Price tokens at the OpenAI Batch API's 50% discount.")
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
        connect_timeout: float, rpm: float | None, tpm: float | None, max_outage: float, max_cost: float | None,
        prices_path: Path | None, batch_discount: bool, restart: bool, retry_failed: bool, drain_timeout: float,
        mock: bool, mock_latency_ms: float, quiet: bool, verbose: bool, progress_interval: float) -> None:
    """Run every request line of INPUT and write the ordered results."""
    _setup_logging(quiet, verbose)
    retry = RetryPolicy(max_attempts=max_attempts, rate_limit_patience=rate_limit_patience)
    with _endpoint(base_url, api_key_env, mock, mock_latency_ms) as (url, key):
        config = RunConfig(input_path, output, base_url=url, api_key=key, concurrency=concurrency,
                           window=window, timeout=timeout, connect_timeout=connect_timeout, retry=retry,
                           restart=restart, retry_failed=retry_failed, drain_timeout=drain_timeout, mock=mock,
                           rpm=rpm, tpm=tpm, max_outage=max_outage, max_cost=max_cost, prices_path=prices_path,
                           batch_discount=batch_discount)
        stats = _run_with_progress(config, quiet, progress_interval)
    if not quiet:
        click.echo(format_summary(stats, str(config.report_path)), err=True)
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
@click.option("--rpm", type=click.IntRange(min=1),
              help="Requests per minute, enforced like OpenAI: 429s past it, x-ratelimit-* headers on every answer.")
@click.option("--tpm", type=click.IntRange(min=1),
              help="Tokens per minute: prompt + max output tokens at arrival, corrected to the usage sent.")
@click.option("--limits-schedule", metavar="SECONDS:rpm=N,tpm=N", multiple=True,
              help="Change the limits that long after start (N, or none to lift one), e.g. 20:rpm=300; "
                   "repeatable. POST /_simulator/limits changes them too.")
def mock_server(host: str, port: int, latency_ms: float, jitter_ms: float, rate_429: float, retry_after: float,
                no_retry_after: bool, rate_500: float, rate_timeout: float, hang_s: float, rate_drop: float,
                rate_truncate: float, rate_malformed: float, require_api_key_env: str | None, seed: int,
                rpm: int | None, tpm: int | None, limits_schedule: tuple[str, ...]) -> None:
    """Serve the OpenAI-compatible simulator on loopback until Ctrl-C (SPEC §8).

    Deterministic answers with realistic usage for /v1/chat/completions, /v1/completions,
    /v1/embeddings, /v1/responses and /v1/models; counters at /_simulator/stats.

    With --rpm/--tpm it throttles as OpenAI does (token buckets refilled continuously, 429 with
    retry-after-ms); GET or POST {"rpm": N, "tpm": N} to /_simulator/limits reads or changes them.
    """
    from .simulator import Faults, RateLimits, SimulatorConfig, parse_schedule, run_forever

    required = os.environ.get(require_api_key_env) if require_api_key_env else None
    if require_api_key_env and not required:
        raise click.UsageError(f"environment variable {require_api_key_env} is not set")
    try:
        faults = Faults(rate_429=rate_429, rate_500=rate_500, rate_timeout=rate_timeout, rate_drop=rate_drop,
                        rate_truncate=rate_truncate, rate_malformed=rate_malformed,
                        retry_after_s=None if no_retry_after else retry_after, hang_s=hang_s,
                        require_api_key=required)
        config = SimulatorConfig(host=host, port=port, latency_ms=latency_ms, jitter_ms=jitter_ms,
                                 faults=faults, seed=seed, limits=RateLimits(rpm, tpm),
                                 limits_schedule=parse_schedule(";".join(limits_schedule)))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(base_url: str) -> None:
        limits = "".join(f", {name} {value:,}" for name, value in (("rpm", rpm), ("tpm", tpm)) if value)
        click.echo(f"simulator listening on {base_url}  (Ctrl-C to stop{limits})", err=True)

    stats = run_forever(config, on_ready=ready)
    limited = sum(stats.rate_limited.values())
    note = f" ({limited:,} of them rate-limited)" if limited else ""
    click.echo(f"simulator stopped after {stats.requests:,} requests{note}", err=True)


# -- report and estimate (SPEC §4) ------------------------------------------------------------

REPORT_EXAMPLES = """
\b
Examples:
  batchrun report results.jsonl
  batchrun report results.jsonl --json > report.json
  batchrun report batch_abc123_output.jsonl --batch-discount   # an OpenAI Batch output file
  batchrun report vllm-output.jsonl --prices our-prices.toml

\b
Reads any file in the OpenAI Batch output shape, streamed in constant memory: batchrun's
output, OpenAI Batch output and error files, vLLM run-batch output.

\b
Prices come from a dated built-in table (USD per 1M tokens); --prices FILE overrides or
extends it (JSON, or TOML on Python 3.11+):
  {"models": {"my-model": {"input": 0.10, "cached_input": 0.05, "output": 0.30}}}
A model with no price shows its cost as unknown, never as 0.
"""


@main.command(epilog=REPORT_EXAMPLES)
@click.argument("output_path", metavar="OUTPUT", type=click.Path(path_type=Path))
@click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
              help="Price file (JSON or TOML) overriding or extending the built-in table.")
@click.option("--batch-discount", is_flag=True, help="Apply the OpenAI Batch API's 50% discount to every price.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema batchrun.report/1).")
def report(output_path: Path, prices_path: Path | None, batch_discount: bool, as_json: bool) -> None:
    """Usage, cost and latency of OUTPUT, a file of results in the OpenAI Batch output shape."""
    from .pricing import load_prices
    from .report import report_file

    summary = report_file(output_path, load_prices(prices_path, batch_discount=batch_discount))
    doc = summary.to_dict()
    _print_document(doc, summary.render(), as_json, doc["warnings"])


ESTIMATE_EXAMPLES = """
\b
Examples:
  batchrun estimate requests.jsonl
  batchrun estimate requests.jsonl --json > estimate.json
  batchrun estimate requests.jsonl --prices our-prices.json --default-max-tokens 1000

\b
Checks every line as a run would (JSON, envelope fields, duplicate custom_ids,
stream=true) and that each request names a model; every bad line is printed with its
file:line. Nothing is sent. The cost range: low = estimated input tokens at the input
price; high = that plus each request's max_tokens / max_completion_tokens /
max_output_tokens at the output price (--default-max-tokens when it sets none).

\b
Exit codes: 0 every line is fine, 2 the file cannot be read or has bad lines.
"""


@main.command(epilog=ESTIMATE_EXAMPLES)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
              help="Price file (JSON or TOML) overriding or extending the built-in table.")
@click.option("--batch-discount", is_flag=True, help="Apply the OpenAI Batch API's 50% discount to every price.")
@click.option("--default-max-tokens", type=click.IntRange(min=0), default=None,
              help="Output tokens assumed for a request that sets no max_tokens. [default: 4096]")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON (schema batchrun.estimate/1).")
def estimate(input_path: Path, prices_path: Path | None, batch_discount: bool, default_max_tokens: int | None,
             as_json: bool) -> None:
    """Check every line of INPUT and estimate its tokens and cost, before anything is sent."""
    from .estimate import Problem, estimate_file
    from .pricing import load_prices
    from .tables import render_estimate
    from .tokens import DEFAULT_MAX_OUTPUT_TOKENS

    def show(problem: Problem) -> None:
        click.echo(f"batchrun: {problem.message}", err=True)

    prices = load_prices(prices_path, batch_discount=batch_discount)
    cap = DEFAULT_MAX_OUTPUT_TOKENS if default_max_tokens is None else default_max_tokens
    result = estimate_file(input_path, prices, default_max_output=cap, on_problem=show)
    doc = result.to_dict()
    _print_document(doc, render_estimate(doc), as_json, doc["warnings"])
    if result.problems:
        click.echo(f"batchrun: {result.problems:,} of {result.lines:,} lines would not be sent as they are",
                   err=True)
        sys.exit(EXIT_USAGE)


def _print_document(doc: dict[str, object], table: str, as_json: bool, warnings: list[str]) -> None:
    """A report or estimate on stdout: the table, or the JSON with its warnings also on stderr."""
    if not as_json:
        click.echo(table)
        return
    import orjson

    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    for note in warnings:
        click.echo(f"batchrun: warning: {note}", err=True)


# -- label (SPEC §9): a dataset in, the same rows with the model's answers out ----------------

LABEL_EXAMPLES = """
\b
Examples:
  batchrun label samples/reviews.csv --template samples/sentiment.txt \\
      --labels positive,negative,neutral --mock
  batchrun label reviews.csv -t sentiment.txt --labels positive,negative,neutral \\
      --model gpt-4o-mini --param temperature=0 -o labeled.csv
  batchrun label samples/invoices.jsonl -t samples/invoice.txt \\
      --json-schema samples/invoice_schema.json --id-field id --mock
  batchrun label tickets.csv -t triage.txt --labels bug,question,feature --dry-run

\b
DATA is CSV or TSV with a header row, or JSONL objects (by extension), streamed.
The output has the same rows in the same order, followed by the answer column(s):
  answer    the answer text (without --labels or --json-schema)
  label     with --labels: one of the labels, spelled as given
  <name>    with --json-schema: each top-level property of the schema
  _error    empty, or "<code>: <message>" when the row has no valid answer
            (invalid_label, invalid_json, schema_mismatch, no_answer, or the
            request's own error code such as rate_limit_exceeded)
  _raw      the answer text when it failed validation
CSV gives CSV, JSONL gives JSONL (each object kept as it was, the new keys
added), unless -o ends in .csv, .tsv or .jsonl.

\b
The template is one user message with {column} placeholders ({{ and }} are
literal braces), or several messages when lines read ### system, ### user,
### assistant (few-shot examples), or a .json list of {"role", "content"}:
  ### system
  You label product reviews.
  ### user
  Review: It broke after a week.
  ### assistant
  negative
  ### user
  Review: {text}

\b
--labels sends a JSON schema with an enum (structured outputs) and names the
labels in the system prompt; answers are normalised (case, spaces, quotes, a
trailing period, {"label": ...}). --json-schema sends the schema and checks
answers against it (type, enum, const, properties, required,
additionalProperties, items, anyOf). Rows are checked before anything is sent:
a placeholder a row cannot fill, or a repeated --id-field, exits 2 naming rows.

\b
The batch is kept in OUT.batch/ beside the output (requests.jsonl,
results.jsonl). Run the same command again to continue after an interruption;
--retry-failed sends the rows with an _error again; `batchrun report
OUT.batch/results.jsonl` shows usage and cost.

\b
Exit codes: 0 every row has an answer, 1 some rows have an _error, 2 usage or
data error (nothing sent), 3 stopped by --max-cost, 4 stopped early (interrupted):
for 3 and 4, run the same command again to continue.
"""


@main.command(epilog=LABEL_EXAMPLES)
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path))
@click.option("--template", "-t", "template_path", required=True, type=click.Path(path_type=Path),
              help="Prompt template file (formats below).")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Labeled output. Default: DATA with .labeled before its extension.")
@click.option("--model", "-m", envvar="BATCHRUN_MODEL", default="gpt-4o-mini", show_default=True,
              help="Model to ask [env: BATCHRUN_MODEL].")
@click.option("--system", help="A system message in front of the template (placeholders work).")
@click.option("--labels", metavar="A,B,...", help="The allowed answers, comma-separated; column 'label'.")
@click.option("--json-schema", "schema_path", metavar="FILE", type=click.Path(path_type=Path),
              help="JSON schema of the answer object; each top-level property is a column.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Request field, value read as JSON (repeatable): --param temperature=0.")
@click.option("--id-field", metavar="COLUMN", help="Column of unique ids, sent as custom_id. Default: line-<N>.")
@click.option("--no-response-format", is_flag=True,
              help="Send no response_format (endpoints without structured outputs); answers are still checked.")
@click.option("--dry-run", is_flag=True, help="Check every row; show the first requests and the cost estimate.")
@click.option("--base-url", envvar="OPENAI_BASE_URL", default=defaults.DEFAULT_BASE_URL, show_default=True,
              help="OpenAI-compatible endpoint [env: OPENAI_BASE_URL].")
@click.option("--api-key-env", default=defaults.DEFAULT_API_KEY_ENV, show_default=True,
              help="Environment variable holding the API key.")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), envvar="BATCHRUN_CONCURRENCY",
              default=defaults.DEFAULT_CONCURRENCY, show_default=True, help="Requests in flight at once.")
@click.option("--max-attempts", type=click.IntRange(min=1), envvar="BATCHRUN_MAX_ATTEMPTS",
              default=defaults.DEFAULT_MAX_ATTEMPTS, show_default=True, help="Attempts per row for retryable failures.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_TIMEOUT",
              default=defaults.DEFAULT_TIMEOUT, show_default=True, help="Seconds to wait for one response.")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_RPM",
              help="Requests per minute not to exceed (as batchrun run).")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_TPM",
              help="Tokens per minute not to exceed (as batchrun run).")
@click.option("--max-cost", type=click.FloatRange(min=0, min_open=True), envvar="BATCHRUN_MAX_COST", metavar="USD",
              help="Spend at most this many dollars (exit 3; run again with a higher cap to continue).")
@click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
              help="Price file overriding or extending the built-in table (--max-cost, --dry-run).")
@click.option("--batch-discount", is_flag=True, help="Price tokens at the OpenAI Batch API's 50% discount.")
@click.option("--restart", is_flag=True, help="Discard earlier answers for this output and label every row again.")
@click.option("--retry-failed", is_flag=True, help="Keep the answered rows; send the rows with an _error again.")
@click.option("--mock", is_flag=True, help="Run against the built-in simulator: no key, no network.")
@click.option("--mock-latency-ms", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="With --mock: the simulator's response latency.")
@click.option("--quiet", "-q", is_flag=True, help="No progress and no summary; errors only.")
@click.option("--verbose", "-v", is_flag=True, help="Log every retry.")
@click.option("--progress-interval", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Seconds between progress log lines when stderr is not a terminal.")
def label(data_path: Path, template_path: Path, output: Path | None, model: str, system: str | None,
          labels: str | None, schema_path: Path | None, params: tuple[str, ...], id_field: str | None,
          no_response_format: bool, dry_run: bool, base_url: str, api_key_env: str, concurrency: int,
          max_attempts: int, timeout: float, rpm: float | None, tpm: float | None, max_cost: float | None,
          prices_path: Path | None, batch_discount: bool, restart: bool, retry_failed: bool, mock: bool,
          mock_latency_ms: float, quiet: bool, verbose: bool, progress_interval: float) -> None:
    """Ask a model about every row of DATA; write the rows with its answers as new columns."""
    from .label import LabelJob, LabelRun, preview
    from .pricing import load_prices

    _setup_logging(quiet, verbose)
    job = LabelJob.from_files(data_path, template_path, output_path=output, model=model, system=system,
                              labels=labels, schema_path=schema_path, params=params, id_field=id_field,
                              response_format=not no_response_format)
    if dry_run:
        click.echo(preview(job, prices=load_prices(prices_path, batch_discount=batch_discount)).render())
        return
    retry = RetryPolicy(max_attempts=max_attempts)
    config = stats = None
    try:
        with _endpoint(base_url, api_key_env, mock, mock_latency_ms) as (url, key):
            engine = partial(RunConfig, base_url=url, api_key=key, concurrency=concurrency, timeout=timeout,
                             retry=retry, rpm=rpm, tpm=tpm, max_cost=max_cost, prices_path=prices_path,
                             batch_discount=batch_discount, restart=restart, retry_failed=retry_failed, mock=mock)
            with LabelRun(job, engine) as labeling:
                config = labeling.prepare()
                stats = _run_with_progress(config, quiet, progress_interval) if config is not None else None
                outcome = labeling.finish(stats)
    except KeyboardInterrupt:  # while rendering or joining: the engine handles its own signals
        click.echo("\nbatchrun: interrupted; run the same command again to continue", err=True)
        sys.exit(EXIT_STOPPED)
    if not quiet:
        if config is not None and stats is not None:
            click.echo(format_summary(stats, str(config.report_path)), err=True)
        counts = outcome.counts
        if counts is not None:
            failures = ", ".join(f"{code} {n:,}" for code, n in counts.errors.most_common())
            click.echo(f"labeled {counts.rows:,} rows into {outcome.output_path}: {counts.ok:,} answered, "
                       f"{counts.failed:,} with an _error{f' ({failures})' if failures else ''}", err=True)
    sys.exit(outcome.exit_code)

