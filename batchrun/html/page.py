"""Fill the report template: one run (`render_run`) or runs side by side (`render_compare`).

Everything the page shows that came from the data — custom_ids, error messages, model names,
paths — goes through Jinja2's autoescape; only the charts' SVG, which matplotlib wrote, is
inserted as it is.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jinja2

from ..accounting.compare import compare
from ..output_cap import ADVICE
from ..plural import counted
from . import charts

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("batchrun.html", "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["counted"] = counted
_ENV.filters["usd"] = lambda v: "unknown" if v is None else f"${v:,.4f}"
_ENV.filters["num"] = lambda v: "—" if v is None else f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"
_ENV.filters["when"] = lambda v: "—" if v is None else datetime.datetime.fromtimestamp(
    v, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def endpoint(url: str) -> str:
    """``url`` without its userinfo and query (where a key could be), as the page shows it."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def render_run(doc: dict[str, Any], *, latency_histogram: dict[str, Any] | None = None,
               max_cost: float | None = None) -> str:
    """One run's page from its report document (``Report.to_dict``, or a run's report JSON);
    ``latency_histogram``: the report's `LogHistogram.state`, for the latency distribution."""
    timeline = doc.get("timeline")
    if timeline is not None and not timeline.get("buckets"):
        timeline = None
    models = doc.get("models", {})
    figures: dict[str, str] = {}
    if timeline is not None:
        figures["throughput"] = charts.throughput(timeline, "throughput")
        if "in_flight" in timeline["buckets"][0]:  # not in a report written before it was kept
            limit = (doc.get("pacing") or {}).get("concurrency")
            figures["in_flight"] = charts.in_flight(timeline, limit, "in-flight")
        figures["latency_over_time"] = charts.latency_over_time(timeline, "latency-time")
        figures["spend"] = charts.spend(timeline, max_cost, "spend")
    if latency_histogram is not None and doc.get("latency_ms"):
        figures["latency"] = charts.latency_distribution(latency_histogram, doc["latency_ms"], "latency")
    if models:
        figures["tokens"] = charts.stacked_tokens(list(models), [m["tokens"] for m in models.values()], "tokens")
    options = dict(doc.get("options") or {})
    base_url = options.pop("base_url", None)
    return _ENV.get_template("run.html.j2").render(
        doc=doc, timeline=timeline, figures=figures, max_cost=max_cost, options=options,
        endpoint=None if base_url is None else endpoint(base_url),
        parts={model: charts.token_parts(m["tokens"]) for model, m in models.items()},
        examples=doc.get("failure_examples") or {}, title=_label(doc, "batchrun report"),
        cut_examples=doc.get("output_cap_examples") or [], advice=ADVICE)


def render_compare(docs: Sequence[dict[str, Any]]) -> str:
    """Runs side by side, in the given order: cost, tokens, latency percentiles, failure rate,
    duration (`accounting.compare`, as the terminal shows them)."""
    runs = compare(docs)["runs"]
    labels = [run["label"] for run in runs]
    shown = [run["figures"] for run in runs]
    rows: list[dict[str, Any]] = [{"label": run["label"], "doc": doc, "failure_rate": run["figures"]["failed_pct"],
                                   "duration": run["figures"]["duration_s"]} for run, doc in zip(runs, docs, strict=True)]
    figures = {
        "cost": charts.per_run(labels, {"cost": [f["cost_usd"] for f in shown]}, "USD", "cmp-cost"),
        "tokens": charts.stacked_tokens(labels, [doc["tokens"] for doc in docs], "cmp-tokens"),
        "latency": charts.per_run(labels, {key: [f[f"{key}_ms"] for f in shown] for key in ("p50", "p95", "p99")},
                                  "latency (ms)", "cmp-latency"),
        "failure_rate": charts.per_run(labels, {"failed": [f["failed_pct"] for f in shown]}, "% of lines failed",
                                       "cmp-failures"),
        "duration": charts.per_run(labels, {"duration": [f["duration_s"] for f in shown]}, "seconds", "cmp-duration"),
    }
    return _ENV.get_template("compare.html.j2").render(rows=rows, figures=figures, title="batchrun: runs compared")


def _label(doc: dict[str, Any], default: str) -> str:
    source = doc.get("source") or (doc.get("input") or {}).get("path")
    return str(source) if source else default
