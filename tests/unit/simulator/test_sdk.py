"""The simulator's answers, fetched over HTTP by the openai SDK, validate against the SDK's own
models: a client that checks every field accepts them as it would OpenAI's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from batchrun.simulator import SimulatorConfig, run_in_thread

openai = pytest.importorskip("openai")

from openai.types import Completion, CreateEmbeddingResponse  # noqa: E402
from openai.types.chat import ChatCompletion  # noqa: E402
from openai.types.responses import Response  # noqa: E402

CHAT = [{"role": "user", "content": "Is this review positive? 'Great value.'"}]
SCHEMA = {"type": "json_schema", "name": "verdict", "strict": True,
          "schema": {"type": "object", "properties": {"label": {"type": "string", "enum": ["yes", "no"]}},
                     "required": ["label"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with run_in_thread(SimulatorConfig()) as sim:
        yield openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)


def body(raw: Any) -> dict[str, Any]:
    """The JSON body exactly as the server sent it (the SDK's own parsing does not validate)."""
    assert raw.http_response.status_code == 200
    value: dict[str, Any] = raw.http_response.json()
    return value


@pytest.mark.parametrize("request_", [
    {"model": "gpt-4o-mini", "input": "Say hello"},
    {"model": "gpt-4o-mini", "input": "Say hello", "instructions": "Be brief.", "temperature": 0.2},
    {"model": "gpt-4o-mini", "input": "Label it", "text": {"format": SCHEMA}},
    {"model": "o4-mini", "input": "Think, then answer", "max_output_tokens": 16},  # reasoning item, cut
], ids=["plain", "instructions", "json_schema", "reasoning-cut"])
def test_responses_validate_with_the_sdk_response_model(client: Any, request_: dict[str, Any]) -> None:
    payload = body(client.responses.with_raw_response.create(**request_))
    response = Response.model_validate(payload)
    if response.status == "completed":
        assert response.output_text  # the SDK's own accessor finds the answer text
    else:  # the cap was spent thinking: an incomplete answer, as OpenAI gives it
        assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.total_tokens == payload["usage"]["total_tokens"]


def test_chat_completions_validate_with_the_sdk_model(client: Any) -> None:
    payload = body(client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=CHAT))
    completion = ChatCompletion.model_validate(payload)
    assert completion.choices[0].message.content


def test_text_completions_validate_with_the_sdk_model(client: Any) -> None:
    payload = body(client.completions.with_raw_response.create(model="gpt-4o-mini", prompt="Once upon"))
    Completion.model_validate(payload)


def test_embeddings_validate_with_the_sdk_model(client: Any) -> None:
    payload = body(client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float", dimensions=8))
    assert len(CreateEmbeddingResponse.model_validate(payload).data) == 2
    # The SDK's default asks for base64 (float32) and decodes it itself.
    decoded = client.embeddings.create(model="text-embedding-3-small", input="a", dimensions=8)
    assert decoded.data[0].embedding == pytest.approx(payload["data"][0]["embedding"], rel=1e-6)
