"""``batchrun run``: every request line of a file, in order."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from ..batchapi.pending import Pending
from .engine_options import EngineOptions, engine_options, no_stdio
from .group import command_args, main
from .html_option import check_html_extra, check_html_path, html_option, write_run_page
from .routes import Route, exit_pending, route_options
from .summary import format_summary, outcome_line, up_to_date_line

RUN_EXAMPLES = """
\b
Examples:
  batchrun run samples/chat.jsonl --mock
  OPENAI_API_KEY=sk-... batchrun run requests.jsonl -o results.jsonl --concurrency 128
  batchrun run requests.jsonl --base-url http://127.0.0.1:8000/v1   # vLLM, llama.cpp, Ollama
  batchrun run requests.jsonl --via batch --detach    # the Batch API: half the price, within 24 h
  batchrun run eval.jsonl --cache     # nightly: what was answered before is not sent (batchrun cache --help)

\b
Input lines are OpenAI Batch envelopes ({"custom_id", "method", "url", "body"}) or bare
request bodies. Output has one line per input line, in input order, in the OpenAI Batch
output shape; failed lines also go to OUTPUT's sibling <name>.errors.jsonl.

\b
Exit codes: 0 all lines succeeded, 1 some lines failed, 2 usage or input error (nothing
sent), 3 stopped by --max-cost: the summary prints the command that continues (the same
one with a higher --max-cost), 4 stopped early (interrupted; the endpoint rejected the
API key, stayed down, or would fail every line: out of quota, no such path, nothing
listening): run the same command again to continue where it stopped.
"""


@main.command(epilog=RUN_EXAMPLES)
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path), callback=no_stdio("input"))
@click.option("-o", "--output", type=click.Path(path_type=Path), callback=no_stdio("output"),
              help="Results file. Default: INPUT with .jsonl replaced by .results.jsonl.")
@click.option("--model", "-m", metavar="NAME",
              help="Send every request with this model, whatever its line says (lines without one get it too).")
@click.option("--dry-run", is_flag=True, hidden=True, expose_value=False,
              callback=lambda ctx, param, value: value and _elsewhere(
                  "--dry-run", "`batchrun estimate INPUT` checks every line and estimates the cost, sending nothing"))
@click.option("--labels", hidden=True, expose_value=False,
              callback=lambda ctx, param, value: value is not None and _elsewhere(
                  "--labels", "`batchrun label DATA.csv -t TEMPLATE --labels A,B,...` labels the rows of a CSV "
                  "(with --dry-run, it shows their requests and cost first)"))
@html_option
@route_options
@engine_options
def run(input_path: Path, output: Path | None, model: str | None, html_path: Path | None, **engine: Any) -> None:
    """Run every request line of INPUT and write the ordered results."""
    check_html_extra(html_path)
    check_html_path(html_path)
    route = Route.take(engine)
    options = EngineOptions(**engine)
    options.setup_logging()
    with options.endpoint() as make_config:
        config = make_config(input_path, output, model=model)
        stats = route.run(options, config)
    if isinstance(stats, Pending):
        exit_pending(stats, options.quiet)
    report = str(config.report_path)
    if html_path is not None:
        write_run_page(html_path, config.report_path, stats, config.max_cost)
    if stats.up_to_date:
        if not options.quiet or stats.exit_code:
            click.echo(up_to_date_line(stats, report), err=True)
    elif not options.quiet:
        click.echo(format_summary(stats, report, command_args()), err=True)
    elif stats.exit_code:
        click.echo(outcome_line(stats, report), err=True)
    sys.exit(stats.exit_code)


def _elsewhere(option: str, hint: str) -> NoReturn:
    """An option of another command, given to ``run``: say which command has it."""
    raise click.UsageError(f"run has no {option}: {hint}")
