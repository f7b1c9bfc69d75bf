"""The usage, cost and latency report, accumulated line by line in constant memory.

One accumulator, `Report`, serves both places a report is made:

- ``batchrun report FILE``: `report_file` streams any file in the OpenAI Batch output shape
  through `Report.add_record` — batchrun's own output, an OpenAI Batch output or error file,
  or vLLM ``run-batch`` output (errors in the top-level ``error``, ``response.body`` null);
- the end of a run: the engine hands each final `Result` to `Report.add_result` (its retried
  429s included, as the output line's ``batchrun.rate_limited`` carries them), and the wall
  time to `Report.set_wall_time`; both paths count the same.

Memory does not grow with the file: counters per outcome, per error code and per model, and
latencies in a `LogHistogram` (percentiles within its relative error, 0.5% by default).
Costs are computed from the per-model token sums when the report is rendered; cost is linear
in tokens, so that equals the sum of the per-line costs.

Pricing is per line: a line answered through the provider's Batch API (its output names the
batch, ``batchrun.batch_id``) is priced at the Batch API's price, `pricing.BATCH_DISCOUNT` of
the online price, and so is a line whose answer says it was processed on the flex tier
(``service_tier: "flex"``, as OpenAI echoes it); every other line at the table's price. So
each model's tokens are summed in three parts, the Batch API's, flex's and the rest.
``--batch-discount`` prices the other lines at the Batch API's price too (a file the Batch API
answered outside batchrun, such as an OpenAI Batch output file, names no batch); the discount
is applied once, never twice to a Batch API line. A line answered from the
response cache (``batchrun.cached``) was not bought: it costs nothing, and what it saved is
its usage at the price the other lines pay (the online price, or the Batch API's with
``--batch-discount``).

How a line is read:

- outcome: succeeded when the line has no failure (`records.failure`: ``error``, else
  batchrun's ``batchrun.error``) and ``response.status_code`` is 2xx; otherwise failed — an
  HTTP 4xx/5xx with ``error: null`` (OpenAI's error file, batchrun's output) is a failure;
- error code: the failure's ``code`` (or ``error.error.code``, vLLM's ``ErrorResponse``), else the
  ``code`` or ``type`` of ``response.body.error`` (OpenAI's error file), else ``http_<status>``;
- output cap: an answer that stopped at it (`output_cap.hit_output_cap`: ``finish_reason``
  ``"length"``, or an ``incomplete`` Responses answer at ``max_output_tokens``), failed or not;
- model: ``response.body.model`` (what was billed), else the request's model when known;
- tokens: ``response.body.usage`` in any shape `Usage.from_body` reads, on any line that has it;
- Batch API: ``batchrun.batch_id`` (`records.batch_of`), a live result's ``batch_id``;
- service tier: the answer's ``service_tier`` (`records.tier_of`); sent at the standard tier
  after flex: ``batchrun.tier_fallback``; refusals for capacity before the outcome:
  ``batchrun.capacity_refused``;
- response cache: ``batchrun.cached`` is ``true``, a live result's ``cached``;
- retries: ``batchrun.attempts - 1`` where present (OpenAI and vLLM files do not say: null);
- 429s: final 429 statuses, plus ``batchrun.rate_limited`` where present (the 429 answers a
  line was given before its final outcome: batchrun does not write it yet);
- latency: ``batchrun.latency_ms`` where present — the time on the wire of the attempt that
  gave the line its outcome, from sending to the answer; waiting to be sent is not in it;
- time: ``batchrun.started_at`` and ``batchrun.finished_at`` where present; each line with
  them is counted in the `timeline.Timeline` bucket of its ``finished_at`` (buckets hold the
  lines finished in them, empty ones included; at most 240, widening as the run's span grows),
  its cost priced as above, its latency in a coarse per-bucket histogram (within 5%), its
  ``batchrun.waited_ms``; its time on the wire, ``[started_at, finished_at]``, is split over the
  buckets it overlaps (``in_flight``: the requests on the wire, on average over the bucket);
- time on the wire over all attempts (``batchrun.wire_ms``, else ``latency_ms``) and time spent
  waiting — pacing, the breaker, backoff — (``batchrun.waited_ms``), summed over the lines.

JSON document (`Report.to_dict`), schema ``batchrun.report/1``::

    {
      "schema": "batchrun.report/1",
      "source": str | null,                      # the file reported on, when there was one
      "lines": int,                              # output records counted
      "unreadable_lines": int,                   # lines that are not output records (skipped)
      "requests": {"succeeded": int, "failed": int,
                   "by_error_code": {code: int},  # failures only, most frequent first
                   "by_status": {"200" | "none": int}},
      "retries": int | null,                     # null: the file does not record attempts
      "rate_limited": int,                       # 429 responses seen (final, and retried when known)
      "hit_output_cap": int,                     # answers cut short (or left empty) by their output cap
      "output_cap_examples": [str],              # the custom_ids of the first 5 of them
      "tokens": {"prompt", "completion", "total", "cached", "reasoning": int},
      "models": {model: {"requests": int, "succeeded": int, "failed": int,
                         "responses_without_usage": int,
                         "tokens": {...as above...},
                         "priced_as": str | null,   # the price-table row used
                         "cost_usd": float | null,  # null: no price known for this model
                         "batch_api": {"requests": int, "cost_usd": float | null,
                                       "saved_usd": float | null} | null,  # as below, this model's
                         "cache": {"hits": int, "saved_usd": float | null} | null}},  # as below
      "cost_usd": float | null,                  # null when any model with tokens has no price
      "cost_usd_priced": float,                  # the sum over the models that have a price
      "batch_api": {"lines": int,                # lines answered through the Batch API
                    "cost_usd": float | null,    # what they cost, at its price (part of cost_usd)
                    "saved_usd": float | null} | null,  # what they would have cost online, less that
                                                 # null: no line went through it
      "flex": {"lines", "cost_usd", "saved_usd"} | null,  # as batch_api, for the lines answered on
                                                 # the flex tier (at the Batch API's price)
      "tiers": {tier: int},                      # lines by the service_tier their answer names; {}: none named
      "tier_fallback": {"lines": int,            # lines sent at the standard tier after flex
                        "cost_usd": float | null} | null,  # what they cost (at the standard price)
      "capacity_refused": int,                   # refusals for capacity (flex's 429 Resource Unavailable,
                                                 # 498, 529) answered before the lines' outcomes
      "cache": {"hits": int,                     # lines answered from the response cache (never sent)
                "saved_usd": float | null} | null,  # what they would have cost (not in cost_usd)
                                                 # null: no line came from the cache
      "prices": {"date", "source", "overrides", "multiplier", "batch_discount"},
      "latency_ms": {"count", "mean", "p50", "p95", "p99", "max": float,
                     "relative_error": float} | null,
      "time_s": {"on_the_wire": float, "waiting": float} | null,  # summed over lines; null: not recorded
      "timeline": {"start": float,               # epoch s: the earliest batchrun.started_at
                   "end": float,                 # epoch s: the latest batchrun.finished_at
                   "bucket_s": float,            # the buckets' width: a power of two seconds
                   "buckets": [{"t": float,      # the bucket's start, seconds from "start" (the
                                                 # first may begin up to one width before it)
                                "lines": int, "tokens": int, "failed": int,
                                "rate_limited": int,  # 429 answers, final and retried
                                "retries": int, "cost_usd": float,  # of the lines with a price
                                "in_flight": float,  # requests on the wire, averaged over the bucket
                                "waited_s": float,   # batchrun.waited_ms of its lines, in seconds
                                "latency_ms": {"p50": float | null, "p95": float | null}}]}
                  | null,                        # null: no line records when it finished
      "failure_examples": {code: [{"custom_id": str, "message": str}]},  # the first 5 of each
                                                 # code (messages cut to 300 characters); {}: none
      "wall_time_s": float | null,               # known for a run, not from a file's lines
      "throughput_rps": float | null, "tokens_per_s": float | null,  # a resumed run: its own lines only; null: none sent
      "warnings": [str]
    }
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import InputFileError
from ..json_numbers import is_int, is_number
from ..output_cap import hit_output_cap
from ..reader import jsonl_lines, open_input
from ..records import Result, batch_of, failure, tier_of
from ..usage import Usage
from .histogram import LogHistogram
from .pricing import BATCH_DISCOUNT, FLEX, Price, PriceTable, load_prices
from .tally import PerModel, priced_total
from .timeline import EXAMPLES_PER_CODE, FailureExamples, Timeline

SCHEMA = "batchrun.report/1"
UNKNOWN_MODEL = "unknown"
_MAX_EXAMPLES = 10  # unreadable lines quoted by location; the rest are only counted
_QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


@dataclass
class ModelTally:
    """Counters of one model."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    without_usage: int = 0
    usage: Usage = field(default_factory=Usage)
    batch_requests: int = 0  # of the requests, those answered through the Batch API
    batch_usage: Usage = field(default_factory=Usage)  # of the usage, theirs
    flex_requests: int = 0  # of the requests, those answered on the flex tier
    flex_usage: Usage = field(default_factory=Usage)  # of the usage, theirs
    cached_requests: int = 0  # of the requests, those answered from the response cache
    cached_usage: Usage = field(default_factory=Usage)  # of the usage, theirs: not bought


class Report:
    """Streaming accumulator over output records (see the module docstring).

    :param prices: the table costs come from; the built-in one when not given.
    """

    def __init__(self, prices: PriceTable | None = None, *, source: str | None = None) -> None:
        self.prices = prices if prices is not None else load_prices()
        self._batch_prices = self.prices.with_batch_discount()
        self._line_prices: dict[tuple[str, bool], Price | None] = {}
        self.source = source
        self.lines = 0
        self.succeeded = 0
        self.failed = 0
        self.by_code: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.retries = 0
        self.lines_with_attempts = 0
        self.rate_limited = 0
        self.hit_output_cap = 0
        self.capacity_refused = 0
        self.tiers: Counter[str] = Counter()
        self.fallback_lines = 0
        self.fallback_cost: float | None = 0.0  # None once one of them has no price
        self.cut_examples: list[str] = []  # custom_ids of the first answers that hit the output cap
        self.models = PerModel(ModelTally)
        self.latency = LogHistogram()
        self.timeline = Timeline()
        self.failure_examples = FailureExamples()
        self.wire_s = 0.0
        self.waited_s = 0.0
        self.unreadable = 0
        self.unreadable_examples: list[str] = []
        self.wall_s: float | None = None
        self._rate_lines: int | None = None
        self._rate_tokens: int | None = None

    # -- adding ------------------------------------------------------------------------------

    def add_record(self, record: Mapping[str, Any], *, model: str | None = None) -> None:
        """Count one output line, already parsed. ``model`` is the request's, when the caller knows it."""
        response = record.get("response")
        status = body = None
        if isinstance(response, dict):
            status = response.get("status_code")
            status = status if is_int(status) else None
            body = response.get("body")
        extra = record.get("batchrun")
        extra = extra if isinstance(extra, dict) else {}
        rate_limited = extra.get("rate_limited")
        rate_limited = rate_limited if is_int(rate_limited) else 0
        latency_ms, waited_ms = _number(extra.get("latency_ms")), _number(extra.get("waited_ms"))
        custom_id = record.get("custom_id")
        refused = extra.get("capacity_refused")
        self.capacity_refused += refused if is_int(refused) else 0
        self._count(status, body, Usage.from_body(body), failure(record), model, extra.get("attempts"),
                    batch=batch_of(record) is not None, cached=extra.get("cached") is True, tier=tier_of(body),
                    fell_back=extra.get("tier_fallback") is True,
                    custom_id=custom_id if isinstance(custom_id, str) else "",
                    rate_limited=rate_limited, latency_ms=latency_ms, waited_ms=waited_ms,
                    started=_number(extra.get("started_at")), finished=_number(extra.get("finished_at")))
        self._cut(hit_output_cap(body), custom_id if isinstance(custom_id, str) else "")
        self._time(latency_ms, _number(extra.get("wire_ms")), waited_ms)
        self.rate_limited += rate_limited

    def add_result(self, result: Result) -> None:
        """Count one final `Result` of a live run: no encoding or parsing on the way."""
        self.capacity_refused += result.capacity_refused
        self._count(result.status_code, result.body, result.read_usage(), result.error, result.model,
                    result.attempts or None, batch=result.batch_id is not None, cached=result.cached,
                    tier=result.tier, fell_back=result.fell_back, custom_id=result.custom_id,
                    rate_limited=result.rate_limited, latency_ms=result.latency_ms, waited_ms=result.waited_ms,
                    started=result.started_at, finished=result.finished_at)
        self._cut(result.read_cut(), result.custom_id)
        self._time(result.latency_ms, result.wire_ms, result.waited_ms)
        self.rate_limited += result.rate_limited

    def note_unreadable(self, where: str) -> None:
        """Count a line that is not an output record; the first few are kept for the warnings."""
        self.unreadable += 1
        if len(self.unreadable_examples) < _MAX_EXAMPLES:
            self.unreadable_examples.append(where)

    def set_wall_time(self, seconds: float, *, lines: int | None = None, tokens: int | None = None) -> None:
        """The run's wall time: lines alone do not tell it (their ``created`` stamps are the
        server's clock, and a simulator's are not times at all).

        :param lines: / :param tokens: what was done in that time, when it is not every line
            counted (a resumed run: the lines carried over took none of it); the rates use them.
        """
        self.wall_s = seconds
        self._rate_lines, self._rate_tokens = lines, tokens

    def _count(self, status: int | None, body: Any, usage: Usage | None, error: Any, model: str | None,
               attempts: Any, *, batch: bool, cached: bool, tier: str | None, fell_back: bool, custom_id: str,
               rate_limited: int, latency_ms: float | None, waited_ms: float | None, started: float | None,
               finished: float | None) -> None:
        """:param tier: the service tier its answer names. :param fell_back: sent at the standard
        tier after flex. :param rate_limited: / :param started: / :param finished: the 429s the
        line's retried attempts were answered, and when its answering attempt was sent and answered."""
        self.lines += 1
        ok = not error and status is not None and 200 <= status < 300
        self.by_status["none" if status is None else str(status)] += 1
        if isinstance(body, dict):
            billed = body.get("model")
            if isinstance(billed, str) and billed:
                model = billed
        tally = self.models.of(model or UNKNOWN_MODEL)
        tally.requests += 1
        tally.batch_requests += batch
        tally.cached_requests += cached
        flex = tier == FLEX and not batch and not cached
        tally.flex_requests += flex
        if tier is not None:
            self.tiers[tier] += 1
        if usage is not None:
            tally.usage.add(usage)
            if batch:
                tally.batch_usage.add(usage)
            elif cached:
                tally.cached_usage.add(usage)
            elif flex:
                tally.flex_usage.add(usage)
        if fell_back:
            self.fallback_lines += 1
            cost = self.line_cost(model or UNKNOWN_MODEL, usage, batch=flex) if usage is not None else 0.0
            self.fallback_cost = None if cost is None or self.fallback_cost is None else self.fallback_cost + cost
        if ok:
            self.succeeded += 1
            tally.succeeded += 1
            tally.without_usage += usage is None
        else:
            self.failed += 1
            tally.failed += 1
            code = error_code(error, status, body)
            self.by_code[code] += 1
            self.rate_limited += status == 429
            rate_limited += status == 429
            self.failure_examples.add(code, custom_id, error_message(error, body))
        retries = 0
        if is_int(attempts) and attempts >= 1:
            self.lines_with_attempts += 1
            retries = attempts - 1
            self.retries += retries
        if finished is not None:
            cost = self.line_cost(model or UNKNOWN_MODEL, usage, batch=batch or flex) \
                if usage is not None and not cached else 0.0
            self.timeline.add(started, finished, failed=not ok, rate_limited=rate_limited, retries=retries,
                              tokens=usage.total if usage is not None else 0, cost_usd=cost or 0.0,
                              latency_ms=latency_ms, waited_ms=waited_ms)

    def _cut(self, cut: bool, custom_id: str) -> None:
        if cut:
            self.hit_output_cap += 1
            if len(self.cut_examples) < EXAMPLES_PER_CODE:
                self.cut_examples.append(custom_id)

    def _time(self, latency_ms: float | None, wire_ms: float | None, waited_ms: float | None) -> None:
        if latency_ms is not None:
            self.latency.add(latency_ms)
        wire = wire_ms if wire_ms is not None else latency_ms
        if wire is not None:
            self.wire_s += wire / 1000
        if waited_ms is not None:
            self.waited_s += waited_ms / 1000

    # -- saving and restoring the counters --------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The counters, as JSON-ready values: a resume restores them instead of recounting the
        lines they counted (`restore`)."""
        return {"lines": self.lines, "succeeded": self.succeeded, "failed": self.failed,
                "by_code": dict(self.by_code), "by_status": dict(self.by_status), "retries": self.retries,
                "lines_with_attempts": self.lines_with_attempts, "rate_limited": self.rate_limited,
                "hit_output_cap": self.hit_output_cap, "cut_examples": self.cut_examples,
                "capacity_refused": self.capacity_refused, "tiers": dict(self.tiers),
                "fallback_lines": self.fallback_lines, "fallback_cost": self.fallback_cost,
                "models": {name: {"requests": t.requests, "succeeded": t.succeeded, "failed": t.failed,
                                  "without_usage": t.without_usage, "usage": t.usage.as_dict(),
                                  "batch_requests": t.batch_requests, "batch_usage": t.batch_usage.as_dict(),
                                  "flex_requests": t.flex_requests, "flex_usage": t.flex_usage.as_dict(),
                                  "cached_requests": t.cached_requests, "cached_usage": t.cached_usage.as_dict()}
                           for name, t in self.models.items()},
                "latency": self.latency.state(), "wire_s": self.wire_s, "waited_s": self.waited_s,
                "timeline": self.timeline.state(), "failure_examples": self.failure_examples.state()}

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the counters by a `state` (the report of a run so far). A state saved before
        the Batch API was counted has no Batch API counters: none of its lines went through it
        (nor came from the response cache, for one saved before that was counted);
        one saved before lines were timed has no timeline and no failure examples; one saved before
        they were kept, no output cap examples; one saved before service tiers were counted, no
        tier counters (none of its lines had a tier).

        :raises (KeyError, TypeError, ValueError): not a `state`; nothing was changed.
        """
        models = PerModel(ModelTally)
        models.update((name, ModelTally(int(t["requests"]), int(t["succeeded"]), int(t["failed"]),
                                        int(t["without_usage"]), _usage(t["usage"]), int(t.get("batch_requests", 0)),
                                        _usage(t.get("batch_usage", {})), int(t.get("flex_requests", 0)),
                                        _usage(t.get("flex_usage", {})), int(t.get("cached_requests", 0)),
                                        _usage(t.get("cached_usage", {}))))
                      for name, t in state["models"].items())
        latency = LogHistogram.restore(state["latency"])
        timeline = Timeline.restore(state.get("timeline"))
        examples = FailureExamples.restore(state.get("failure_examples", {}))
        cut_examples = [str(custom_id) for custom_id in state.get("cut_examples", [])][:EXAMPLES_PER_CODE]
        counts = [int(state[key]) for key in ("lines", "succeeded", "failed", "retries", "lines_with_attempts",
                                              "rate_limited", "hit_output_cap")]
        by_code, by_status = Counter(state["by_code"]), Counter(state["by_status"])
        wire_s, waited_s = float(state["wire_s"]), float(state["waited_s"])
        tiers = Counter({str(k): int(v) for k, v in state.get("tiers", {}).items()})
        refused = int(state.get("capacity_refused", 0))
        fallback_lines, fallback_cost = int(state.get("fallback_lines", 0)), state.get("fallback_cost", 0.0)
        fallback_cost = None if fallback_cost is None else float(fallback_cost)
        (self.lines, self.succeeded, self.failed, self.retries, self.lines_with_attempts, self.rate_limited,
         self.hit_output_cap) = counts
        self.by_code, self.by_status, self.models, self.latency = by_code, by_status, models, latency
        self.wire_s, self.waited_s = wire_s, waited_s
        self.timeline, self.failure_examples, self.cut_examples = timeline, examples, cut_examples
        self.tiers, self.capacity_refused, self.fallback_lines, self.fallback_cost = (tiers, refused, fallback_lines,
                                                                                      fallback_cost)

    def merge(self, other: Report) -> None:
        """Add ``other``'s counters, as if its lines had been counted here too (a sharded run's
        parts: `scale.parts`)."""
        self.lines += other.lines
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.by_code.update(other.by_code)
        self.by_status.update(other.by_status)
        self.retries += other.retries
        self.lines_with_attempts += other.lines_with_attempts
        self.rate_limited += other.rate_limited
        self.hit_output_cap += other.hit_output_cap
        self.capacity_refused += other.capacity_refused
        self.tiers.update(other.tiers)
        self.fallback_lines += other.fallback_lines
        self.fallback_cost = (None if self.fallback_cost is None or other.fallback_cost is None
                              else self.fallback_cost + other.fallback_cost)
        self.cut_examples = (self.cut_examples + other.cut_examples)[:EXAMPLES_PER_CODE]
        for name, theirs in other.models.items():
            tally = self.models.of(name)
            tally.requests += theirs.requests
            tally.succeeded += theirs.succeeded
            tally.failed += theirs.failed
            tally.without_usage += theirs.without_usage
            tally.usage.add(theirs.usage)
            tally.batch_requests += theirs.batch_requests
            tally.batch_usage.add(theirs.batch_usage)
            tally.flex_requests += theirs.flex_requests
            tally.flex_usage.add(theirs.flex_usage)
            tally.cached_requests += theirs.cached_requests
            tally.cached_usage.add(theirs.cached_usage)
        self.latency.merge(other.latency)
        self.timeline.merge(other.timeline)
        self.failure_examples.merge(other.failure_examples)
        self.wire_s += other.wire_s
        self.waited_s += other.waited_s

    # -- reading -----------------------------------------------------------------------------

    def usage(self) -> Usage:
        """Tokens over every model."""
        total = Usage()
        for tally in self.models.values():
            total.add(tally.usage)
        return total

    def model_cost(self, model: str) -> float | None:
        """USD for one model's tokens, the Batch API's and flex's at the Batch API's price, the
        cache's at none; 0 when it bought none, ``None`` when it has no price."""
        tally = self.models[model]
        bought = tally.usage.minus(tally.cached_usage)
        if bought == Usage():  # no tokens cost nothing, priced or not
            return 0.0
        online = self.prices.cost(_priced(model), bought.minus(tally.batch_usage).minus(tally.flex_usage))
        batch, flex = self.batch_cost(model), self.flex_cost(model)
        return None if online is None or batch is None or flex is None else online + batch + flex

    def line_cost(self, model: str, usage: Usage, *, batch: bool) -> float | None:
        """USD for one line's ``usage`` of ``model``, at the Batch API's price when it went through
        it; ``None`` when the model has no price."""
        try:
            price = self._line_prices[model, batch]
        except KeyError:  # once per model and route: every line is priced
            price = self._line_prices[model, batch] = (self._batch_prices if batch else self.prices).price(_priced(model))
        return None if price is None else price.cost(usage)

    def batch_cost(self, model: str) -> float | None:
        """USD for the tokens of one model's lines answered through the Batch API, at its price."""
        usage = self.models[model].batch_usage
        return 0.0 if usage == Usage() else self._batch_prices.cost(_priced(model), usage)

    def flex_cost(self, model: str) -> float | None:
        """USD for the tokens of one model's lines answered on the flex tier, at the Batch API's price."""
        usage = self.models[model].flex_usage
        return 0.0 if usage == Usage() else self._batch_prices.cost(_priced(model), usage)

    def cache_saved(self, model: str) -> float | None:
        """USD one model's lines answered from the cache would have cost (module docstring)."""
        usage = self.models[model].cached_usage
        return 0.0 if usage == Usage() else self.prices.cost(_priced(model), usage)

    def cost(self) -> tuple[float | None, float]:
        """``(total, priced)``: the total is ``None`` when some model's cost is unknown."""
        return priced_total(self.model_cost(model) for model in self.models)

    def warnings(self) -> list[str]:
        notes = []
        for model, tally in sorted(self.models.items()):
            if self.model_cost(model) is None:
                name = "requests with no model" if model == UNKNOWN_MODEL else f"model {model!r}"
                notes.append(f"no price for {name}: its cost ({tally.usage.total:,} tokens) is unknown, "
                             "not counted in the total; add it with --prices FILE")
            if tally.without_usage:
                notes.append(f"{tally.without_usage:,} successful {model} "
                             f"{'response' if tally.without_usage == 1 else 'responses'} reported no usage: "
                             "their tokens and cost are not counted")
        if self.unreadable:
            where = ", ".join(self.unreadable_examples)
            more = f" and {self.unreadable - len(self.unreadable_examples):,} more" \
                if self.unreadable > len(self.unreadable_examples) else ""
            are = "line is not an output record and was" if self.unreadable == 1 else "lines are not output records and were"
            notes.append(f"{self.unreadable:,} {are} skipped: {where}{more}")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the module docstring."""
        total_cost, priced = self.cost()
        wall = self.wall_s
        usage = self.usage()
        return {
            "schema": SCHEMA,
            "source": self.source,
            "lines": self.lines,
            "unreadable_lines": self.unreadable,
            "requests": {"succeeded": self.succeeded, "failed": self.failed,
                         "by_error_code": dict(self.by_code.most_common()),
                         "by_status": dict(sorted(self.by_status.items()))},
            "retries": self.retries if self.lines_with_attempts else None,
            "rate_limited": self.rate_limited,
            "hit_output_cap": self.hit_output_cap,
            "output_cap_examples": self.cut_examples,
            "tokens": usage.as_dict(),
            "models": {model: self._model_dict(model) for model in sorted(self.models)},
            "cost_usd": total_cost,
            "cost_usd_priced": priced,
            "batch_api": self._batch_dict(),
            "flex": _batch_api("lines", sum(t.flex_requests for t in self.models.values()),
                               [self.flex_cost(model) for model in self.models]),
            "tiers": dict(self.tiers.most_common()),
            "tier_fallback": ({"lines": self.fallback_lines, "cost_usd": self.fallback_cost}
                              if self.fallback_lines else None),
            "capacity_refused": self.capacity_refused,
            "cache": _cache(sum(tally.cached_requests for tally in self.models.values()),
                            [self.cache_saved(model) for model in self.models]),
            "prices": self.prices.provenance(),
            "latency_ms": self._latency_dict(),
            "time_s": {"on_the_wire": self.wire_s, "waiting": self.waited_s} if self.latency.count else None,
            "timeline": self.timeline.to_dict(),
            "failure_examples": {code: [{"custom_id": custom_id, "message": message}
                                        for custom_id, message in self.failure_examples.by_code[code]]
                                 for code, _ in self.by_code.most_common() if code in self.failure_examples.by_code},
            "wall_time_s": wall,
            "throughput_rps": _rate(self.lines if self._rate_lines is None else self._rate_lines, wall),
            "tokens_per_s": _rate(usage.total if self._rate_tokens is None else self._rate_tokens, wall),
            "warnings": self.warnings(),
        }

    def _model_dict(self, model: str) -> dict[str, Any]:
        tally = self.models[model]
        return {"requests": tally.requests, "succeeded": tally.succeeded, "failed": tally.failed,
                "responses_without_usage": tally.without_usage, "tokens": tally.usage.as_dict(),
                "priced_as": self.prices.resolve(_priced(model)),
                "cost_usd": self.model_cost(model),
                "batch_api": _batch_api("requests", tally.batch_requests, [self.batch_cost(model)]),
                "cache": _cache(tally.cached_requests, [self.cache_saved(model)])}

    def _batch_dict(self) -> dict[str, Any] | None:
        lines = sum(tally.batch_requests for tally in self.models.values())
        return _batch_api("lines", lines, [self.batch_cost(model) for model in self.models])

    def _latency_dict(self) -> dict[str, Any] | None:
        if not self.latency.count:
            return None
        doc: dict[str, Any] = {"count": self.latency.count, "mean": self.latency.mean}
        for name, q in _QUANTILES:
            doc[name] = self.latency.quantile(q)
        doc["max"] = self.latency.max
        doc["relative_error"] = self.latency.relative_error
        return doc


def _batch_api(counted: str, count: int, costs: list[float | None]) -> dict[str, Any] | None:
    """The ``batch_api`` entry of ``count`` lines whose costs at the Batch API's price are ``costs``."""
    if not count:
        return None
    cost = priced_total(costs)[0]
    # Every Batch API price is BATCH_DISCOUNT of the online one, so the online cost follows.
    saved = None if cost is None else cost / BATCH_DISCOUNT - cost
    return {counted: count, "cost_usd": cost, "saved_usd": saved}


def _cache(count: int, saved: list[float | None]) -> dict[str, Any] | None:
    """The ``cache`` entry of ``count`` lines answered from the cache, which would have cost ``saved``."""
    return {"hits": count, "saved_usd": priced_total(saved)[0]} if count else None


def _priced(model: str) -> str | None:
    """The model id to look a price up by: the lines with no model have none."""
    return None if model == UNKNOWN_MODEL else model


def _usage(saved: dict[str, Any]) -> Usage:
    return Usage(**{key: int(value) for key, value in saved.items()})


def _rate(count: int, seconds: float | None) -> float | None:
    """``None`` when nothing was done in the time (every line was carried over, or came from the Batch API)."""
    return count / seconds if seconds and count else None


def _number(value: Any) -> float | None:
    """A count or duration from a file's line: JSON numbers only (``true`` is not 1 ms)."""
    return float(value) if is_number(value) else None


def error_code(error: Any, status: int | None, body: Any) -> str:
    """The machine-readable code of a failed line (see the module docstring for the order)."""
    for source in (error, body.get("error") if isinstance(body, dict) else None):
        if isinstance(source, dict):
            inner = source.get("error")
            found = _code_of(inner if isinstance(inner, dict) else source)
            if found:
                return found
    if status is not None and not 200 <= status < 300:
        return f"http_{status}"
    return "error" if error else "no_response"


def error_message(error: Any, body: Any) -> str:
    """The message of a failed line, from where `error_code` finds its code; ``""`` when none says one."""
    for source in (error, body.get("error") if isinstance(body, dict) else None):
        if isinstance(source, dict):
            inner = source.get("error")
            message = (inner if isinstance(inner, dict) else source).get("message")
            if isinstance(message, str) and message:
                return message
    return ""


def _code_of(error: Mapping[str, Any]) -> str | None:
    for key in ("code", "type"):
        value = error.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def report_file(path: Path, prices: PriceTable | None = None) -> Report:
    """Stream the output file at ``path`` into a `Report`.

    :raises InputFileError: the file cannot be opened or read.
    """
    report = Report(prices, source=str(path))
    for where, record in _records(path):
        if record is None:
            report.note_unreadable(where)
        else:
            report.add_record(record)
    return report


def _records(path: Path) -> Iterator[tuple[str, dict[str, Any] | None]]:
    with open_input(path) as f:
        try:
            for line_no, line in jsonl_lines(f):
                record = None
                if not isinstance(line, int):  # a line too long to be a record is not read into memory
                    with contextlib.suppress(orjson.JSONDecodeError):
                        record = orjson.loads(line)
                ok = isinstance(record, dict) and ("response" in record or "error" in record)
                yield f"{path}:{line_no}", record if ok else None
        except OSError as exc:
            raise InputFileError(f"{path}: read failed: {exc.strerror}") from None
