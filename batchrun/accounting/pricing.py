"""Prices per model, and what a `Usage` cost.

The built-in table is ``prices.json`` in this package: USD per 1M tokens for input, cached
input and output, with the date it was compiled and its source. A user file passed as
``--prices FILE`` overrides or extends it, and ``--batch-discount`` halves every price (the
OpenAI Batch API's 50%, for reports on OpenAI Batch output files).

The discount is applied once: a line answered through the Batch API is priced by
`PriceTable.with_batch_discount`, which leaves a table that already has it as it is — so with
``--batch-discount`` such a line costs 50% of the online price, like every other line, not 25%.

How a model id finds its row (first hit wins):

1. the id itself, case-insensitively, or an alias listed in the table;
2. the id without an ``openai/`` prefix (LiteLLM- and OpenRouter-style ids);
3. the id without a date suffix, ``-2024-07-18`` or the older ``-0613``: a dated snapshot is
   priced as its family (``gpt-4o-mini-2024-07-18`` as ``gpt-4o-mini``), unless the snapshot
   has a row of its own because it was priced differently (``gpt-4o-2024-05-13``).

Fine-tuned ids (``ft:…``) are never resolved to their base model, whose rates they do not pay.
A model with no row has no price: its cost is ``None`` (unknown), never 0.

User file, JSON on any Python, TOML where the standard library has ``tomllib`` (3.11+)::

    {"date": "2026-11-01", "source": "our contract",
     "models": {"my-llama": {"input": 0.10, "output": 0.30},
                "gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60}},
     "aliases": {"llama": "my-llama"}}

    # TOML: quote ids that contain dots
    [models."gpt-4.1"]
    input = 2.0
    cached_input = 0.5
    output = 8.0

An entry replaces the built-in one of the same id whole; ``cached_input`` defaults to
``input`` (no caching discount assumed). ``"flex": true`` says the model has OpenAI's flex
tier (``--tier flex``), whose lines are priced at the Batch API's discount; it defaults to false.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigError
from ..json_numbers import is_number
from ..usage import Usage

BATCH_DISCOUNT = 0.5
"""The OpenAI Batch API's price multiplier: 50% off input, cached input and output."""
FLEX = "flex"
"""OpenAI's flex service tier, priced at the Batch API's rates; a row says whether its model has it."""

_PER_TOKEN = 1e-6  # prices are per 1M tokens
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
_PROVIDER_PREFIX = "openai/"
_RESOLVE_CACHE_LIMIT = 4096  # distinct ids remembered; a file has a handful, a hostile one many


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens for one model; ``cached_input`` ``None`` means the input price;
    ``flex``: the model is offered on the flex tier (at `BATCH_DISCOUNT` of these prices)."""

    input: float
    output: float
    cached_input: float | None = None
    flex: bool = False

    def cost(self, usage: Usage) -> float:
        """USD for ``usage``: uncached prompt, cached prompt and completion at their rates.

        Reasoning tokens are part of the completion tokens (OpenAI bills them as output), so
        they are not added again.
        """
        cached = min(usage.cached, usage.prompt)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((usage.prompt - cached) * self.input + cached * cached_rate
                + usage.completion * self.output) * _PER_TOKEN

    def bound(self, input_tokens: int, output_tokens: int) -> float:
        """USD for this many tokens with no cache hits: the most they can cost."""
        return (input_tokens * self.input + output_tokens * self.output) * _PER_TOKEN

    def scaled(self, factor: float) -> Price:
        cached = None if self.cached_input is None else self.cached_input * factor
        return Price(self.input * factor, self.output * factor, cached, self.flex)


class PriceTable:
    """Prices by model id, resolved as the module docstring says.

    :param multiplier: applied to every price.
    :param overrides: the user file merged in, for the report's provenance line.
    :param batch_discount: the multiplier includes ``BATCH_DISCOUNT`` (`with_batch_discount`).
    """

    def __init__(self, models: Mapping[str, Price], *, aliases: Mapping[str, str] | None = None,
                 date: str | None = None, source: str | None = None, multiplier: float = 1.0,
                 overrides: str | None = None, batch_discount: bool = False) -> None:
        self.models = {key.lower(): price for key, price in models.items()}
        self.aliases = {key.lower(): target.lower() for key, target in (aliases or {}).items()}
        self.date = date
        self.source = source
        self.multiplier = multiplier
        self.overrides = overrides
        self.batch_discount = batch_discount
        self._resolved: dict[str, str | None] = {}

    def resolve(self, model: str | None) -> str | None:
        """The table row ``model`` is priced by, or ``None`` when it has none."""
        if not model:
            return None
        try:
            return self._resolved[model]
        except KeyError:
            pass
        key = self._resolve(model)
        if len(self._resolved) < _RESOLVE_CACHE_LIMIT:
            self._resolved[model] = key
        return key

    def price(self, model: str | None) -> Price | None:
        """The price of ``model`` with the multiplier applied, or ``None`` when unknown."""
        key = self.resolve(model)
        if key is None:
            return None
        price = self.models[key]
        return price if self.multiplier == 1.0 else price.scaled(self.multiplier)

    def offers_flex(self, model: str | None) -> bool | None:
        """Whether ``model`` has the flex tier, as its row says; ``None`` when it has no row."""
        key = self.resolve(model)
        return None if key is None else self.models[key].flex

    def cost(self, model: str | None, usage: Usage) -> float | None:
        """USD for ``usage`` of ``model``; ``None`` when the model has no price."""
        price = self.price(model)
        return None if price is None else price.cost(usage)

    def with_batch_discount(self) -> PriceTable:
        """This table at the Batch API's prices; a table that has the discount already is returned
        as it is (module docstring)."""
        if self.batch_discount:
            return self
        return PriceTable(self.models, aliases=self.aliases, date=self.date, source=self.source,
                          multiplier=self.multiplier * BATCH_DISCOUNT, overrides=self.overrides, batch_discount=True)

    def describe(self) -> str:
        """One line saying where the prices come from, for reports."""
        return describe_prices(self.provenance())

    def provenance(self) -> dict[str, Any]:
        """The table's metadata for JSON documents."""
        return {"date": self.date, "source": self.source, "overrides": self.overrides,
                "multiplier": self.multiplier, "batch_discount": self.batch_discount}

    def _resolve(self, model: str) -> str | None:
        candidate = model.strip().lower()
        if candidate.startswith("ft:"):
            return None
        for attempt in (candidate, candidate.removeprefix(_PROVIDER_PREFIX)):
            if (key := self._lookup(attempt)) is not None:
                return key
            undated = _DATE_SUFFIX.sub("", attempt)
            if undated != attempt and (key := self._lookup(undated)) is not None:
                return key
        return None

    def _lookup(self, key: str) -> str | None:
        if key in self.models:
            return key
        target = self.aliases.get(key)
        return target if target in self.models else None


def describe_prices(provenance: Mapping[str, Any]) -> str:
    """The line reports print about their prices, from `PriceTable.provenance`."""
    text = f"prices: built-in table of {provenance['date'] or 'unknown date'}"
    if provenance["overrides"]:
        text += f", overridden by {provenance['overrides']}"
    if provenance["batch_discount"]:
        text += "; batch discount (50%) applied"
    elif provenance["multiplier"] != 1.0:
        text += f"; prices x{provenance['multiplier']:g}"
    return text


def load_prices(path: Path | None = None, *, batch_discount: bool = False) -> PriceTable:
    """The built-in table, with ``path`` merged over it when given.

    :raises ConfigError: the file cannot be read or is not a price table.
    """
    base = builtin_prices()
    table = base
    if path is not None:
        data = _read_file(path)
        models = {**base.models, **_parse_models(data, str(path))}
        aliases = {**base.aliases, **_parse_aliases(data, str(path))}
        table = PriceTable(models, aliases=aliases, date=base.date, source=base.source, overrides=str(path))
    return table.with_batch_discount() if batch_discount else table


@lru_cache(maxsize=1)
def builtin_prices() -> PriceTable:
    """The table shipped in the package (read once)."""
    raw = resources.files("batchrun.accounting").joinpath("prices.json").read_bytes()
    data = orjson.loads(raw)
    return PriceTable(_parse_models(data, "built-in prices.json"), aliases=_parse_aliases(data, "prices.json"),
                      date=data.get("date"), source=data.get("source"))


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such price file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read price file: {exc.strerror}") from None
    if path.suffix.lower() == ".toml":
        data = _parse_toml(raw, path)
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON: {exc} (TOML files must end in .toml)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a price file must be an object with a 'models' table")
    return data


def _parse_toml(raw: bytes, path: Path) -> Any:
    if sys.version_info < (3, 11):  # JSON only there, rather than a dependency for this
        raise ConfigError(f"{path}: TOML price files need Python 3.11 or later; use JSON")
    else:
        import tomllib

        try:
            return tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _parse_models(data: dict[str, Any], where: str) -> dict[str, Price]:
    models = data.get("models")
    if not isinstance(models, dict):
        raise ConfigError(f"{where}: expected a 'models' table mapping model ids to "
                          "{input, output[, cached_input]} in USD per 1M tokens")
    return {str(model): _parse_price(entry, f"{where}: model {model!r}") for model, entry in models.items()}


def _parse_price(entry: Any, where: str) -> Price:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected an object with input and output prices")
    unknown = set(entry) - {"input", "output", "cached_input", "flex"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
                          "allowed: input, cached_input, output, flex")
    flex = entry.get("flex", False)
    if not isinstance(flex, bool):
        raise ConfigError(f"{where}: flex must be true or false (whether the model has the flex tier), got {flex!r}")
    values = {}
    for field in ("input", "output", "cached_input"):
        value = entry.get(field)
        if value is None and field == "cached_input":
            continue
        if not is_number(value) or value < 0:
            raise ConfigError(f"{where}: {field} must be a number >= 0 (USD per 1M tokens), got {value!r}")
        values[field] = float(value)
    return Price(values["input"], values["output"], values.get("cached_input"), flex)


def _parse_aliases(data: dict[str, Any], where: str) -> dict[str, str]:
    aliases = data.get("aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise ConfigError(f"{where}: 'aliases' must map model ids to model ids")
    return {str(k): v for k, v in aliases.items()}
