"""The price table: what it covers, how model ids find their row, costs, and user files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchrun.accounting.pricing import (
    BATCH_DISCOUNT,
    Price,
    builtin_prices,
    describe_prices,
    load_prices,
)
from batchrun.errors import ConfigError
from batchrun.usage import Usage

# The families the brief requires, and a few others users will run.
COVERED = ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini",
           "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "gpt-5.4", "gpt-5.5",
           "text-embedding-3-small", "text-embedding-3-large", "gpt-3.5-turbo", "gpt-4-turbo"]


def test_builtin_table_is_dated_and_says_where_it_comes_from() -> None:
    table = builtin_prices()
    assert table.date is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.date)
    assert table.source and "openai" in table.source.lower()


@pytest.mark.parametrize("model", COVERED)
def test_builtin_table_covers_current_openai_models(model: str) -> None:
    price = builtin_prices().price(model)
    assert price is not None
    assert price.input >= 0 and price.output >= 0


@pytest.mark.parametrize(("model", "row"), [
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4.1-2025-04-14", "gpt-4.1"),
    ("o3-2025-04-16", "o3"),
    ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ("gpt-4-0613", "gpt-4"),                      # the older -MMDD style
    ("gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k"),
    ("GPT-4o-Mini", "gpt-4o-mini"),                # ids are case-insensitive
    ("openai/gpt-4o-mini", "gpt-4o-mini"),         # LiteLLM / OpenRouter style
    ("omni-moderation-2024-09-26", "omni-moderation-latest"),  # through an alias
])
def test_dated_and_prefixed_ids_resolve_to_their_family(model: str, row: str) -> None:
    assert builtin_prices().resolve(model) == row


def test_a_snapshot_priced_differently_keeps_its_own_row() -> None:
    table = builtin_prices()
    assert table.resolve("gpt-4o-2024-05-13") == "gpt-4o-2024-05-13"
    assert table.price("gpt-4o-2024-05-13") != table.price("gpt-4o")


@pytest.mark.parametrize("model", ["llama-3.1-8b", "ft:gpt-4o-mini-2024-07-18:acme::abc123", "gpt-4o-mini-turbo",
                                   "", None])
def test_unknown_and_fine_tuned_models_have_no_price(model: str | None) -> None:
    table = builtin_prices()
    assert table.price(model) is None
    assert table.cost(model, Usage(prompt=10, completion=10, total=20)) is None


def test_cost_charges_cached_prompt_tokens_at_the_cached_rate() -> None:
    price = Price(input=2.0, output=8.0, cached_input=0.5)
    usage = Usage(prompt=1_000_000, completion=500_000, total=1_500_000, cached=400_000, reasoning=300_000)
    # 600k uncached at $2, 400k cached at $0.50, 500k output at $8; reasoning is inside completion.
    assert price.cost(usage) == pytest.approx(1.2 + 0.2 + 4.0)


def test_cost_without_a_cached_price_charges_cached_tokens_as_input() -> None:
    price = Price(input=3.0, output=12.0)
    assert price.cost(Usage(prompt=1_000_000, cached=1_000_000, total=1_000_000)) == pytest.approx(3.0)


def test_cost_of_embeddings_is_prompt_only() -> None:
    usage = Usage.from_body({"usage": {"prompt_tokens": 8000, "total_tokens": 8000}})
    assert usage is not None
    assert builtin_prices().cost("text-embedding-3-small", usage) == pytest.approx(8000 * 0.02 / 1e6)


def test_cached_tokens_beyond_the_prompt_are_not_credited_twice() -> None:
    price = Price(input=1.0, output=1.0, cached_input=0.0)
    assert price.cost(Usage(prompt=100, cached=500, total=100)) == 0.0  # not negative


def test_batch_discount_halves_every_price() -> None:
    full = load_prices()
    half = load_prices(batch_discount=True)
    for model in COVERED:
        a, b = full.price(model), half.price(model)
        assert a is not None and b is not None
        assert b.input == pytest.approx(a.input * BATCH_DISCOUNT)
        assert b.output == pytest.approx(a.output * BATCH_DISCOUNT)
        if a.cached_input is not None:
            assert b.cached_input == pytest.approx(a.cached_input * BATCH_DISCOUNT)
    assert "batch discount" in half.describe()


def test_a_json_price_file_overrides_and_extends_the_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"models": {"gpt-4o-mini": {"input": 1, "output": 2},'
                    ' "my-llama": {"input": 0.1, "cached_input": 0.05, "output": 0.3}},'
                    ' "aliases": {"llama": "my-llama"}}')
    table = load_prices(path)
    assert table.price("gpt-4o-mini") == Price(1.0, 2.0, None)            # replaced whole
    assert table.price("gpt-4o-mini-2024-07-18") == Price(1.0, 2.0, None)  # dated ids follow
    assert table.price("my-llama") == Price(0.1, 0.3, 0.05)
    assert table.price("llama") == Price(0.1, 0.3, 0.05)
    assert table.price("gpt-4.1") == builtin_prices().price("gpt-4.1")     # the rest untouched
    assert str(path) in table.describe()


def test_a_toml_price_file_works_where_tomllib_exists(tmp_path: Path) -> None:
    pytest.importorskip("tomllib")
    path = tmp_path / "prices.toml"
    path.write_text('[models."gpt-4.1"]\ninput = 1.5\ncached_input = 0.25\noutput = 6\n\n'
                    '[models.local]\ninput = 0\noutput = 0\n')
    table = load_prices(path)
    assert table.price("gpt-4.1-2025-04-14") == Price(1.5, 6.0, 0.25)
    assert table.cost("local", Usage(prompt=1000, completion=1000, total=2000)) == 0.0  # known free, not unknown


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('["gpt-4o"]', "'models' table"),
    ('{"gpt-4o": {"input": 1, "output": 2}}', "'models' table"),
    ('{"models": {"m": {"input": -1, "output": 2}}}', "input must be a number >= 0"),
    ('{"models": {"m": {"input": 1}}}', "output must be a number"),
    ('{"models": {"m": {"input": "1", "output": 2}}}', "input must be a number"),
    ('{"models": {"m": {"input": 1, "output": 2, "cache": 1}}}', "unknown field(s) cache"),
    ('{"models": {"m": [1, 2]}}', "expected an object"),
    ('{"models": {}, "aliases": ["x"]}', "'aliases' must map"),
])
def test_a_bad_price_file_is_a_config_error_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_prices(path)
    assert str(path) in str(info.value)


def test_a_missing_price_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such price file"):
        load_prices(tmp_path / "nope.json")


def test_describe_prices_names_date_overrides_and_discount(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"models": {}}')
    text = describe_prices(load_prices(path, batch_discount=True).provenance())
    assert builtin_prices().date
    assert str(builtin_prices().date) in text and str(path) in text and "batch discount" in text


def test_the_table_says_which_models_have_the_flex_tier(tmp_path: Path) -> None:
    table = builtin_prices()
    assert table.offers_flex("o4-mini") is True and table.offers_flex("gpt-5-mini-2025-08-07") is True
    assert table.offers_flex("gpt-4o-mini") is False and table.offers_flex("my-llama") is None
    own = tmp_path / "p.json"
    own.write_text('{"models": {"my-llama": {"input": 0.1, "output": 0.2, "flex": true}}}')
    assert load_prices(own).offers_flex("my-llama") is True
    assert load_prices(own, batch_discount=True).price("my-llama") == Price(0.05, 0.1, None, True)
    own.write_text('{"models": {"my-llama": {"input": 0.1, "output": 0.2, "flex": "yes"}}}')
    with pytest.raises(ConfigError, match="flex must be true or false"):
        load_prices(own)
