"""Runs side by side (``batchrun report A B …``): the figures compared, and each run's change
against the first, from their reports (``batchrun.report/1``). The terminal table, ``--json`` and
the HTML page all read this document, so they cannot disagree.

JSON document (`compare`), schema ``batchrun.compare/1``::

    {
      "schema": "batchrun.compare/1",
      "runs": [{"label": str,                    # "2. tue.results.jsonl": its place, its file's name
                "source": str | null,            # the file reported on
                "figures": {"lines": int, "failed": int,
                            "failed_pct": float | null,   # of its lines; null: no lines
                            "tokens": int, "cost_usd": float | null,   # null: a model has no price
                            "p50_ms": float | null, "p95_ms": float | null, "p99_ms": float | null,
                            "duration_s": float | null},  # wall time; for a file, its first line
                                                          # sent to its last answered; null: unknown
                "change": {...the same keys...} | null}],  # its figures less the first run's
                                                 # (null where either is null); null for the first
      "warnings": [str]                          # each run's report's, after its label
    }
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SCHEMA = "batchrun.compare/1"
FIGURES = ("lines", "failed", "failed_pct", "tokens", "cost_usd", "p50_ms", "p95_ms", "p99_ms", "duration_s")


def compare(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The document of the module docstring, the runs in the order given."""
    shown = [figures(doc) for doc in docs]
    runs: list[dict[str, Any]] = [
        {"label": label, "source": doc.get("source"), "figures": mine,
         "change": None if index == 0 else {key: _less(mine[key], shown[0][key]) for key in FIGURES}}
        for index, (label, doc, mine) in enumerate(zip(labels(docs), docs, shown, strict=True))]
    warnings = [f"{run['label']}: {note}" for run, doc in zip(runs, docs, strict=True) for note in doc["warnings"]]
    return {"schema": SCHEMA, "runs": runs, "warnings": warnings}


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The compared figures of one report document."""
    requests, latency = doc["requests"], doc.get("latency_ms") or {}
    lines = requests["succeeded"] + requests["failed"]
    return {"lines": doc["lines"], "failed": requests["failed"],
            "failed_pct": 100 * requests["failed"] / lines if lines else None,
            "tokens": doc["tokens"]["total"], "cost_usd": doc.get("cost_usd"),
            "p50_ms": latency.get("p50"), "p95_ms": latency.get("p95"), "p99_ms": latency.get("p99"),
            "duration_s": _duration(doc)}


def labels(docs: Sequence[dict[str, Any]]) -> list[str]:
    """Each run's name: its place and its file's name (two runs may share one)."""
    names = [_source(doc).rsplit("/", 1)[-1] for doc in docs]
    return [f"{i + 1}. {name}" for i, name in enumerate(names)]


def _source(doc: dict[str, Any]) -> str:
    source = doc.get("source") or (doc.get("input") or {}).get("path")
    return str(source) if source else "run"


def _duration(doc: dict[str, Any]) -> float | None:
    if doc.get("wall_time_s") is not None:
        return float(doc["wall_time_s"])
    timeline = doc.get("timeline")
    return None if timeline is None else float(timeline["end"]) - float(timeline["start"])


def _less(value: float | None, baseline: float | None) -> float | None:
    return None if value is None or baseline is None else value - baseline
