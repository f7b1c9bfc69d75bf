"""The report's charts, drawn by matplotlib as SVG text to inline in the page.

SVG, not a script-driven chart: the page needs no JavaScript, opens offline as fast as plain
HTML, and prints as vectors. Text stays text (``svg.fonttype: none``), so it is escaped by
matplotlib's SVG writer like any XML, and searchable in the page.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("svg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

# Typed loosely: matplotlib types rc keys as a Literal of every known name.
_STYLE: dict[Any, Any] = {"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "figure.dpi": 96}
_WIDTH = 9.0
# Plain numbers with thousands separators, also on log axes (not 4×10¹, not 1e6).
_PLAIN = FuncFormatter(lambda value, _: f"{value:,.10g}")
_TOKEN_PARTS = ("input", "cached", "output", "reasoning")
_MARKS = (("rate_limited", "429", "#d62728"), ("retries", "retry", "#ff7f0e"), ("failed", "failed", "#7f0000"))


def _svg(fig: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element; ``name`` salts its element ids, unique within the page."""
    buffer = io.StringIO()
    salt: dict[Any, Any] = {"svg.hashsalt": name}
    with plt.rc_context(salt):
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _figure(height: float = 2.8) -> tuple[Figure, Axes]:
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(_WIDTH, height))
    ax.grid(alpha=0.3)
    return fig, ax


def throughput(timeline: dict[str, Any], name: str) -> str:
    """Lines/s and tokens/s per bucket, with the buckets that had 429s, retries and failures marked
    along the top of the same time axis."""
    with plt.rc_context(_STYLE):
        fig, ax = _figure(3.2)
        buckets, width = timeline["buckets"], float(timeline["bucket_s"]) or 1.0
        t = [b["t"] for b in buckets]
        ax.plot(t, [b["lines"] / width for b in buckets], color="#1f77b4", label="lines/s")
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("lines/s", color="#1f77b4")
        ax.set_ylim(bottom=0, top=max([b["lines"] / width for b in buckets] + [1]) * 1.3)
        tokens = ax.twinx()
        tokens.plot(t, [b["tokens"] / width for b in buckets], color="#2ca02c", label="tokens/s")
        tokens.set_ylabel("tokens/s", color="#2ca02c")
        tokens.yaxis.set_major_formatter(_PLAIN)
        tokens.set_ylim(bottom=0, top=max([b["tokens"] / width for b in buckets] + [1]) * 1.3)
        for row, (key, label, colour) in enumerate(_MARKS):
            hits = [(b["t"], b[key]) for b in buckets if b.get(key)]
            if hits:
                top = max(n for _, n in hits)
                ax.scatter([x for x, _ in hits], [0.97 - 0.05 * row] * len(hits), transform=ax.get_xaxis_transform(),
                           s=[12 + 60 * n / top for _, n in hits], marker="|", color=colour,
                           label=f"{label} ({sum(n for _, n in hits):,})")
        handles = ax.get_legend_handles_labels()
        more = tokens.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", bbox_to_anchor=(0, 1), fontsize=8, ncol=5,
                  frameon=False)
        return _svg(fig, name)


def in_flight(timeline: dict[str, Any], limit: int | None, name: str) -> str:
    """Requests in flight per bucket (on average over it), against the run's in-flight limit when
    it is known, and the seconds the lines finished in each bucket waited to be sent."""
    with plt.rc_context(_STYLE):
        fig, ax = _figure()
        buckets = timeline["buckets"]
        t = [b["t"] for b in buckets]
        ax.plot(t, [b["in_flight"] for b in buckets], color="#1f77b4", label="in flight")
        if limit is not None:
            ax.axhline(limit, color="#d62728", linestyle="--", label=f"in-flight limit {limit:,}")
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("requests in flight", color="#1f77b4")
        ax.set_ylim(bottom=0, top=max([b["in_flight"] for b in buckets] + [limit or 0, 1]) * 1.15)
        waited = ax.twinx()
        waited.fill_between(t, [b["waited_s"] for b in buckets], color="#ff7f0e", alpha=0.35, linewidth=0,
                            label="waited (s)")
        waited.set_ylabel("seconds waited (pacing, breaker, backoff)", color="#ff7f0e")
        waited.yaxis.set_major_formatter(_PLAIN)
        waited.set_ylim(bottom=0, top=max([b["waited_s"] for b in buckets] + [1]) * 1.15)
        handles = ax.get_legend_handles_labels()
        more = waited.get_legend_handles_labels()
        ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", bbox_to_anchor=(0, 1), fontsize=8, ncol=3,
                  frameon=False)
        return _svg(fig, name)


def latency_distribution(histogram: dict[str, Any], percentiles: dict[str, Any], name: str) -> str:
    """The latency histogram (the report's log buckets, merged to about 60 bars) on a log axis,
    with p50, p95 and p99 marked."""
    gamma = (1 + histogram["relative_error"]) / (1 - histogram["relative_error"])
    counts = sorted((int(k), int(n)) for k, n in histogram["buckets"])
    with plt.rc_context(_STYLE):
        fig, ax = _figure()
        if counts:
            low, high = counts[0][0] - 1, counts[-1][0]
            step = max(1, math.ceil((high - low) / 60))
            merged: dict[int, int] = {}
            for key, n in counts:  # bucket ``key`` spans (gamma**(key-1), gamma**key]
                start = low + (key - low - 1) // step * step
                merged[start] = merged.get(start, 0) + n
            left = [gamma**k for k in merged]
            right = [gamma ** (k + step) for k in merged]
            ax.bar(left, list(merged.values()), width=[r - x for x, r in zip(left, right, strict=True)], align="edge",
                   color="#9ecae1", edgecolor="#6baed6")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(_PLAIN)
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}" if str(value)[0] in "2358" else ""))
        for mark, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e"), ("p99", "#d62728")):
            value = percentiles.get(mark)
            if value:
                ax.axvline(value, color=colour, linestyle="--", label=f"{mark} {value:,.0f} ms")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("lines")
        ax.legend(fontsize=8)
        return _svg(fig, name)


def latency_over_time(timeline: dict[str, Any], name: str) -> str:
    """Each bucket's p50 and p95 latency."""
    with plt.rc_context(_STYLE):
        fig, ax = _figure()
        buckets = timeline["buckets"]
        for key, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e")):
            points = [(b["t"], b["latency_ms"][key]) for b in buckets if b["latency_ms"].get(key) is not None]
            ax.plot([x for x, _ in points], [y for _, y in points], color=colour, marker=".", label=key)
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        return _svg(fig, name)


def token_parts(tokens: dict[str, Any]) -> dict[str, int]:
    """Input (uncached), cached input, output (not reasoning) and reasoning tokens: the parts that
    add up to the total, each priced on its own."""
    return {"input": tokens["prompt"] - tokens["cached"], "cached": tokens["cached"],
            "output": tokens["completion"] - tokens["reasoning"], "reasoning": tokens["reasoning"]}


def stacked_tokens(labels: Sequence[str], tokens: Sequence[dict[str, Any]], name: str) -> str:
    """Tokens per model (or run), stacked by part, on horizontal bars in the given order."""
    with plt.rc_context(_STYLE):
        fig, ax = _figure(max(1.4, 0.45 * len(labels) + 0.9))
        left = [0] * len(labels)
        parts = [token_parts(t) for t in tokens]
        for part in _TOKEN_PARTS:
            values = [p[part] for p in parts]
            ax.barh(range(len(labels)), values, left=left, label=part)
            left = [a + b for a, b in zip(left, values, strict=True)]
        ax.set_yticks(range(len(labels)), list(labels))
        ax.invert_yaxis()
        ax.set_xlabel("tokens")
        ax.xaxis.set_major_formatter(_PLAIN)
        ax.legend(fontsize=8, ncol=4, loc="lower left", bbox_to_anchor=(0, 1), frameon=False)
        return _svg(fig, name)


def spend(timeline: dict[str, Any], max_cost: float | None, name: str) -> str:
    """Cumulative cost over time, against ``max_cost`` when the run had one."""
    with plt.rc_context(_STYLE):
        fig, ax = _figure()
        total, points = 0.0, [(0.0, 0.0)]
        for b in timeline["buckets"]:
            total += b.get("cost_usd") or 0.0
            points.append((b["t"] + float(timeline["bucket_s"]), total))
        ax.plot([x for x, _ in points], [y for _, y in points], color="#9467bd", label="spent")
        if max_cost is not None:
            ax.axhline(max_cost, color="#d62728", linestyle="--", label=f"--max-cost ${max_cost:,.2f}")
        ax.set_xlabel("seconds from start")
        ax.set_ylabel("USD")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        return _svg(fig, name)


def per_run(labels: Sequence[str], series: dict[str, Sequence[float | None]], ylabel: str, name: str) -> str:
    """One or more values per run, as lines across the runs in the given order."""
    with plt.rc_context(_STYLE):
        fig, ax = _figure(2.4)
        x = list(range(len(labels)))
        for label, values in series.items():
            points = [(i, v) for i, v in zip(x, values, strict=True) if v is not None]
            ax.plot([i for i, _ in points], [v for _, v in points], marker="o", label=label)
        ax.set_xticks(x, list(labels), rotation=20 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(_PLAIN)
        ax.set_ylim(bottom=0)
        if len(series) > 1:
            ax.legend(fontsize=8)
        return _svg(fig, name)
