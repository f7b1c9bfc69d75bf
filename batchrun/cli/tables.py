"""Terminal layouts of the report and the estimate: summary lines and a fixed-width model table.

They read only the JSON documents (``batchrun.report/1`` from `accounting/report.py`,
``batchrun.estimate/1`` from `accounting/estimate.py`), so what the terminal shows and what the
JSON says cannot drift apart.
"""

from __future__ import annotations

import textwrap
from typing import Any

from ..accounting.pricing import BATCH_DISCOUNT, describe_prices
from ..money import usd
from ..output_cap import ADVICE
from ..plural import counted

WIDTH = 80  # what every line printed to a terminal fits in
_LABEL = 14  # where a summary row's text starts: "  " + a 10-wide label + "  "
_MIN_NAME = 12  # a model name is never cut shorter than this
_CUT_EXAMPLES = 3  # custom_ids named of the answers the output cap cut (the JSON and the page have 5)


def render_report(doc: dict[str, Any]) -> str:
    """A ``batchrun.report/1`` document as text for a terminal, without a trailing newline."""
    requests = doc["requests"]
    rows = [("requests", f"{counted(doc['lines'], 'line')}: {requests['succeeded']:,} succeeded, "
                         f"{requests['failed']:,} failed")]
    if requests["by_error_code"]:
        rows.append(("failures", ", ".join(f"{code} {n:,}" for code, n in requests["by_error_code"].items())))
    if doc["hit_output_cap"]:
        rows.append(("output cap", _output_cap(doc)))
    retries = "unknown (not recorded in this file)" if doc["retries"] is None else f"{doc['retries']:,}"
    rate_limited = doc["rate_limited"]
    rows.append(("retries", f"{retries}; {counted(rate_limited, 'answer')} {'was' if rate_limited == 1 else 'were'} "
                            "429"))
    tokens = doc["tokens"]
    rows.append(("tokens", f"{tokens['total']:,}: {tokens['prompt']:,} prompt ({tokens['cached']:,} cached), "
                           f"{tokens['completion']:,} completion ({tokens['reasoning']:,} reasoning)"))
    rows.append(("latency", _latency(doc["latency_ms"])))
    if doc.get("time_s") and doc["latency_ms"]:
        # Means, not the sums: summed over lines that overlap, hours pass in a minute's run.
        lines, time_s = doc["latency_ms"]["count"], doc["time_s"]
        rows.append(("time", f"per line, on average: {_ms(1000 * time_s['on_the_wire'] / lines)} on the wire, "
                             f"{_ms(1000 * time_s['waiting'] / lines)} waiting to be sent (pacing, backoff)"))
    rows.append(("wall time", _wall(doc)))
    cost = doc["cost_usd"]
    rows.append(("cost", usd(cost) if cost is not None
                 else f"unknown: {usd(doc['cost_usd_priced'])} for the priced models, plus the unpriced"))
    if doc["batch_api"] is not None:
        rows.append(("Batch API", _batch_api(doc["batch_api"], doc["lines"])))
    rows += _tiers(doc)
    header = ["requests", "prompt", "completion"]
    table = [(model, [entry["requests"], entry["tokens"]["prompt"], entry["tokens"]["completion"]],
              usd(entry["cost_usd"])) for model, entry in doc["models"].items()]
    total = [sum(entry["requests"] for entry in doc["models"].values()), tokens["prompt"], tokens["completion"]]
    title = f"batchrun report on {doc['source']}" if doc.get("source") else "batchrun report"
    return _layout(title, rows, header, table, ("total", total, usd(doc["cost_usd"])), doc)


def render_estimate(doc: dict[str, Any]) -> str:
    """A ``batchrun.estimate/1`` document as text for a terminal, without a trailing newline."""
    rows = [("requests", f"{doc['requests']:,} to send; problem lines: {doc['problems']:,}")]
    rows.append(("endpoints", ", ".join(f"{url} {n:,}" for url, n in doc["by_endpoint"].items()) or "none"))
    counts = ", ".join(f"{encoding} {how}" for encoding, how in doc["token_counts"].items())
    rows.append(("tokens", f"{doc['tokens']['input']:,} input (estimated{': ' + counts if counts else ''}); "
                           f"up to {doc['tokens']['output_cap']:,} output, {doc['tokens']['output_expected']:,} "
                           "expected"))
    sent = "at the Batch API's price (--batch-discount)" if doc["prices"]["batch_discount"] else "sent online"
    cache = doc.get("cache")  # a label --dry-run asks no cache
    if cache is not None:
        saved = cache["saved_usd"]
        rows.append(("cache", f"{cache['requests']:,} of {counted(doc['requests'], 'request')} already answered in "
                              f"{cache['dir']}, at $0: saving {_range(saved['online'])} online, "
                              f"{_range(saved['batch_api'])} Batch API, {_range(saved['flex'])} flex; the costs "
                              "below are the other requests'"))
    rows.append(("cost", f"{_cost_range(doc)} {sent}"))
    rows.append(("Batch API", f"{_cost_range(doc['batch_api'])} ({BATCH_DISCOUNT:.0%} of the online price)"))
    rows.append(("expected", _expected_row(doc, sent)))
    if doc["flex"]["requests"]:
        rows.append(("flex", f"{_cost_range(doc['flex'])} with --tier flex ({counted(doc['flex']['requests'], 'request')} "
                             "at the Batch API's price, the rest online)"))
    if doc["batch_api"].get("batches"):  # an estimate of a file; a label --dry-run counts none
        queue = ", ".join(f"{tokens:,} {model}" for model, tokens in doc["batch_api"]["queue_tokens"].items())
        rows.append(("batches", f"{doc['batch_api']['batches']:,} with --via batch, enqueuing {queue} tokens in all "
                                "(a lower queue limit: --batch-queue-tokens submits them in turn)"))
    header = ["requests", "input", "output cap", "no cap"]
    table = [(model, [m["requests"], m["input_tokens"], m["output_cap_tokens"], m["requests_without_cap"]],
              _range(m["cost_usd"])) for model, m in doc["models"].items()]
    models = doc["models"].values()
    total = [sum(m["requests"] for m in models), doc["tokens"]["input"], doc["tokens"]["output_cap"],
             sum(m["requests_without_cap"] for m in models)]
    return _layout(f"batchrun estimate for {doc['source']}", rows, header, table,
                   ("total", total, _range(doc["cost_usd"])), doc, cost_title="cost USD low-high")


def render_comparison(doc: dict[str, Any]) -> str:
    """A ``batchrun.compare/1`` document as text for a terminal: the runs named whole, then a row
    per run by its number, and under each run after the first its change against the first."""
    runs = doc["runs"]
    header = ["lines", "failed", "tokens", "cost USD", "p50", "p95", "time"]
    table = []
    for number, run in enumerate(runs, 1):
        table.append((f"{number}.", _compare_cells(run["figures"], change=False)))
        if run["change"] is not None:
            table.append(("change", _compare_cells(run["change"], change=True)))
    widths = [max(len(h), *(len(cells[i]) for _, cells in table)) + 2 for i, h in enumerate(header)]
    head = f"  {'run':<8}" + "".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
    lines = [f"batchrun: {counted(len(runs), 'run')} compared, each change against the first",
             # whole, on a line of its own: a path is never cut, so it can be copied
             *(f"  {number}. {run['source']}" if run["source"] else f"  {run['label']}"
               for number, run in enumerate(runs, 1)),
             "", head, "  " + "-" * (len(head) - 2)]
    lines += [f"  {name:<8}" + "".join(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True))
              for name, cells in table]
    lines += [fit(f"warning: {note}", 2) for note in doc["warnings"]]
    return "\n".join(lines)


def _compare_cells(figures: dict[str, Any], *, change: bool) -> list[str]:
    """The figures of one row of `render_comparison`: a run's, or (``change``) signed differences."""
    failed = figures["failed_pct"]
    cells = [f"{figures['lines']:+,}" if change else f"{figures['lines']:,}",
             "-" if failed is None else f"{failed:+.1f} pt" if change else f"{failed:.1f}%",
             f"{figures['tokens']:+,}" if change else f"{figures['tokens']:,}"]
    for key, text in (("cost_usd", usd), ("p50_ms", _ms), ("p95_ms", _ms), ("duration_s", duration)):
        value = figures[key]
        if value is None:
            cells.append("-")
        else:
            cells.append(("-" if value < 0 else "+") + text(abs(value)) if change else text(value))
    return cells


def fit(line: str, indent: int = 0) -> str:
    """``line`` wrapped at spaces to `WIDTH`, continued ``indent`` spaces in. A word is never cut:
    a path longer than a whole line keeps its line to itself, so it can still be copied."""
    return textwrap.fill(line, WIDTH, subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False)


def _layout(title: str, rows: list[tuple[str, str]], header: list[str],
            table: list[tuple[str, list[int], str]], total: tuple[str, list[int], str], doc: dict[str, Any],
            cost_title: str = "cost USD") -> str:
    lines = [fit(title, 2), *(fit(f"  {label:<10}  {text}", _LABEL) for label, text in rows), ""]
    shown = [*table, total] if len(table) != 1 else table
    widths = [max(len(h), *(len(f"{numbers[i]:,}") for _, numbers, _ in shown)) + 2 for i, h in enumerate(header)]
    cost_width = max(len(cost_title), *(len(cost) for _, _, cost in shown)) + 2
    room = WIDTH - 2 - sum(widths) - cost_width
    name_width = max(len("model"), _MIN_NAME, min(room, max(len(name) for name, _, _ in shown) + 2))
    head = (f"  {'model':<{name_width}}" + "".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True))
            + f"{cost_title:>{cost_width}}")
    lines += [head, "  " + "-" * (len(head) - 2)]
    for name, numbers, cost in shown:
        lines.append(f"  {_shorten(name, name_width - 2):<{name_width}}"
                     + "".join(f"{n:>{w},}" for n, w in zip(numbers, widths, strict=True)) + f"{cost:>{cost_width}}")
    lines += ["", fit(describe_prices(doc["prices"]) + " (USD per 1M tokens: input, cached input, output)", 2)]
    lines += [fit(f"warning: {note}", 2) for note in doc["warnings"]]
    return "\n".join(lines)


def _shorten(name: str, width: int) -> str:
    """A model name cut to ``width`` in the middle, where dated and fine-tuned names differ least
    (``ft:gpt-4o-mini-2024-07-18:acme::9xYz`` → ``ft:gpt-4o-m…cme::9xYz``); the report's JSON has it whole."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def _output_cap(doc: dict[str, Any]) -> str:
    examples = doc.get("output_cap_examples") or []  # a report written before they were kept has none
    named = f", such as {', '.join(examples[:_CUT_EXAMPLES])}" if examples else ""
    return (f"{doc['hit_output_cap']:,} of {counted(doc['lines'], 'answer')} stopped at the output cap (cut short "
            f"or empty){named}: {ADVICE}")


def _latency(latency: dict[str, Any] | None) -> str:
    if latency is None:
        return "unknown (not recorded in this file)"
    return (f"p50 {_ms(latency['p50'])} · p95 {_ms(latency['p95'])} · p99 {_ms(latency['p99'])} · "
            f"max {_ms(latency['max'])}  (n={latency['count']:,}, ±{latency['relative_error']:.1%})")


def _wall(doc: dict[str, Any]) -> str:
    wall = doc["wall_time_s"]
    if wall is None:
        return "unknown (not recorded in this file)"
    if doc["throughput_rps"] is None:
        return f"{duration(wall)}; no request sent online by this start"
    return f"{duration(wall)} · {doc['throughput_rps']:,.1f} req/s · {doc['tokens_per_s'] or 0:,.0f} tokens/s"


def _batch_api(batch: dict[str, Any], lines: int) -> str:
    saved = batch["saved_usd"]
    saving = f"saved {usd(saved)}" if saved is not None else "saving unknown: a model has no price"
    return f"{batch['lines']:,} of {lines:,} lines, priced at {BATCH_DISCOUNT:.0%} of online ({saving})"


def _tiers(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The rows of the service tiers (``--tier``), when a line's answer named one that is not the
    standard tier, or some line went through flex's refusals or fall back. (A report written
    before tiers were counted has none of these keys.)"""
    rows = []
    if doc.get("flex") is not None:
        rows.append(("flex", _batch_api(doc["flex"], doc["lines"])))
    tiers = doc.get("tiers") or {}
    if set(tiers) - {"default"} or doc.get("tier_fallback") or doc.get("capacity_refused"):
        text = ", ".join(f"{tier} {n:,}" for tier, n in tiers.items()) or "none named"
        if doc.get("capacity_refused"):
            text += f"; {counted(doc['capacity_refused'], 'refusal')} for capacity, retried"
        fallback = doc.get("tier_fallback")
        if fallback:
            cost = "cost unknown" if fallback["cost_usd"] is None else usd(fallback["cost_usd"])
            text += f"; {counted(fallback['lines'], 'line')} sent at the standard tier after flex ({cost})"
        rows.append(("tiers", text))
    return rows


def _cost_range(doc: dict[str, Any]) -> str:
    """The ``cost_usd`` range of an estimate, or of its ``batch_api`` part."""
    if doc["cost_usd"] is not None:
        return _range(doc["cost_usd"])
    return f"unknown: {_range(doc['cost_usd_priced'])} for the priced models, plus the unpriced;"


def _expected_row(doc: dict[str, Any], sent: str) -> str:
    """What an estimate expects on each route, and what it assumes of the answers' lengths."""
    flex = f", {_expected(doc['flex'])} flex" if doc["flex"]["requests"] else ""
    figures = f"{_expected(doc)} {sent}, {_expected(doc['batch_api'])} Batch API{flex}"
    typical = doc["expected_output"]
    assumed = (f"typical answers of {typical['answer_tokens']:,} output tokens, +{typical['reasoning_tokens']:,} "
               "reasoning for o-series and GPT-5")
    like = typical.get("like")
    if like is None:
        return f"{figures} (assumed: {assumed}, within each cap)"
    means = ", ".join(f"{model} {mean:,.0f}" for model, mean in like["mean_completion_tokens"].items())
    text = f"(like {like['report']}) {figures} (mean output tokens there: {means or 'none'}, within each cap"
    if like["assumed"]:
        text += f"; for {', '.join(like['assumed'])}, not in it: {assumed}"
    return text + ")"


def _expected(doc: dict[str, Any]) -> str:
    """The ``expected`` cost of an estimate, or of its ``batch_api`` part."""
    if doc["cost_usd"] is not None:
        return usd(doc["cost_usd"]["expected"])
    return f"{usd(doc['cost_usd_priced']['expected'])} for the priced models, plus the unpriced,"


def _range(cost: dict[str, float] | None) -> str:
    return "unknown" if cost is None else f"{usd(cost['low'])} - {usd(cost['high'])}"


def _ms(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.2f} s"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def duration(value: float) -> str:
    """A time span for people: ``12.3 s`` under two minutes, then ``3m05s``, ``1h02m03s``."""
    if value < 120:
        return f"{value:,.1f} s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
