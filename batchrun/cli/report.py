"""``batchrun report`` and ``batchrun estimate``: usage and cost after a run, and before one."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from ..config import default_output_path, report_path_for
from ..errors import ConfigError
from ..settings import Bounds
from ..stats import EXIT_USAGE
from .bounded import Bounded
from .engine_options import base_url_option, cache_option
from .group import main
from .html_option import check_html_extra, check_html_path, html_option, write_html

REPORT_EXAMPLES = """
\b
Examples:
  batchrun report results.jsonl
  batchrun report results.jsonl --json > report.json
  batchrun report batch_abc123_output.jsonl --batch-discount   # an OpenAI Batch output file
  batchrun report vllm-output.jsonl --prices our-prices.toml
  batchrun report results.jsonl --html report.html
  batchrun report mon.jsonl tue.jsonl wed.jsonl     # runs side by side, changes against the first
  batchrun report mon.jsonl tue.jsonl --json        # the same as JSON (schema batchrun.compare/1)
  batchrun report mon.jsonl tue.jsonl wed.jsonl --html trend.html

\b
Reads any file in the OpenAI Batch output shape, streamed in constant memory: batchrun's
output, OpenAI Batch output and error files, vLLM run-batch output.

\b
Prices come from a dated built-in table (USD per 1M tokens); --prices FILE overrides or
extends it (JSON, or TOML on Python 3.11+):
  {"models": {"my-model": {"input": 0.10, "cached_input": 0.05, "output": 0.30}}}
A model with no price shows its cost as unknown, never as 0. Lines batchrun ran through
the provider's Batch API (their batchrun.batch_id) are priced at its 50%, and counted.
"""


@main.command(epilog=REPORT_EXAMPLES)
@click.argument("output_paths", metavar="OUTPUT...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
              help="Price file (JSON or TOML) overriding or extending the built-in table.")
@click.option("--batch-discount", is_flag=True,
              help="Price every line at the OpenAI Batch API's 50% discount (a file it answered, such as an OpenAI "
                   "Batch output file); lines batchrun ran through it are priced so anyway.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema batchrun.report/1).")
@html_option
def report(output_paths: tuple[Path, ...], prices_path: Path | None, batch_discount: bool, as_json: bool,
           html_path: Path | None) -> None:
    """Usage, cost and latency of OUTPUT, a file of results in the OpenAI Batch output shape;
    with several OUTPUTs, the runs side by side in the order given, each one's change against the first."""
    from ..accounting.compare import compare
    from ..accounting.pricing import load_prices
    from ..accounting.report import report_file
    from .tables import render_comparison, render_report

    check_html_extra(html_path)
    check_html_path(html_path)
    prices = load_prices(prices_path, batch_discount=batch_discount)
    reports = [report_file(path, prices) for path in output_paths]
    for path, counted in zip(output_paths, reports, strict=True):
        if counted.unreadable and not counted.lines:
            raise ConfigError(not_results(path))
    docs = [counted.to_dict() for counted in reports]
    if len(docs) == 1:
        _print_document(docs[0], render_report(docs[0]), as_json, docs[0]["warnings"])
    else:
        compared = compare(docs)
        _print_document(compared, render_comparison(compared), as_json, compared["warnings"])
    if html_path is not None:
        from ..html.page import render_compare, render_run

        if len(docs) > 1:
            write_html(html_path, render_compare(docs))
        else:
            run = run_facts(output_paths[0])
            write_html(html_path, render_run({**docs[0], **run}, latency_histogram=reports[0].latency.state(),
                                             max_cost=run.get("max_cost")))


def not_results(path: Path) -> str:
    """Why ``path``, in which no line is a result, is not what ``report`` reads, and which file is."""
    where = f"{path} holds no results (no line in the OpenAI Batch output shape)"
    if path.suffix.lower() in (".csv", ".tsv"):  # a label run's output, or its data (then its default output)
        outputs = (path, path.with_name(f"{path.stem}.labeled{path.suffix}"))
        found = [results for out in outputs if (results := out.with_name(out.name + ".batch") / "results.jsonl").exists()]
        return (f"{where}: it is a table; a label run's results are in OUTPUT.batch/results.jsonl beside its "
                f"output{f': batchrun report {found[0]}' if found else ''}")
    with contextlib.suppress(OSError, orjson.JSONDecodeError, StopIteration):
        with path.open("rb") as f:
            first = orjson.loads(next(line for line in f if line.strip()))
        if isinstance(first, dict) and ("body" in first or "messages" in first or "input" in first):
            return f"{where}: it is an input file of requests; a run's results are in {default_output_path(path)} by default"
    return where


# What a run's own report says of it that its output lines do not: how it ended, what it ran, how
# it was paced, its cap.
_RUN_FACTS = ("status", "exit_code", "stop_reason", "input", "options", "max_cost", "pacing", "wall_time_s",
              "simulated")


def run_facts(output: Path) -> dict[str, Any]:
    """The facts of the run that published ``output``, from the report beside it when that
    report is of this very file (its size); ``{}`` for another tool's file or a changed one."""
    try:
        run = orjson.loads(report_path_for(output).read_bytes())
        size = output.stat().st_size
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(run, dict) or run.get("output_bytes") != size:
        return {}
    return {key: run[key] for key in _RUN_FACTS if key in run}


ESTIMATE_EXAMPLES = """
\b
Examples:
  batchrun estimate requests.jsonl
  batchrun estimate requests.jsonl --json > estimate.json
  batchrun estimate requests.jsonl --prices our-prices.json --default-max-tokens 1000
  batchrun estimate tonight.jsonl --like last-night.report.json --cache   # a nightly job

\b
Checks every line as a run would (JSON, envelope fields, duplicate custom_ids,
stream=true) and that each request names a model; every bad line is printed with its
file:line. Nothing is sent. The cost range: low = estimated input tokens at the input
price; high = that plus each request's max_tokens / max_completion_tokens /
max_output_tokens at the output price (--default-max-tokens when it sets none). Each
range is shown sent online, through the provider's Batch API (50% of online) and with
--tier flex; the expected figure assumes typical answers, or with --like REPORT a previous
run's mean answer per model. With --cache, the requests the response cache already
answers cost nothing, and the saving is shown.

\b
Exit codes: 0 every line is fine, 2 the file cannot be read or has bad lines (or
--like names no report).
"""


@main.command(epilog=ESTIMATE_EXAMPLES)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("--prices", "prices_path", metavar="FILE", type=click.Path(path_type=Path),
              help="Price file (JSON or TOML) overriding or extending the built-in table.")
@click.option("--batch-discount", is_flag=True,
              help="Price the main cost range at the OpenAI Batch API's 50% discount too (the Batch API range "
                   "is always shown).")
@click.option("--default-max-tokens", type=Bounded(Bounds(0, 10_000_000, whole=True)), default=None,
              help="Output tokens assumed for a request that sets no max_tokens. [default: 4096]")
@click.option("--like", "like_path", metavar="REPORT", type=click.Path(path_type=Path),
              help="Expect each model's answers to be as long as in this previous run's report (its .report.json, "
                   "or batchrun report --json), each within its request's cap.")
@cache_option("Count the requests the response cache in DIR already answers (as a run with --cache would find "
              "them, for --base-url): they cost nothing; show what that saves. Nothing is written there. "
              "Default: off; --cache alone: $XDG_CACHE_HOME/batchrun, else ~/.cache/batchrun.")
@base_url_option("With --cache: the endpoint the run would send to (a cached answer is kept per endpoint).")
@click.option("--mock", is_flag=True,
              help="With --cache: count the answers kept by runs with --mock (the built-in simulator's).")
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON (schema batchrun.estimate/1).")
def estimate(input_path: Path, prices_path: Path | None, batch_discount: bool, default_max_tokens: int | None,
             like_path: Path | None, cache: Path | None, base_url: str, mock: bool, as_json: bool) -> None:
    """Check every line of INPUT and estimate its tokens and cost, before anything is sent."""
    from ..accounting.estimate import PROBLEM_LINES_KEPT, Problem, estimate_file
    from ..accounting.like import load_like
    from ..accounting.pricing import load_prices
    from ..cache.source import CacheView, view_cache
    from ..cache.store import CacheBroken
    from ..config import split_base_url
    from ..tokens import DEFAULT_MAX_OUTPUT_TOKENS
    from .tables import render_estimate

    shown = 0

    def show(problem: Problem) -> None:
        nonlocal shown
        if shown < PROBLEMS_SHOWN:
            click.echo(f"batchrun: {problem.message}", err=True)
            shown += 1

    prices = load_prices(prices_path, batch_discount=batch_discount)
    cap = DEFAULT_MAX_OUTPUT_TOKENS if default_max_tokens is None else default_max_tokens
    like = None if like_path is None else load_like(like_path)
    held: CacheView | None = None
    unread = None
    if cache is not None:
        try:
            held = view_cache(cache, split_base_url(base_url)[0], mock=mock)
        except CacheBroken as exc:  # a run would start a cache there: it holds nothing yet
            unread = f"the response cache was not read ({exc}): no request is counted as cached"
    try:
        result = estimate_file(input_path, prices, default_max_output=cap, on_problem=show, like=like, cache=held,
                               cache_dir=None if cache is None else str(cache))
    finally:
        if held is not None:
            held.close()
    if unread is not None:
        result.cache_warnings.append(unread)
    doc = result.to_dict()
    _print_document(doc, render_estimate(doc), as_json, doc["warnings"])
    if result.problems:
        if (more := result.problems - shown) > 0:
            click.echo(f"batchrun: … and {more:,} more bad lines (--json lists the first {PROBLEM_LINES_KEPT:,})",
                       err=True)
        click.echo(f"batchrun: {result.problems:,} of {result.lines:,} lines would not be sent as they are",
                   err=True)
        if input_path.suffix.lower() in (".csv", ".tsv"):
            click.echo(f"batchrun: {input_path.name} is a table, and estimate reads JSONL requests: did you mean "
                       f"`batchrun label {input_path} -t TEMPLATE --dry-run` (its requests and their cost)?", err=True)
        sys.exit(EXIT_USAGE)


PROBLEMS_SHOWN = 20  # bad lines printed one by one; the rest are counted


def _print_document(doc: dict[str, object], table: str, as_json: bool, warnings: list[str]) -> None:
    """A report, comparison or estimate on stdout: the table, or the JSON with its warnings also on stderr."""
    if not as_json:
        click.echo(table)
        return
    import orjson

    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    for note in warnings:
        click.echo(f"batchrun: warning: {note}", err=True)
