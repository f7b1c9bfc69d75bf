"""What the simulator answers: a pure function from (method, path, body) to a reply.

This is the OpenAI-compatible surface of the simulator with no I/O, no clock and no
randomness: every field is derived from a blake2b digest of the canonical request, so the same
request always gets byte-identical JSON across runs and machines. ``server.py`` calls
:func:`answer` on its hot path, hence the plain dicts and the absence of per-request set-up.

Token counts follow the "about 4 characters per token" rule for prompts and completions alike,
so ``usage`` stays consistent with the text that is returned.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Any

import orjson

from ..accounting.estimate import reasoning_model
from ..accounting.pricing import builtin_prices
from ..json_numbers import is_int, is_number

__all__ = ["MODELS", "Reply", "answer", "error_payload", "known_model"]

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-5-mini", "o4-mini", "text-embedding-3-small")
"""Listed by ``GET /v1/models``. A request may name any model batchrun has a price for
(`known_model`); any name at all with ``any_model``."""

_FORMATS = ("text", "json_object", "json_schema")  # the `text.format` types a response echoes
_EPOCH = 1_735_689_600  # 2025-01-01: `created` is this plus a digest-derived offset, never the clock.
_MAX_DIMENSIONS = 4096
# "Labels: a, b, c" / "answer with one of: a | b | c" in a prompt: the answer is one of them.
_LABELS = re.compile(r"(?i)\b(?:labels?|categories|classes|one of)\s*:\s*([^\n]+)")
_LABEL_SPLIT = re.compile(r"\s*(?:,|\||/|\bor\b)\s*")
_SENTENCES = (
    "This is a deterministic answer from the batchrun simulator.",
    "The same request always receives this same text.",
    "In short, the answer depends on the details of the input.",
    "Several factors matter here, and the most important one comes first.",
    "A careful reading of the question suggests a simple approach.",
    "The result below summarises the main points in a few words.",
    "Consider the trade-offs before choosing one option over another.",
    "Each step is small, so the whole process stays easy to check.",
    "The data support this conclusion, within the usual margins.",
    "More context would make a more specific recommendation possible.",
    "First, restate the problem; then solve the smallest version of it.",
    "Overall, the evidence points in one clear direction.",
    "Edge cases deserve a test of their own.",
    "The simplest explanation that fits the facts is usually right.",
    "A short example makes the idea concrete.",
    "That completes the answer; ask again for more detail.",
)


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer before encoding: status, JSON payload and any extra headers.

    ``raw``, when set, is sent as the body instead of the payload, as ``content_type`` (a file's
    content from the Batch API).
    """

    status: int
    payload: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    raw: bytes | None = None
    content_type: str = "application/json"


class _Invalid(Exception):
    """Raised inside this module to turn a malformed request into a 400 reply."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


def error_payload(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body shape, shared by validation errors and injected faults."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def answer(method: str, path: str, body: bytes, *, any_model: bool = True) -> Reply:
    """Answer one request as an OpenAI-compatible server would.

    :param method: the HTTP method, upper case.
    :param path: the request path, with or without a ``/v1`` prefix or a query string.
    :param body: the raw request body.
    :param any_model: answer whatever model a request names; without it a model batchrun has no
        price for is answered 404 ``model_not_found``, as OpenAI answers a model that does not exist.
    :returns: 200 with the endpoint's JSON, 400 for an invalid body, 404 for an unknown route or
        model. Never raises, whatever the body.
    """
    route = path.partition("?")[0]
    if route.startswith("/v1/"):
        route = route[3:]
    if method == "GET" and route == "/models":
        return Reply(200, _models())
    handler = _POST_ROUTES.get(route) if method == "POST" else None
    if handler is None:
        message = f"Invalid URL ({method} {path})"
        return Reply(404, error_payload(message, "invalid_request_error"))
    try:
        request = _parse(body)
        if not any_model and not known_model(request["model"]):
            message = f"The model `{request['model']}` does not exist or you do not have access to it."
            return Reply(404, error_payload(message, "invalid_request_error", code="model_not_found"))
        return Reply(200, handler(request, _digest(route, request)))
    except _Invalid as exc:
        return Reply(400, error_payload(str(exc), "invalid_request_error", exc.param, exc.code))


def known_model(model: str) -> bool:
    """Whether ``model`` is one the simulator serves unless told to serve any: one batchrun has a
    built-in price for (dated snapshots and aliases included), so a run rehearsed with ``--mock``
    meets a misspelt model as it would at OpenAI."""
    return builtin_prices().resolve(model) is not None


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
            "using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(request, dict):
        raise _Invalid("The request body must be a JSON object.", code="invalid_type")
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise _Invalid("you must provide a model parameter", param="model")
    if request.get("stream") is True:
        raise _Invalid(
            "stream=true is not supported by the batchrun simulator; send non-streaming requests.",
            param="stream",
            code="unsupported_value",
        )
    return request


def _digest(route: str, request: dict[str, Any]) -> bytes:
    """Identify a request by its meaning, so key order and whitespace don't change the answer."""
    try:
        canonical = orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # orjson reads deeper nesting than it writes
        raise _Invalid("The request body is nested too deeply.", code="invalid_value") from None
    return hashlib.blake2b(route.encode() + canonical, digest_size=16).digest()


def _chat(request: dict[str, Any], digest: bytes) -> dict[str, Any]:
    messages = request.get("messages")
    if not isinstance(messages, list):
        raise _Invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not messages:
        raise _Invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    texts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _Invalid(f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]", "invalid_type")
        texts.append(_text_of(message.get("content")))
    prompt = sum(map(len, texts)) // 4 + 3 * len(messages) + 3
    cap = _cap(request, "max_completion_tokens", "max_tokens")
    fmt = request.get("response_format")
    content, completion, reasoning, cut = _complete(request["model"], digest, cap, fmt, texts)
    return {
        "id": "chatcmpl-" + digest.hex(),
        "object": "chat.completion",
        "created": _created(digest),
        "model": request["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "length" if cut else "stop",
            }
        ],
        "usage": _usage(prompt, completion, reasoning, digest),
        "service_tier": "default",
        "system_fingerprint": "fp_batchrun_sim",
    }


def _completions(request: dict[str, Any], digest: bytes) -> dict[str, Any]:
    text = _text_of(request.get("prompt"))
    cap = _cap(request, "max_tokens")
    content, completion, reasoning, cut = _complete(request["model"], digest, cap, None, [text])
    return {
        "id": "cmpl-" + digest.hex(),
        "object": "text_completion",
        "created": _created(digest),
        "model": request["model"],
        "choices": [{"text": content, "index": 0, "logprobs": None, "finish_reason": "length" if cut else "stop"}],
        "usage": _usage(len(text) // 4 + 1, completion, reasoning, digest),
    }


def _responses(request: dict[str, Any], digest: bytes) -> dict[str, Any]:
    text = _text_of(request.get("input"))
    instructions = _text_of(request.get("instructions"))
    cap = _cap(request, "max_output_tokens")
    options = request.get("text")
    fmt = options.get("format") if isinstance(options, dict) else None
    content, completion, reasoning, cut = _complete(request["model"], digest, cap, fmt, [instructions, text])
    usage = _usage((len(text) + len(instructions)) // 4 + 4, completion, reasoning, digest)
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append({"id": "rs_" + digest.hex(), "type": "reasoning", "summary": []})
    output.append(
        {
            "id": "msg_" + digest.hex(),
            "type": "message",
            "status": "incomplete" if cut else "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": content, "annotations": []}],
        }
    )
    # Every field OpenAI returns, the request's settings echoed, so that clients that validate
    # the whole object (the openai SDK's `Response` model) accept it.
    return {
        "id": "resp_" + digest.hex(),
        "object": "response",
        "created_at": _created(digest),
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": instructions or None,
        "max_output_tokens": cap,
        "model": request["model"],
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": _number(request, "temperature", 1.0),
        "text": {"format": fmt if isinstance(fmt, dict) and fmt.get("type") in _FORMATS else {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": _number(request, "top_p", 1.0),
        "truncation": "disabled",
        "metadata": {},
        "user": None,
        "usage": {
            "input_tokens": usage["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
                                     "cache_write_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": usage["total_tokens"],
        },
    }


def _embeddings(request: dict[str, Any], digest: bytes) -> dict[str, Any]:
    """Embeddings ignore the request ``digest``: each vector is keyed by its own input."""
    inputs = request.get("input")
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and is_int(inputs[0])):
        inputs = [inputs]  # a single string, or a single pre-tokenized input
    if not isinstance(inputs, list) or not inputs:
        raise _Invalid("'input' must be a non-empty string or array.", "input", "invalid_value")
    dims = request.get("dimensions", 8)
    if not is_int(dims) or not 1 <= dims <= _MAX_DIMENSIONS:
        raise _Invalid(
            f"'dimensions' must be an integer between 1 and {_MAX_DIMENSIONS}.", "dimensions", "invalid_value"
        )
    as_base64 = request.get("encoding_format") == "base64"
    model = request["model"].encode()
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        # Pre-tokenized inputs (lists of ints) count one token per element.
        tokens += len(item) if isinstance(item, list) else len(_text_of(item)) // 4 + 1
        # Like a real model's, an input's vector depends on the model and the input alone, not on
        # the rest of the batch; fewer `dimensions` give a renormalised prefix of the same vector.
        vector = _vector(hashlib.blake2b(model + b"\0" + orjson.dumps(item), digest_size=16).digest(), dims)
        embedding: Any = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _models() -> dict[str, Any]:
    data = [{"id": m, "object": "model", "created": _EPOCH, "owned_by": "batchrun-simulator"} for m in MODELS]
    return {"object": "list", "data": data}


_POST_ROUTES = {
    "/chat/completions": _chat,
    "/completions": _completions,
    "/responses": _responses,
    "/embeddings": _embeddings,
}


def _complete(model: str, digest: bytes, cap: int | None, fmt: Any, texts: list[str]) -> tuple[str, int, int, bool]:
    """The generated text and its token counts: (content, completion, reasoning, cut_by_cap).

    Reasoning tokens are spent first and counted inside ``completion``, as OpenAI does, so a
    small cap on a reasoning model can leave an empty visible answer.
    """
    content = _content(digest, fmt, texts)
    visible = len(content) // 4 + 1
    reasoning = 32 * (1 + digest[1] % 16) if reasoning_model(model) else 0
    cut = False
    if cap is not None and reasoning + visible > cap:
        cut = True
        reasoning = min(reasoning, cap)
        visible = cap - reasoning
        content = content[: visible * 4]
    return content, visible + reasoning, reasoning, cut


def _content(digest: bytes, fmt: Any, texts: list[str]) -> str:
    schema = _json_schema(fmt)
    if schema is not None:
        return orjson.dumps(_fill(schema, digest)).decode()
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return orjson.dumps({"answer": _SENTENCES[digest[2] % len(_SENTENCES)]}).decode()
    labels = _labels(texts)
    if labels:
        return labels[digest[2] % len(labels)]
    count = 1 + digest[3] % 4
    return " ".join(_SENTENCES[b % len(_SENTENCES)] for b in digest[4 : 4 + count])


def _json_schema(fmt: Any) -> dict[str, Any] | None:
    """The JSON schema of a Chat (``json_schema.schema``) or Responses (``schema``) format."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    inner = fmt.get("json_schema")
    schema = inner.get("schema") if isinstance(inner, dict) else fmt.get("schema")
    return schema if isinstance(schema, dict) else None


def _fill(schema: dict[str, Any], digest: bytes) -> dict[str, Any]:
    """A deterministic object for the top-level properties of a schema (enums honoured)."""
    properties = schema.get("properties")
    result: dict[str, Any] = {}
    if not isinstance(properties, dict):
        return result
    for i, (name, spec) in enumerate(properties.items()):
        pick = digest[(5 + i) % len(digest)]
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type")
        if isinstance(spec.get("enum"), list) and spec["enum"]:
            result[name] = spec["enum"][pick % len(spec["enum"])]
        elif kind == "integer":
            result[name] = pick
        elif kind == "number":
            result[name] = pick / 255
        elif kind == "boolean":
            result[name] = bool(pick & 1)
        elif kind == "array":
            result[name] = []
        elif kind == "object":
            result[name] = {}
        else:
            result[name] = _SENTENCES[pick % len(_SENTENCES)]
    return result


def _labels(texts: list[str]) -> list[str]:
    """Allowed answers listed in the prompt, the latest message first (often the system one)."""
    for text in reversed(texts):
        # Every pattern needs a colon: most texts are ruled out without running the regex.
        match = _LABELS.search(text) if ":" in text else None
        if match is not None:
            labels = [label.strip(" \t\"'`[](){}.") for label in _LABEL_SPLIT.split(match.group(1))]
            labels = [label for label in labels if label]
            if len(labels) >= 2:
                return labels
    return []


def _text_of(value: Any) -> str:
    """The text in a message content, prompt or Responses input, whatever its shape."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text_of(part) for part in value)
    if isinstance(value, dict):
        # A content part ({"type": "text", "text": ...}) or a Responses input item ({"content": ...}).
        return _text_of(value.get("text", value.get("content")))
    return ""


def _cap(request: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = request.get(name)
        if value is None:
            continue
        if not is_int(value) or value < 1:
            raise _Invalid(f"Invalid '{name}': expected a positive integer.", name, "invalid_value")
        return value
    return None


def _number(request: dict[str, Any], name: str, default: float) -> float:
    value = request.get(name)
    return value if is_number(value) else default


def _usage(prompt: int, completion: int, reasoning: int, digest: bytes) -> dict[str, Any]:
    # OpenAI caches prompt prefixes of at least 1024 tokens in 128-token steps; half the long
    # prompts get a cache hit here, of a digest-chosen length.
    cached = 0
    if prompt >= 1024 and digest[0] & 1:
        cached = 1024 + 128 * (digest[15] % ((prompt - 1024) // 128 + 1))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _created(digest: bytes) -> int:
    return _EPOCH + int.from_bytes(digest[8:11], "little")


def _vector(seed: bytes, dims: int) -> list[float]:
    """A unit-length vector whose components come from an extendable-output hash of ``seed``."""
    raw = struct.unpack(f"<{dims}H", hashlib.shake_128(seed).digest(2 * dims))
    components = [x / 32767.5 - 1.0 for x in raw]
    norm = sum(c * c for c in components) ** 0.5 or 1.0
    return [c / norm for c in components]
