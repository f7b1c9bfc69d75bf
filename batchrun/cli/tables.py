"""Terminal layouts of the report and the estimate: summary lines and a fixed-width model table.

They read only the JSON documents (``batchrun.report/1`` from `accounting/report.py`,
``batchrun.estimate/1`` from `accounting/estimate.py`), so what the terminal shows and what the
JSON says cannot drift apart.
"""

from __future__ import annotations

import math
from typing import Any

from ..accounting.pricing import describe_prices

_NUMBER = 13  # column widths
_COST = 14
_REPORT_COLUMNS = ("prompt", "cached", "completion", "reasoning", "total")


def render_report(doc: dict[str, Any]) -> str:
    """A ``batchrun.report/1`` document as text for a terminal, without a trailing newline."""
    requests = doc["requests"]
    rows = [("requests", f"{doc['lines']:,} lines: {requests['succeeded']:,} succeeded, "
                         f"{requests['failed']:,} failed")]
    if requests["by_error_code"]:
        rows.append(("failures", ", ".join(f"{code} {n:,}" for code, n in requests["by_error_code"].items())))
    retries = "unknown (not recorded in this file)" if doc["retries"] is None else f"{doc['retries']:,}"
    rows.append(("retries", f"{retries}; 429s: {doc['rate_limited']:,}"))
    rows.append(("latency", _latency(doc["latency_ms"])))
    if doc.get("time_s"):
        rows.append(("time", f"{duration(doc['time_s']['on_the_wire'])} on the wire, "
                             f"{duration(doc['time_s']['waiting'])} waiting (pacing, backoff), summed over lines"))
    rows.append(("wall time", _wall(doc)))
    cost = doc["cost_usd"]
    rows.append(("cost", _usd(cost) if cost is not None
                 else f"unknown: {_usd(doc['cost_usd_priced'])} for the priced models, plus the unpriced"))
    header = ["requests", *_REPORT_COLUMNS]
    table = [(model, [entry["requests"], *(entry["tokens"][k] for k in _REPORT_COLUMNS)], _usd(entry["cost_usd"]))
             for model, entry in doc["models"].items()]
    total = [sum(entry["requests"] for entry in doc["models"].values()), *(doc["tokens"][k] for k in _REPORT_COLUMNS)]
    title = f"batchrun report on {doc['source']}" if doc.get("source") else "batchrun report"
    return _layout(title, rows, header, table, ("total", total, _usd(doc["cost_usd"])), doc)


def render_estimate(doc: dict[str, Any]) -> str:
    """A ``batchrun.estimate/1`` document as text for a terminal, without a trailing newline."""
    rows = [("requests", f"{doc['requests']:,} to send; problem lines: {doc['problems']:,}")]
    rows.append(("endpoints", ", ".join(f"{url} {n:,}" for url, n in doc["by_endpoint"].items()) or "none"))
    counts = ", ".join(f"{encoding} {how}" for encoding, how in doc["token_counts"].items())
    rows.append(("tokens", f"{doc['tokens']['input']:,} input (estimated{': ' + counts if counts else ''}); "
                           f"up to {doc['tokens']['output_cap']:,} output"))
    rows.append(("cost", _range(doc["cost_usd"]) if doc["cost_usd"] is not None
                 else f"unknown: {_range(doc['cost_usd_priced'])} for the priced models, plus the unpriced"))
    header = ["requests", "input", "output cap", "no cap"]
    table = [(model, [m["requests"], m["input_tokens"], m["output_cap_tokens"], m["requests_without_cap"]],
              _range(m["cost_usd"])) for model, m in doc["models"].items()]
    models = doc["models"].values()
    total = [sum(m["requests"] for m in models), doc["tokens"]["input"], doc["tokens"]["output_cap"],
             sum(m["requests_without_cap"] for m in models)]
    return _layout(f"batchrun estimate for {doc['source']}", rows, header, table,
                   ("total", total, _range(doc["cost_usd"])), doc, cost_title="cost USD low-high")


def _layout(title: str, rows: list[tuple[str, str]], header: list[str],
            table: list[tuple[str, list[int], str]], total: tuple[str, list[int], str], doc: dict[str, Any],
            cost_title: str = "cost USD") -> str:
    lines = [title, *(f"  {label:<10}  {text}" for label, text in rows), ""]
    name_width = max([len("model"), *(len(name) for name, _, _ in table)]) + 2
    cost_width = max([_COST, len(cost_title) + 2, *(len(cost) + 2 for _, _, cost in [*table, total])])
    head = f"  {'model':<{name_width}}" + "".join(f"{h:>{_NUMBER}}" for h in header) + f"{cost_title:>{cost_width}}"
    lines += [head, "  " + "-" * (len(head) - 2)]
    for name, numbers, cost in [*table, total] if len(table) != 1 else table:
        lines.append(f"  {name:<{name_width}}" + "".join(f"{n:>{_NUMBER},}" for n in numbers) + f"{cost:>{cost_width}}")
    lines += ["", describe_prices(doc["prices"]) + " (USD per 1M tokens: input, cached input, output)"]
    lines += [f"warning: {note}" for note in doc["warnings"]]
    return "\n".join(lines)


def _latency(latency: dict[str, Any] | None) -> str:
    if latency is None:
        return "unknown (not recorded in this file)"
    return (f"p50 {_ms(latency['p50'])} · p95 {_ms(latency['p95'])} · p99 {_ms(latency['p99'])} · "
            f"max {_ms(latency['max'])}  (n={latency['count']:,}, ±{latency['relative_error']:.1%})")


def _wall(doc: dict[str, Any]) -> str:
    wall = doc["wall_time_s"]
    if wall is None:
        return "unknown (not recorded in this file)"
    return f"{duration(wall)} · {doc['throughput_rps']:,.1f} req/s · {doc['tokens_per_s']:,.0f} tokens/s"


def _usd(value: float | None) -> str:
    if value is None:
        return "unknown"
    if 0 < value < 0.0001:  # never shown as $0: zero means free
        return "<$0.0001"
    if 0 < value < 0.01:  # three significant digits
        return f"${value:.{2 - math.floor(math.log10(value))}f}"
    return f"${value:,.4f}"


def _range(cost: dict[str, float] | None) -> str:
    return "unknown" if cost is None else f"{_usd(cost['low'])} - {_usd(cost['high'])}"


def _ms(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.2f} s"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def duration(value: float) -> str:
    """A time span for people: ``12.3 s`` under two minutes, then ``3m05s``, ``1h02m03s``. The
    progress bar's own (tqdm's ``05:12``) is tqdm's to draw."""
    if value < 120:
        return f"{value:,.1f} s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
