"""The simulator's answers as a pure function: shapes, validation, determinism, usage invariants."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.simulator import answer
from batchrun.simulator.answers import MODELS

CHAT = "/v1/chat/completions"
REASONING_MODELS = ("o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-nano", "openai/o3")
PLAIN_MODELS = ("gpt-4o-mini", "gpt-4.1", "llama-3.1-8b")


def chat(body: dict[str, Any]) -> dict[str, Any]:
    reply = answer("POST", CHAT, orjson.dumps(body))
    assert reply.status == 200, reply.payload
    return reply.payload


def request(model: str = "gpt-4o-mini", text: str = "Hello there", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_same_request_same_bytes_whatever_the_key_order_or_spacing() -> None:
    body = request(temperature=0)
    reordered = (
        b'{ "temperature": 0, "messages": [{"content": "Hello there", "role": "user"}], "model": "gpt-4o-mini" }'
    )
    first = orjson.dumps(answer("POST", CHAT, orjson.dumps(body)).payload)
    assert orjson.dumps(answer("POST", CHAT, orjson.dumps(body)).payload) == first
    assert orjson.dumps(answer("POST", CHAT, reordered).payload) == first


def test_different_requests_get_different_ids_and_paths_matter() -> None:
    a, b = chat(request(text="one")), chat(request(text="two"))
    assert a["id"] != b["id"]
    assert a["id"].startswith("chatcmpl-")
    assert answer("POST", "/chat/completions", orjson.dumps(request(text="one"))).payload == a  # /v1 is optional


def test_chat_completion_shape() -> None:
    payload = chat(request())
    assert payload["object"] == "chat.completion"
    assert payload["model"] == "gpt-4o-mini"
    assert isinstance(payload["created"], int)
    (choice,) = payload["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "stop"


chat_requests = st.fixed_dictionaries(
    {
        "model": st.sampled_from(REASONING_MODELS + PLAIN_MODELS),
        "messages": st.lists(
            st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]), "content": st.text(max_size=6000)}),
            min_size=1,
            max_size=3,
        ),
    },
    optional={"max_completion_tokens": st.integers(1, 600), "max_tokens": st.integers(1, 600)},
)


@settings(max_examples=150, deadline=None)
@given(chat_requests)
def test_usage_invariants(body: dict[str, Any]) -> None:
    payload = chat(body)
    usage = payload["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    reasoning = usage["completion_tokens_details"]["reasoning_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 <= cached <= usage["prompt_tokens"] and cached % 128 == 0
    assert cached == 0 or cached >= 1024
    assert 0 <= reasoning <= usage["completion_tokens"]
    assert (reasoning > 0) == (body["model"] in REASONING_MODELS)
    cap = body.get("max_completion_tokens", body.get("max_tokens"))
    if cap is not None:
        assert usage["completion_tokens"] <= cap
    if payload["choices"][0]["finish_reason"] == "length":
        assert usage["completion_tokens"] == cap


def test_prompt_tokens_follow_the_text_length() -> None:
    short = chat(request(text="x" * 40))["usage"]["prompt_tokens"]
    long = chat(request(text="x" * 4000))["usage"]["prompt_tokens"]
    assert long - short == (4000 - 40) // 4


def test_long_prompts_sometimes_hit_the_cache() -> None:
    cached = [
        chat(request(text=f"{i} " + "y" * 8000))["usage"]["prompt_tokens_details"]["cached_tokens"] for i in range(20)
    ]
    assert any(cached) and not all(cached)


def test_a_small_cap_cuts_the_answer() -> None:
    payload = chat(request(max_tokens=2))
    assert payload["choices"][0]["finish_reason"] == "length"
    assert payload["usage"]["completion_tokens"] == 2


def test_reasoning_model_spends_its_budget_thinking() -> None:
    payload = chat(request(model="o4-mini", max_completion_tokens=16))
    assert payload["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "", "refusal": None, "annotations": []},
        "logprobs": None,
        "finish_reason": "length",
    }
    assert payload["usage"]["completion_tokens_details"]["reasoning_tokens"] == 16


def test_labels_in_the_system_message_are_chosen_from() -> None:
    messages = [
        {"role": "system", "content": "Classify the topic. Categories: sport | politics | science"},
        {"role": "user", "content": "The match ended 2-1."},
    ]
    content = chat({"model": "gpt-4o-mini", "messages": messages})["choices"][0]["message"]["content"]
    assert content in {"sport", "politics", "science"}


def test_labels_listed_in_the_prompt_are_chosen_from() -> None:
    answers = {
        chat(request(text=f"Review {i}: fine.\nAnswer with one of: positive, negative, neutral"))["choices"][0][
            "message"
        ]["content"]
        for i in range(30)
    }
    assert answers == {"positive", "negative", "neutral"}


@pytest.mark.parametrize(
    "response_format",
    [
        {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {
                        "label": {"type": "string", "enum": ["spam", "ham"]},
                        "score": {"type": "number"},
                        "ok": {"type": "boolean"},
                    },
                },
            },
        },
    ],
)
def test_json_schema_enums_are_honoured(response_format: dict[str, Any]) -> None:
    content = chat(request(response_format=response_format))["choices"][0]["message"]["content"]
    parsed = orjson.loads(content)
    assert parsed["label"] in {"spam", "ham"}
    assert isinstance(parsed["score"], float) and isinstance(parsed["ok"], bool)


def test_json_object_format_gives_json() -> None:
    content = chat(request(response_format={"type": "json_object"}))["choices"][0]["message"]["content"]
    assert isinstance(orjson.loads(content), dict)


def test_completions() -> None:
    reply = answer(
        "POST", "/v1/completions", b'{"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi", "max_tokens": 3}'
    )
    assert reply.status == 200
    assert reply.payload["object"] == "text_completion"
    assert reply.payload["choices"][0]["finish_reason"] == "length"
    assert reply.payload["usage"]["completion_tokens"] == 3


def test_responses_api() -> None:
    body = {
        "model": "gpt-5-mini",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Pick."}]}],
        "text": {
            "format": {
                "type": "json_schema",
                "name": "p",
                "schema": {"type": "object", "properties": {"c": {"enum": ["a", "b"]}}},
            }
        },
    }
    payload = answer("POST", "/v1/responses", orjson.dumps(body)).payload
    assert payload["object"] == "response" and payload["id"].startswith("resp_")
    message = payload["output"][-1]
    assert message["type"] == "message"
    assert orjson.loads(message["content"][0]["text"])["c"] in {"a", "b"}
    usage = payload["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert 0 < usage["output_tokens_details"]["reasoning_tokens"] <= usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0


def test_responses_cap_marks_incomplete() -> None:
    payload = answer("POST", "/v1/responses", b'{"model": "gpt-4o", "input": "hi", "max_output_tokens": 1}').payload
    assert payload["status"] == "incomplete"
    assert payload["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payload["usage"]["output_tokens"] == 1


def test_embeddings_default_and_dimensions() -> None:
    payload = answer("POST", "/v1/embeddings", b'{"model": "e", "input": ["a", "bb"]}').payload
    assert [item["index"] for item in payload["data"]] == [0, 1]
    vector = payload["data"][0]["embedding"]
    assert len(vector) == 8
    assert sum(x * x for x in vector) == pytest.approx(1.0)
    assert payload["data"][0]["embedding"] != payload["data"][1]["embedding"]
    assert payload["usage"]["total_tokens"] == payload["usage"]["prompt_tokens"] > 0
    wide = answer("POST", "/embeddings", b'{"model": "e", "input": "a", "dimensions": 64}').payload["data"][0][
        "embedding"
    ]
    assert len(wide) == 64
    # The same input gets the same direction alone or in a batch, at any dimension.
    prefix = wide[:8]
    norm = sum(x * x for x in prefix) ** 0.5
    assert [x / norm for x in prefix] == pytest.approx(vector)


def test_embeddings_base64_as_the_openai_sdk_requests_them() -> None:
    plain = answer("POST", "/v1/embeddings", b'{"model": "e", "input": [1, 2, 3]}').payload
    encoded = answer(
        "POST", "/v1/embeddings", b'{"model": "e", "input": [1, 2, 3], "encoding_format": "base64"}'
    ).payload
    decoded = struct.unpack("<8f", base64.b64decode(encoded["data"][0]["embedding"]))
    assert decoded == pytest.approx(plain["data"][0]["embedding"], rel=1e-6)
    assert plain["usage"]["prompt_tokens"] == 3  # pre-tokenized: one token per element


def test_models() -> None:
    reply = answer("GET", "/v1/models", b"")
    assert reply.status == 200
    assert [m["id"] for m in reply.payload["data"]] == list(MODELS)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/nope"), ("GET", CHAT), ("POST", "/v1/models"), ("DELETE", "/v1/embeddings")]
)
def test_unknown_routes_are_404(method: str, path: str) -> None:
    reply = answer(method, path, b"{}")
    assert reply.status == 404
    assert reply.payload["error"]["message"] == f"Invalid URL ({method} {path})"
    assert reply.payload["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, b"not json", None),
        (CHAT, b"[1, 2]", None),
        (CHAT, b"{}", "model"),
        (CHAT, b'{"model": ""}', "model"),
        (CHAT, b'{"model": "m"}', "messages"),
        (CHAT, b'{"model": "m", "messages": []}', "messages"),
        (CHAT, b'{"model": "m", "messages": "hi"}', "messages"),
        (CHAT, b'{"model": "m", "messages": ["hi"]}', "messages[0]"),
        (CHAT, b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": true}', "stream"),
        (CHAT, b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        ("/v1/embeddings", b'{"model": "m"}', "input"),
        ("/v1/embeddings", b'{"model": "m", "input": "x", "dimensions": 0}', "dimensions"),
        (CHAT, b'{"model": "m", "x": ' + b"[" * 300 + b"]" * 300 + b"}", None),
    ],
)
def test_invalid_requests_are_400_in_openai_shape(path: str, body: bytes, param: str | None) -> None:
    reply = answer("POST", path, body)
    assert reply.status == 400
    error = reply.payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_streaming_is_refused_with_a_reason() -> None:
    reply = answer("POST", CHAT, orjson.dumps(request(stream=True)))
    assert "not supported" in reply.payload["error"]["message"]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
fuzzed_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(orjson.dumps),
    st.dictionaries(
        st.sampled_from(
            ["model", "messages", "input", "prompt", "max_tokens", "dimensions", "response_format", "text"]
        ),
        json_values,
    ).map(orjson.dumps),
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["GET", "POST"]),
    st.sampled_from([CHAT, "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/models", "/x"]),
    fuzzed_bodies,
)
def test_never_raises_whatever_the_body(method: str, path: str, body: bytes) -> None:
    reply = answer(method, path, body)
    assert reply.status in {200, 400, 404}
    orjson.dumps(reply.payload)
