"""`tokens`: which encoding a model uses, what a request's body counts as input (by endpoint),
the output cap it states, and the counters' bound that the budget relies on."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun import tokens
from batchrun.tokens import (
    CL100K,
    IMAGE_TOKENS,
    IMAGE_TOKENS_LOW,
    LEGACY_COMPLETIONS_MAX_TOKENS,
    O200K,
    REPLY_PRIMING,
    TOKENS_PER_MESSAGE,
    TOKENS_PER_NAME,
    HeuristicCounter,
    counter_for,
    encoding_for,
    max_output,
    request_tokens,
)

CHAT = "/v1/chat/completions"


class Letters:
    """A counter whose figures read plainly: a token per character, bound two per character."""

    name = "letters"
    exact = False

    def count(self, text: str) -> int:
        return len(text)

    def bound(self, text: str) -> int:
        return 2 * len(text)


@pytest.mark.parametrize(("model", "encoding"), [
    ("gpt-4o-mini", O200K), ("gpt-4.1", O200K), ("o3-mini", O200K), ("gpt-4o-2024-08-06", O200K),
    ("gpt-4", CL100K), ("gpt-4-turbo", CL100K), ("GPT-3.5-turbo", CL100K), ("openai/gpt-4-0613", CL100K),
    ("text-embedding-3-small", CL100K), ("davinci-002", CL100K),
    ("meta-llama/Llama-3.3-70B-Instruct", O200K), (None, O200K), ("", O200K),
])
def test_the_encoding_of_a_model(model: str | None, encoding: str) -> None:
    assert encoding_for(model) == encoding


@pytest.mark.parametrize(("url", "body", "cap"), [
    (CHAT, {}, None),
    (CHAT, {"max_tokens": 100}, 100),
    (CHAT, {"max_completion_tokens": 50, "max_tokens": 100}, 50),  # the newer name wins
    (CHAT, {"max_tokens": 100, "n": 3}, 300),  # every choice
    (CHAT, {"max_tokens": 100, "n": 0}, 100),
    (CHAT, {"max_tokens": True}, None),  # not a number: the server refuses it, no output
    (CHAT, {"max_tokens": -5}, None),
    (CHAT, {"max_tokens": 10.5}, None),
    ("/v1/completions", {}, LEGACY_COMPLETIONS_MAX_TOKENS),  # its documented default
    ("/v1/completions", {"max_tokens": 20, "n": 2, "best_of": 5}, 100),
    ("/v1/responses", {"max_output_tokens": 70, "max_tokens": 5}, 70),
    ("/v1/responses", {"max_tokens": 5}, None),  # not what /responses reads
    ("/v1/embeddings", {"max_tokens": 5}, 0),
    ("/v1/moderations", {}, 0),
    ("/openai/deployments/gpt-4o/chat/completions", {"max_tokens": 9}, 9),  # Azure's path
    ("/v1/audio/speech", {"max_output_tokens": 4}, 4),  # unknown: any of the names
    ("/v1/audio/speech", {}, None),
])
def test_the_output_cap_a_request_states(url: str, body: dict[str, Any], cap: int | None) -> None:
    assert max_output(url, body) == cap


def test_a_chat_request_counts_its_messages_with_openais_framing() -> None:
    body = {"model": "m", "messages": [{"role": "system", "content": "be brief"},
                                       {"role": "user", "name": "ann", "content": "hi"}], "max_tokens": 7}
    counted = request_tokens(CHAT, body, Letters())
    text = len("system") + len("be brief") + len("user") + len("ann") + len("hi")
    framing = 2 * TOKENS_PER_MESSAGE + TOKENS_PER_NAME + REPLY_PRIMING
    assert counted.input == text + framing
    assert counted.input_bound == 2 * text + framing
    assert counted.max_output == 7 and counted.images == 0


def test_content_parts_images_tools_and_schemas_count() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
        {"type": "image_url", "image_url": {"url": "https://x/b.png", "detail": "low"}},
    ]}, "not a message"], "tools": tools}
    counted = request_tokens(CHAT, body, Letters())
    tools_text = len('[{"type":"function","function":{"name":"f"}}]')
    assert counted.images == 2
    assert counted.input == (TOKENS_PER_MESSAGE + len("user") + len("look") + IMAGE_TOKENS + IMAGE_TOKENS_LOW
                             + REPLY_PRIMING + tools_text)
    # Images have no hard bound: they keep their estimate in the bound.
    assert counted.input_bound == (TOKENS_PER_MESSAGE + 2 * len("user") + 2 * len("look") + IMAGE_TOKENS
                                   + IMAGE_TOKENS_LOW + REPLY_PRIMING + 2 * tools_text)


@pytest.mark.parametrize(("url", "body", "expected"), [
    ("/v1/embeddings", {"input": "abc"}, 3),
    ("/v1/embeddings", {"input": ["ab", "cde"]}, 5),
    ("/v1/embeddings", {"input": [5, 6, 7, 8]}, 4),  # token ids: one token each
    ("/v1/embeddings", {"input": [[1, 2], [3]]}, 3),
    ("/v1/completions", {"prompt": "abcd"}, 4),
    ("/v1/moderations", {"input": [{"type": "text", "text": "ab"}, {"type": "image_url"}]}, 2),
    ("/v1/responses", {"instructions": "ab", "input": "cd"}, 2 + TOKENS_PER_MESSAGE + 2 + REPLY_PRIMING),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "ab"}]},
                                 {"type": "function_call_output", "output": "xyz"}]},
     TOKENS_PER_MESSAGE + 4 + 2 + TOKENS_PER_MESSAGE + 3 + REPLY_PRIMING),
    ("/v1/audio/speech", {"model": "tts", "voice": "ab"}, len('{"voice":"ab"}')),  # every string but the model
])
def test_the_input_by_endpoint(url: str, body: dict[str, Any], expected: int) -> None:
    assert request_tokens(url, body, Letters()).input == expected


def test_without_an_estimate_the_input_is_the_bound() -> None:
    body = {"messages": [{"role": "user", "content": "hello"}]}
    counted = request_tokens(CHAT, body, Letters(), estimate=False)
    assert counted.input == counted.input_bound == TOKENS_PER_MESSAGE + 2 * len("userhello") + REPLY_PRIMING


def test_the_estimate_is_not_computed_when_only_the_bound_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = HeuristicCounter(O200K)
    monkeypatch.setattr(counter, "count", lambda text: pytest.fail("the estimate was computed"))
    request_tokens(CHAT, {"messages": [{"role": "user", "content": "x" * 100}]}, counter, estimate=False)


def test_without_the_exact_package_the_heuristic_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    counter_for.cache_clear()
    try:
        assert isinstance(counter_for(O200K, exact=False), HeuristicCounter)
        monkeypatch.setitem(sys.modules, "toktok", None)  # importing it now fails
        counter_for.cache_clear()
        counter = counter_for(CL100K)
        assert isinstance(counter, HeuristicCounter) and not counter.exact and counter.name == "cl100k_base, heuristic"
    finally:
        counter_for.cache_clear()


def test_the_heuristic_counts_text_as_tokens_and_nothing_as_none() -> None:
    counter = HeuristicCounter(O200K)
    assert counter.count("") == 0 and counter.count("a") == 1
    sentence = "The quick brown fox jumps over the lazy dog. " * 20
    assert 150 <= counter.count(sentence) <= 260  # o200k: 10 tokens a sentence, 200 in all
    assert len(tokens.features(sentence)) == tokens.FEATURES == len(tokens.WEIGHTS[O200K])


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_the_heuristics_bound_is_the_utf8_length_never_below_a_bpe_count(text: str) -> None:
    """Every token of a byte-level BPE covers at least one byte: the budget's worst case rests on it."""
    for encoding in (O200K, CL100K):
        assert HeuristicCounter(encoding).bound(text) == len(text.encode("utf-8"))
