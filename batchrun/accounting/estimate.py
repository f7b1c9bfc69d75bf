"""``batchrun estimate``: check an input file and say what it will cost, before anything is sent.

The file is streamed through `reader.read_jobs`, so every line gets exactly the checks a run
gives it (JSON, the envelope's fields, duplicate ``custom_id``s, ``stream: true``), plus one of
its own: a request with no ``model`` — OpenAI rejects it, and it cannot be priced. Every such
line is a problem, reported with its file and line number as it is found.

For each valid request, `tokens.request_tokens` estimates its input tokens and reads its output
cap. The cost range per model is then:

- low: the estimated input tokens at the input price, nothing cached, no output;
- high: the same plus the output cap at the output price, where the cap is the request's
  ``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens`` (times ``n``), or
  `DEFAULT_MAX_OUTPUT_TOKENS` when it states none (embeddings and moderations produce none).

Beside the range, an expected figure, to plan with: the input as for ``low``, and each request's
output at a typical answer's length, `TYPICAL_ANSWER_TOKENS` (what pacing charges a request
without a cap), plus `TYPICAL_REASONING_TOKENS` for a reasoning model (`reasoning_model`), within
the request's cap (or ``--default-max-tokens``). It is an assumption, not a bound, and labelled
as one: answers to a task differ from it in length either way.

With ``--like REPORT``, the expected output of a request is instead the mean answer of its
model in a previous run's report (`like`), within the request's cap; a model that report lacks
keeps the typical assumption, and a warning says so.

A model with no price has no range (``null``), and the total range is then ``null`` too, with
a warning; the priced part is still given.

With ``--cache [DIR]``, the requests the response cache already answers (`cache.CacheView`:
the key a run's cache uses, for the ``--base-url`` given) cost nothing, as in a run: every range
below is then what the other requests cost, and ``cache`` says how many it answers and what they
would have cost on each route (``saved_usd``). The tokens and the per-model counts are the
whole file's.

Each range is given twice: sent online, at the table's prices (``cost_usd``), and through the
provider's Batch API, at its price (``batch_api``: `pricing.BATCH_DISCOUNT` of the online
price). ``--batch-discount`` puts the table itself at the Batch API's price, so that both are
then that price; the discount is never applied twice. A third range is the run with ``--tier
flex`` (``flex``): the requests that would go on the flex tier (`tiers`: chat and Responses
requests naming no tier, of a model the table does not list without flex) at the Batch API's
price, the others online.

JSON document (`Estimate.to_dict`), schema ``batchrun.estimate/1``::

    {
      "schema": "batchrun.estimate/1",
      "source": str,
      "lines": int,                               # non-blank lines
      "requests": int,                            # lines that would be sent
      "problems": int,                            # lines that would not (see problem_lines)
      "problem_lines": [{"line": int, "custom_id": str, "code": str, "message": str}],
                                                  # the first 1,000
      "by_endpoint": {url: int},
      "models": {model: {"requests": int, "input_tokens": int, "output_cap_tokens": int,
                         "expected_output_tokens": int, "requests_without_cap": int, "images": int,
                         "priced_as": str | null,
                         "cost_usd": {"low": float, "high": float, "expected": float} | null,
                         "batch_api": {"cost_usd": {"low": float, "high": float, "expected": float} | null},
                         "flex_requests": int, "flex_input_tokens": int, "flex_output_cap_tokens": int,
                         "flex_expected_output_tokens": int, "cached_requests": int}},
      "tokens": {"input": int, "output_cap": int, "output_expected": int},
      "cost_usd": {"low": float, "high": float, "expected": float} | null,  # null when a model has no price
      "cost_usd_priced": {"low": float, "high": float, "expected": float},
      "batch_api": {"cost_usd": {"low": float, "high": float, "expected": float} | null,  # through the Batch API
                    "cost_usd_priced": {"low": float, "high": float, "expected": float},
                    "batches": int,                 # how many --via batch plans, at OpenAI's limits
                    "queue_tokens": {model: int}},  # what they enqueue (prompts + output caps)
      "flex": {"requests": int,                   # requests --tier flex would send on flex (not cached)
               "cost_usd": {"low": float, "high": float, "expected": float} | null,  # the file with --tier flex
               "cost_usd_priced": {"low": float, "high": float, "expected": float}},
      "cache": {"dir": str, "requests": int,      # requests the cache answers: never sent, at 0
                "saved_usd": {"online" | "batch_api" | "flex": {"low", "high", "expected"} | null}}
               | null,                            # null: no --cache
      "default_max_output_tokens": int,
      "expected_output": {"answer_tokens": int, "reasoning_tokens": int,  # what "expected" assumes
                          "like": {"report": str,  # --like: the mean answer per model of its run
                                   "mean_completion_tokens": {model: float},
                                   "assumed": [model]} | null},  # models it lacks: typical answers
      "token_counts": {encoding: "exact" | "heuristic"},
      "prices": {"date", "source", "overrides", "multiplier", "batch_discount"},
      "warnings": [str]
    }
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ..batchapi.plan import QueueNeed
from ..cache.source import CacheView
from ..plural import counted
from ..reader import read_jobs
from ..records import Job, LineError
from ..tiers import tiered_path
from ..tokens import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    EXPECTED_OUTPUT_TOKENS,
    RequestTokens,
    TokenCounter,
    counter_for,
    encoding_for,
    request_tokens,
)
from .like import Like
from .pricing import PriceTable, load_prices
from .tally import PerModel, priced_total

MISSING_MODEL = "missing_model"
PROBLEM_LINES_KEPT = 1000  # in the JSON document; all of them go to ``on_problem``
TYPICAL_ANSWER_TOKENS = EXPECTED_OUTPUT_TOKENS
TYPICAL_REASONING_TOKENS = 1000  # a reasoning model's thinking before a typical answer, billed as output
_REASONING_MODEL = re.compile(r"(?:^|/)(?:o\d|gpt-5)")  # OpenAI's o-series and GPT-5, dated or fine-tuned


def reasoning_model(model: str) -> bool:
    """Whether ``model`` spends reasoning tokens before its answer (billed as output)."""
    return _REASONING_MODEL.search(model) is not None


@dataclass
class Problem:
    """A line that would not be sent as it is."""

    line: int
    custom_id: str
    code: str
    message: str


@dataclass
class ModelEstimate:
    """Counters of the requests for one model."""

    requests: int = 0
    input_tokens: int = 0
    output_cap_tokens: int = 0
    expected_output_tokens: int = 0
    requests_without_cap: int = 0
    images: int = 0
    flex_requests: int = 0  # of the requests, those --tier flex would send on flex, and their tokens
    flex_input_tokens: int = 0
    flex_output_cap_tokens: int = 0
    flex_expected_output_tokens: int = 0

    def minus(self, other: ModelEstimate) -> ModelEstimate:
        """These counters less ``other``'s (a part of them): what the rest of the requests ask for."""
        return ModelEstimate(**{name: value - getattr(other, name) for name, value in vars(self).items()})


class Estimate:
    """What a file asks for, accumulated request by request (see the module docstring)."""

    def __init__(self, prices: PriceTable, *, source: str | None = None,
                 default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS, exact: bool = True,
                 like: Like | None = None, cache_dir: str | None = None) -> None:
        """:param like: the previous run whose answers' lengths are expected (``--like``).
        :param cache_dir: the response cache asked (``--cache``), for `add_request`'s ``cached``."""
        self.prices = prices
        self.like = like
        self.cache_dir = cache_dir
        self.cached = PerModel(ModelEstimate)  # the requests the cache answers, counted as in ``models``
        self.cache_warnings: list[str] = []
        self._batch_prices = prices.with_batch_discount()
        self.source = source
        self.default_max_output = default_max_output
        self.exact = exact
        self.lines = 0
        self.problems = 0
        self.problem_lines: list[Problem] = []
        self.by_endpoint: Counter[str] = Counter()
        self.models = PerModel(ModelEstimate)
        self.encodings: dict[str, str] = {}
        self.queue = QueueNeed()  # the Batch API's batches and queue (`batchapi.queue`)

    def add_problem(self, problem: Problem) -> None:
        self.lines += 1
        self.problems += 1
        if len(self.problem_lines) < PROBLEM_LINES_KEPT:
            self.problem_lines.append(problem)

    def add_request(self, model: str, url: str, body: dict[str, Any], *, cached: bool = False) -> None:
        """Count one valid request; ``cached``: the response cache answers it."""
        self.lines += 1
        self.by_endpoint[url] += 1
        tokens = request_tokens(url, body, self._counter(model))
        for tally in (self.models.of(model), *((self.cached.of(model),) if cached else ())):
            self._count(tally, model, url, body, tokens)

    def _count(self, tally: ModelEstimate, model: str, url: str, body: dict[str, Any],
               tokens: RequestTokens) -> None:
        tally.requests += 1
        tally.input_tokens += tokens.input
        tally.images += tokens.images
        cap = tokens.max_output
        if cap is None:
            tally.requests_without_cap += 1
            cap = self.default_max_output
        tally.output_cap_tokens += cap
        typical = self._expected_answer(model)
        tally.expected_output_tokens += min(cap, typical)
        if tiered_path(url) and "service_tier" not in body and self.prices.offers_flex(model) is not False:
            tally.flex_requests += 1
            tally.flex_input_tokens += tokens.input
            tally.flex_output_cap_tokens += cap
            tally.flex_expected_output_tokens += min(cap, typical)

    def _expected_answer(self, model: str) -> int:
        """The output tokens a request of ``model`` is expected to produce, before its cap."""
        mean = None if self.like is None else self.like.mean(model)
        if mean is not None:
            return round(mean)
        return TYPICAL_ANSWER_TOKENS + (TYPICAL_REASONING_TOKENS if reasoning_model(model) else 0)

    @property
    def requests(self) -> int:
        return self.lines - self.problems

    def model_cost(self, model: str, *, batch_api: bool = False, flex: bool = False,
                   saved: bool = False) -> tuple[float, float, float] | None:
        """``(low, high, expected)`` USD for one model's requests the cache does not answer, sent
        online, through the Batch API, or with ``--tier flex`` (``saved``: for those it answers);
        ``None`` when it has no price."""
        price = (self._batch_prices if batch_api else self.prices).price(model)
        if price is None:
            return None
        tally = self.cached.get(model, ModelEstimate())
        if not saved:
            tally = self.models[model].minus(tally)
        if not flex:
            low = price.bound(tally.input_tokens, 0)
            return low, low + price.bound(0, tally.output_cap_tokens), low + price.bound(0, tally.expected_output_tokens)
        flex_price = self._batch_prices.price(model)
        assert flex_price is not None  # the same row, discounted
        low = price.bound(tally.input_tokens - tally.flex_input_tokens, 0) + flex_price.bound(tally.flex_input_tokens, 0)
        high = (price.bound(0, tally.output_cap_tokens - tally.flex_output_cap_tokens)
                + flex_price.bound(0, tally.flex_output_cap_tokens))
        expected = (price.bound(0, tally.expected_output_tokens - tally.flex_expected_output_tokens)
                    + flex_price.bound(0, tally.flex_expected_output_tokens))
        return low, low + high, low + expected

    def cost(self, *, batch_api: bool = False, flex: bool = False, saved: bool = False
             ) -> tuple[tuple[float, float, float] | None, tuple[float, float, float]]:
        """``(total, priced)`` as ``(low, high, expected)``, as `model_cost`; the total is ``None``
        when some model has no price."""
        models = self.cached if saved else self.models
        costs = [self.model_cost(model, batch_api=batch_api, flex=flex, saved=saved) for model in models]
        total, low = priced_total(None if cost is None else cost[0] for cost in costs)
        high = priced_total(None if cost is None else cost[1] for cost in costs)[1]
        expected = priced_total(None if cost is None else cost[2] for cost in costs)[1]
        return (None if total is None else (low, high, expected)), (low, high, expected)

    def warnings(self) -> list[str]:
        notes = []
        uncapped = {model: tally.requests_without_cap for model, tally in sorted(self.models.items())
                    if tally.requests_without_cap}
        if uncapped:  # one note for every model: the cure is the same
            each = f" ({', '.join(f'{model} {n:,}' for model, n in uncapped.items())})" if len(uncapped) > 1 else ""
            notes.append(f"{counted(sum(uncapped.values()), 'request')}{each} set no max_tokens: the high estimate assumes "
                         f"{self.default_max_output:,} output tokens each (--default-max-tokens)")
        for model, tally in sorted(self.models.items()):
            if self.prices.resolve(model) is None:
                notes.append(f"no price for model {model!r} ({counted(tally.requests, 'request')}): its cost is unknown; "
                             "add it with --prices FILE")
            if tally.images:
                notes.append(f"{tally.images:,} images in {model} requests are counted at a fixed "
                             "765 tokens each (85 with detail=low)")
        if self.like is not None and (assumed := self._assumed()):
            notes.append(f"--like: {self.like.source} has no answers of {', '.join(assumed)}: their expected "
                         f"output is a typical answer's ({TYPICAL_ANSWER_TOKENS:,} tokens, +{TYPICAL_REASONING_TOKENS:,} "
                         "reasoning for o-series and GPT-5)")
        notes += self.cache_warnings
        if any(encoding == "heuristic" for encoding in self.token_counts().values()):
            notes.append("input tokens are a heuristic estimate (median error per request 3-5% on English "
                         "text, code and JSON, about 11% on other languages); pip install toktok-rs for "
                         "exact counts")
        return notes

    def _assumed(self) -> list[str]:
        """The models ``--like``'s report has no answers of."""
        return [] if self.like is None else [model for model in sorted(self.models) if self.like.mean(model) is None]

    def token_counts(self) -> dict[str, str]:
        return dict(sorted(self.encodings.items()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the module docstring."""
        total, priced = self.cost()
        batch_total, batch_priced = self.cost(batch_api=True)
        flex_total, flex_priced = self.cost(flex=True)
        return {
            "schema": "batchrun.estimate/1",
            "source": self.source,
            "lines": self.lines,
            "requests": self.requests,
            "problems": self.problems,
            "problem_lines": [vars(problem) for problem in self.problem_lines],
            "by_endpoint": dict(self.by_endpoint.most_common()),
            "models": {model: self._model_dict(model) for model in sorted(self.models)},
            "tokens": {"input": sum(t.input_tokens for t in self.models.values()),
                       "output_cap": sum(t.output_cap_tokens for t in self.models.values()),
                       "output_expected": sum(t.expected_output_tokens for t in self.models.values())},
            "cost_usd": _range(total),
            "cost_usd_priced": _range(priced),
            "batch_api": {"cost_usd": _range(batch_total), "cost_usd_priced": _range(batch_priced),
                          "batches": self.queue.batches, "queue_tokens": dict(sorted(self.queue.tokens.items()))},
            "flex": {"requests": sum(t.flex_requests for t in self.models.values())
                                 - sum(t.flex_requests for t in self.cached.values()), "cost_usd": _range(flex_total),
                     "cost_usd_priced": _range(flex_priced)},
            "cache": self._cache_dict(),
            "default_max_output_tokens": self.default_max_output,
            "expected_output": {"answer_tokens": TYPICAL_ANSWER_TOKENS, "reasoning_tokens": TYPICAL_REASONING_TOKENS,
                                "like": self._like_dict()},
            "token_counts": self.token_counts(),
            "prices": self.prices.provenance(),
            "warnings": self.warnings(),
        }

    def _cache_dict(self) -> dict[str, Any] | None:
        if self.cache_dir is None:
            return None
        saved = {"online": _range(self.cost(saved=True)[0]),
                 "batch_api": _range(self.cost(saved=True, batch_api=True)[0]),
                 "flex": _range(self.cost(saved=True, flex=True)[0])}
        return {"dir": self.cache_dir, "requests": sum(t.requests for t in self.cached.values()), "saved_usd": saved}

    def _like_dict(self) -> dict[str, Any] | None:
        if self.like is None:
            return None
        means = {model: mean for model in sorted(self.models) if (mean := self.like.mean(model)) is not None}
        return {"report": self.like.source, "mean_completion_tokens": means, "assumed": self._assumed()}

    def _model_dict(self, model: str) -> dict[str, Any]:
        tally = self.models[model]
        cached = self.cached.get(model, ModelEstimate()).requests
        return {**vars(tally), "cached_requests": cached, "priced_as": self.prices.resolve(model),
                "cost_usd": _range(self.model_cost(model)),
                "batch_api": {"cost_usd": _range(self.model_cost(model, batch_api=True))}}

    def _counter(self, model: str) -> TokenCounter:
        encoding = encoding_for(model)
        counter = counter_for(encoding, exact=self.exact)
        self.encodings[encoding] = "exact" if counter.exact else "heuristic"
        return counter


def _range(cost: tuple[float, float, float] | None) -> dict[str, float] | None:
    return None if cost is None else {"low": cost[0], "high": cost[1], "expected": cost[2]}


def estimate_file(path: Path, prices: PriceTable | None = None, *,
                  default_max_output: int = DEFAULT_MAX_OUTPUT_TOKENS, exact: bool = True,
                  on_problem: Callable[[Problem], None] | None = None, like: Like | None = None,
                  cache: CacheView | None = None, cache_dir: str | None = None) -> Estimate:
    """Stream ``path`` into an `Estimate`; ``on_problem`` sees every bad line as it is found.

    :param cache: the response cache to ask (``--cache``; ``cache_dir`` names it, and is given
        without a ``cache`` when the cache could not be opened: it then answers nothing).
    :raises InputFileError: the file cannot be opened or read.
    """
    estimate = Estimate(prices if prices is not None else load_prices(), source=str(path),
                        default_max_output=default_max_output, exact=exact, like=like, cache_dir=cache_dir)
    for item in read_jobs(path):
        problem = _problem(item, path)
        if problem is not None:
            estimate.add_problem(problem)
            if on_problem is not None:
                on_problem(problem)
            continue
        assert isinstance(item, Job) and item.model is not None
        cached = cache is not None and cache.holds(item)
        estimate.add_request(item.model, item.url, orjson.loads(item.body), cached=cached)
        if not cached:  # a --via batch run never submits what the cache answers
            estimate.queue.add(item)
    if cache is not None and cache.broken is not None:
        estimate.cache_warnings.append(f"the response cache could not be read to the end ({cache.broken}): "
                                       "lines after that are counted as not cached")
    return estimate


def _problem(item: Job | LineError, path: Path) -> Problem | None:
    if isinstance(item, LineError):
        return Problem(item.line_no, item.custom_id, item.code, item.message)
    if not item.model:
        return Problem(item.line_no, item.custom_id, MISSING_MODEL,
                       f"{path}:{item.line_no}: no model: OpenAI rejects the request and it cannot be priced")
    return None
