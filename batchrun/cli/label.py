"""``batchrun label``: a dataset in, the same rows with the model's answers out."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..batchapi.pending import Pending
from ..plural import counted
from ..stats import EXIT_STOPPED, RunStats
from .engine_options import EngineOptions, engine_options, no_stdio
from .group import command_args, main
from .html_option import check_html_extra, check_html_path, html_option, write_run_page
from .routes import Route, exit_pending, route_options
from .summary import format_summary, outcome_line
from .tables import fit

if TYPE_CHECKING:
    from ..label.preview import Preview

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
  batchrun label reviews.csv -t sentiment.txt --labels positive,negative,neutral \\
      --via batch --detach     # the Batch API: half the price; the same command collects

\b
DATA is CSV or TSV with a header row, or JSONL objects (by extension), streamed.
A CSV's delimiter (, ; tab |) is told from its header, or given by --delimiter;
a CSV output in the data's format keeps it.
The output has the same rows in the same order, followed by the answer column(s):
  answer    the answer text (without --labels or --json-schema)
  label     with --labels: one of the labels, spelled as given
  <name>    with --json-schema: each top-level property of the schema
  _error    empty, or "<code>: <message>" when the row has no valid answer
            (invalid_label, invalid_json, schema_mismatch, no_answer, or the
            request's own error code such as rate_limit_exceeded)
  _raw      the answer text when it failed validation
CSV gives CSV, JSONL gives JSONL (each object kept as it was, the new keys
added), unless -o ends in .csv, .tsv or .jsonl. In CSV/TSV output a cell that
a spreadsheet would run as a formula (it starts with = + - @, a tab or a CR,
and is not a plain number like -1) gets a ' in front, header and data cells
too; --raw-cells writes them as given.

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
trailing period, {"label": ...}). It also caps the answer by default:
max_completion_tokens is the longest label's answer plus 4,096 tokens for a
reasoning model to think (--param max_completion_tokens=N or max_tokens=N sets
another; --dry-run shows it). --json-schema sends the schema and checks
answers against it (type, enum, const, properties, required,
additionalProperties, items, anyOf). Rows are checked before anything is sent:
a placeholder a row cannot fill, or a repeated --id-field, exits 2 naming rows.

\b
The batch is kept in OUT.batch/ beside the output (requests.jsonl,
results.jsonl). The rows are answered online, through the provider's Batch API
(--via batch, with --detach, --cancel, --batch-deadline as for batchrun run), or
as shards on Ray (--ray): the output is the same. Run the same command again to
continue after an interruption, or to collect batches still at the provider;
over a finished output it is up to date, and after rows were added or changed it
sends only those (with --id-field, matched by id and request). --retry-failed
sends the rows with an _error again, with the template and options as now given
(a fixed prompt), and keeps every answer; `batchrun report
OUT.batch/results.jsonl` shows usage and cost.

\b
Exit codes: 0 every row has an answer, 1 some rows have an _error, 2 usage or
data error (nothing sent), 3 stopped by --max-cost: the summary prints the command
that continues (the same one with a higher --max-cost), 4 stopped early
(interrupted): run the same command again to continue.
"""


@main.command(epilog=LABEL_EXAMPLES)
@click.argument("data_path", metavar="DATA", type=click.Path(path_type=Path), callback=no_stdio("input"))
@click.option("--template", "-t", "template_path", required=True, type=click.Path(path_type=Path),
              help="Prompt template file (formats below).")
@click.option("-o", "--output", type=click.Path(path_type=Path), callback=no_stdio("output"),
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
@click.option("--raw-cells", is_flag=True,
              help="Write CSV/TSV cells as given, even those a spreadsheet runs as formulas (= + - @ tab CR).")
@click.option("--delimiter", metavar="CHAR", callback=lambda ctx, param, value: _delimiter(value),
              help="The CSV/TSV data's delimiter: one character, or 'tab'. Default: a tab for .tsv; for .csv, "
                   "the one of , ; tab | that splits the header into the most columns.")
@click.option("--dry-run", is_flag=True, help="Check every row; show the first requests and the cost estimate.")
@html_option
@route_options
@engine_options
def label(data_path: Path, template_path: Path, output: Path | None, model: str, system: str | None,
          labels: str | None, schema_path: Path | None, params: tuple[str, ...], id_field: str | None,
          no_response_format: bool, raw_cells: bool, delimiter: str | None, dry_run: bool, html_path: Path | None,
          **engine: Any) -> None:
    """Ask a model about every row of DATA; write the rows with its answers as new columns."""
    from ..accounting.pricing import load_prices
    from ..label import LabelJob, LabelRun, preview

    check_html_extra(html_path)
    check_html_path(html_path)
    route = Route.take(engine)
    options = EngineOptions(**engine)
    options.setup_logging()
    job = LabelJob.from_files(data_path, template_path, output_path=output, model=model, system=system,
                              labels=labels, schema_path=schema_path, params=params, id_field=id_field,
                              response_format=not no_response_format, raw_cells=raw_cells, delimiter=delimiter)
    if dry_run:
        prices = load_prices(options.prices_path, batch_discount=options.batch_discount)  # both prices are shown
        click.echo(_preview_text(preview(job, prices=prices), job.spec.default_cap))
        return
    config = None
    stats: RunStats | Pending | None = None
    try:
        with options.endpoint() as make_config, LabelRun(job, make_config) as labeling:
            config = labeling.prepare()
            stats = route.run(options, config, labeling.sources) if config is not None else None
            # Batches still at the provider: nothing to join yet.
            outcome = None if isinstance(stats, Pending) else labeling.finish(stats)
    except KeyboardInterrupt:  # while rendering or joining: the engine handles its own signals
        click.echo("\nbatchrun: interrupted; run the same command again to continue", err=True)
        sys.exit(EXIT_STOPPED)
    if isinstance(stats, Pending):
        exit_pending(stats, options.quiet)
    assert outcome is not None
    if html_path is not None:
        write_run_page(html_path, labeling.config.report_path, stats, options.max_cost)
    counts = outcome.counts
    labeled = None
    if counts is not None:
        failures = ", ".join(f"{code} {n:,}" for code, n in counts.errors.most_common())
        labeled = (f"labeled {counted(counts.rows, 'row')} into {outcome.output_path}: {counts.ok:,} answered, "
                   f"{counts.failed:,} with an _error{f' ({failures})' if failures else ''}")
    if labeling.up_to_date and not options.quiet:
        click.echo(fit(f"batchrun: {outcome.output_path} is up to date: these rows were already labeled with this "
                       "template and these options; nothing was sent", 2), err=True)
    if not options.quiet:
        if config is not None and stats is not None:
            click.echo(format_summary(stats, str(config.report_path), command_args()), err=True)
        if labeled is not None:
            click.echo(fit(labeled, 2), err=True)
    if outcome.stopped is not None:
        click.echo(f"batchrun: {outcome.stopped}", err=True)
    elif options.quiet and outcome.exit_code:  # one line all the same
        if labeled is not None:
            click.echo(f"batchrun: {labeled}", err=True)
        elif config is not None and stats is not None:
            click.echo(outcome_line(stats, str(config.report_path)), err=True)
    sys.exit(outcome.exit_code)


def _preview_text(shown: Preview, default_cap: int | None) -> str:
    """The requests as a person checks a template (each message's text as it is, then the
    other body fields as JSON), the output cap set by default, then the estimate's table; no
    trailing newline."""
    import orjson

    from ..label.answers import REASONING_ROOM
    from .tables import render_estimate

    parts = []
    for request in shown.requests:
        parts.append(f"--- custom_id {request.custom_id} (row {request.row.number}, line {request.row.line}) ---")
        parts.extend(f"[{message['role']}]\n{message['content']}" for message in request.body["messages"])
        rest = {name: value for name, value in request.body.items() if name != "messages"}
        parts.append(f"[other fields]\n{orjson.dumps(rest).decode()}\n")
    if default_cap is not None:
        parts.append(fit(f"max_completion_tokens {default_cap:,} by default: the longest label's answer, and "
                         f"{REASONING_ROOM:,} tokens for a reasoning model to think; --param max_completion_tokens=N "
                         "(or max_tokens=N) sets another cap", 2) + "\n")
    parts.append(render_estimate(shown.estimate.to_dict()))
    return "\n".join(parts)


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    if value.lower() in ("tab", "\\t"):
        return "\t"
    if len(value) != 1 or value in "\"\r\n":
        raise click.BadParameter(f"{value!r} is not one character (other than a quote or a line break), or 'tab'")
    return value
