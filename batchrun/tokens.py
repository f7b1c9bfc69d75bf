"""How many tokens a request will use, before it is sent: for `batchrun estimate` and the budget.

Counting text. OpenAI's tokenizers (``o200k_base`` for GPT-4o and later, ``cl100k_base`` for
GPT-4, GPT-3.5 and the text-embedding-3 models) are byte-level BPE. The ``tiktoken`` package
downloads its vocabularies on first use, which batchrun must never do, so:

- when the optional package ``toktok-rs`` (``import toktok``) is installed — a tiktoken-exact
  BPE whose vocabularies are compiled into its wheel, nothing downloaded — text is counted
  exactly with it (``pip install toktok-rs``; Python 3.11+);
- otherwise a calibrated heuristic: a weighted sum of cheap features of the text (the pieces
  a BPE pre-tokenizer splits it into, letters of long words, line breaks, case changes, and
  characters per script: CJK, kana, Hangul, Cyrillic, Greek, accented Latin, Arabic/Hebrew,
  Indic, Thai, other). The weights were fitted per encoding by least squares on relative error
  against exact counts of a mixed corpus (English prose, Python code, JSON, and UI text in 30
  languages) and measured on a held-out half: median error per text 3-5% on English, code and
  JSON (p90 8-15%), 11-12% on other languages (p90 24-27%); over a whole file the totals were
  within 3% on English, code and JSON and 7.5% on the languages. ``scripts/calibrate_tokens.py``
  refits and remeasures.

Counting requests. The text that reaches the model is taken from the body by endpoint (chat
messages and their parts, tool definitions and calls, ``response_format`` schemas; Responses
``instructions`` and ``input``; embeddings, completions and moderations ``input``/``prompt``,
where token-id arrays count one token per id). A chat request adds OpenAI's framing: 3 tokens
per message, 1 per ``name`` and 3 to prime the reply. An image part counts as 765 tokens (a
1024x1024 ``high``-detail image on GPT-4o) or 85 with ``detail: low``: a rough figure, noted.

Bounds, for the budget. Every token of a byte-level BPE covers at least one byte, so the UTF-8
length of a text is a hard upper bound on its tokens; the heuristic counter's `bound` is that,
the exact counter's is its count. Images have no hard bound and keep their estimate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import orjson

from .json_numbers import is_int

O200K = "o200k_base"
CL100K = "cl100k_base"
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_TOKENS = 765
IMAGE_TOKENS_LOW = 85
LEGACY_COMPLETIONS_MAX_TOKENS = 16  # /v1/completions' documented default for max_tokens
# A request that states no output cap (`max_output` is None) is assumed to use, at most and as
# a rule, two different figures. A bound must not fall short: the budget reserves it and the
# estimate's high end counts it (both let the user set it). Pacing charges a rate limit with
# what such a request is expected to use: the quota scales its charges up when the provider's
# ``remaining`` headers drop by more, but an overestimate would never come back down.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
"""Output tokens reserved for a request that states no cap (the budget; the estimate's high end)."""
EXPECTED_OUTPUT_TOKENS = 500
"""Output tokens a rate limit is charged for a request that states no cap (`pacing`)."""

# Older OpenAI models use cl100k_base; everything newer (and every non-OpenAI model, for want
# of better) is counted as o200k_base.
_CL100K_MODEL = re.compile(r"^(?:openai/)?(?:gpt-4(?!o|\.)|gpt-3\.5|text-embedding-|davinci-002|babbage-002)")


class TokenCounter(Protocol):
    """Counts the tokens of a text under one encoding."""

    name: str
    exact: bool

    def count(self, text: str) -> int: ...

    def bound(self, text: str) -> int:
        """A count never below the true one."""
        ...


def encoding_for(model: str | None) -> str:
    """The tokenizer encoding a model id uses (``o200k_base`` unless known to be older)."""
    return CL100K if model and _CL100K_MODEL.match(model.lower()) else O200K


@lru_cache(maxsize=4)
def counter_for(encoding: str, *, exact: bool = True) -> TokenCounter:
    """The exact counter of ``encoding`` when ``toktok`` is installed and ``exact``, else the heuristic."""
    if exact:
        try:
            return ExactCounter(encoding)
        except ImportError:
            pass
    return HeuristicCounter(encoding)


class ExactCounter:
    """Exact BPE counts from the optional ``toktok`` package (vocabularies inside its wheel)."""

    exact = True

    def __init__(self, encoding: str) -> None:
        import toktok  # type: ignore[import-not-found,unused-ignore]  # optional, untyped

        self._count_batch = toktok.batch_count
        self.encoding = encoding
        self.name = f"{encoding}, exact (toktok)"

    def count(self, text: str) -> int:
        # threads=1: single short texts; a pool would cost more than it saves.
        return int(self._count_batch([text], self.encoding, threads=1)[0])

    def bound(self, text: str) -> int:
        return self.count(text)


# Features of a text, each a count by one regex scan (the scanning runs in C). The weights
# below are in this order. Features the fit gave no weight under either encoding were dropped:
# plain word, digit-group, punctuation and indentation counts (the pre-tokenizer pieces cover
# them), words with accents or other non-ASCII letters, and a constant per text.
_PIECES = re.compile(  # pieces as a BPE pre-tokenizer splits text (o200k's pattern less its case rules)
    r"(?:[^\r\n\w]|_)?[^\W\d_]+|\d{1,3}| ?(?:[^\s\w]|_)+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_LONG_WORDS = ((re.compile(r"[A-Za-z]{7,}"), 6), (re.compile(r"[A-Za-z]{11,}"), 10))  # letters beyond n
_ASCII_COUNTS = (
    re.compile(r"\n"),                              # line breaks
    re.compile(r"[a-z][A-Z]|[A-Z]{2,}"),            # case changes and capital runs split words
)
_SCRIPTS = (  # characters per script; the last class takes the non-ASCII the others did not
    re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"),                 # CJK ideographs
    re.compile(r"[\u3040-\u30ff]"),                                           # kana
    re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]"),                 # Hangul
    re.compile(r"[\u0400-\u052f]"),                                           # Cyrillic
    re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]"),                              # Greek
    re.compile(r"[\u00c0-\u024f\u1e00-\u1eff]"),                              # accented Latin
    re.compile(r"[\u0590-\u06ff\u0750-\u077f\ufb1d-\ufdff\ufe70-\ufeff]"),    # Hebrew, Arabic
    re.compile(r"[\u0900-\u0dff]"),                                           # Indic scripts
    re.compile(r"[\u0e00-\u0eff]"),                                           # Thai, Lao
    re.compile(r"[^\x00-\x7f]"),                                              # other non-ASCII
)
_CYRILLIC_WORDS = re.compile(r"[\u0400-\u052f]+")
FEATURES = 1 + len(_LONG_WORDS) + len(_ASCII_COUNTS) + len(_SCRIPTS) + 1

# Fitted by scripts/calibrate_tokens.py (least squares on relative error, groups weighted
# equally: English prose, English UI text, Python code, JSON, and 30 languages together).
WEIGHTS: dict[str, tuple[float, ...]] = {
    # pieces, letters>6, letters>10, line breaks, case changes, CJK, kana, Hangul, Cyrillic,
    # Greek, accented Latin, Hebrew/Arabic, Indic, Thai, other non-ASCII, Cyrillic words
    O200K: (0.9511, 0.0967, 0.3336, 0.7215, 0.3136, 0.6427, 0.5894, 0.3934, 0.1277, 0.2454,
            0.9225, 0.1887, 0.0000, 0.1806, 0.2386, 0.3612),
    CL100K: (0.9536, 0.0861, 0.3801, 0.7116, 0.1641, 0.8610, 0.9143, 0.8075, 0.3511, 0.8594,
             1.9023, 0.6353, 0.6625, 0.6945, 1.6660, 0.1539),
}


def features(text: str) -> list[float]:
    """The heuristic's features of ``text``, in the order of `WEIGHTS`."""
    values = [float(len(_PIECES.findall(text)))]
    for pattern, skip in _LONG_WORDS:
        values.append(float(sum(len(word) - skip for word in pattern.findall(text))))
    values.extend(float(len(pattern.findall(text))) for pattern in _ASCII_COUNTS)
    if text.isascii():
        values.extend([0.0] * (len(_SCRIPTS) + 1))
        return values
    counts = [len(pattern.findall(text)) for pattern in _SCRIPTS]
    counts[-1] -= sum(counts[:-1])
    values.extend(float(c) for c in counts)
    values.append(float(len(_CYRILLIC_WORDS.findall(text))))
    return values


class HeuristicCounter:
    """The calibrated estimate (module docstring); `bound` is the UTF-8 length, a hard bound."""

    exact = False

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.name = f"{encoding}, heuristic"
        self._weights = WEIGHTS.get(encoding, WEIGHTS[O200K])

    def count(self, text: str) -> int:
        if not text:
            return 0
        estimate = sum(w * f for w, f in zip(self._weights, features(text), strict=False))
        return max(1, round(estimate))

    def bound(self, text: str) -> int:
        return len(text.encode("utf-8"))


@dataclass(slots=True)
class RequestTokens:
    """What one request will use.

    :param input: estimated input tokens (exact for text when the counter is exact).
    :param input_bound: never below the true input tokens, images aside.
    :param max_output: the output cap the request states (``max_tokens`` … times ``n``); ``None``
        when it states none; 0 for endpoints that produce no tokens (embeddings, moderations).
    :param images: image parts, counted at a fixed estimate.
    """

    input: int
    input_bound: int
    max_output: int | None
    images: int = 0


def request_tokens(url: str, body: dict[str, Any], counter: TokenCounter, *, estimate: bool = True) -> RequestTokens:
    """Count the input of one request body sent to ``url`` and read its output cap.

    :param estimate: also estimate the input. A caller that needs only the bound (the budget)
        passes ``False``: the heuristic's estimate costs two orders of magnitude more than its
        bound, the UTF-8 length. Without it ``input`` is the bound.
    """
    tally = _Tally(counter, estimate)
    route = _route(url)
    if route.endswith("/chat/completions"):
        tally.chat(body)
    elif route.endswith("/responses"):
        tally.responses(body)
    elif route.endswith("/completions"):
        tally.prompt(body.get("prompt"))
    elif route.endswith(("/embeddings", "/moderations")):
        tally.prompt(body.get("input"))
    else:  # an endpoint we do not know: every string in the body but the model name
        tally.json({k: v for k, v in body.items() if k != "model"})
    return RequestTokens(tally.estimate if estimate else tally.bound, tally.bound, max_output(url, body),
                         tally.images)


def max_output(url: str, body: dict[str, Any]) -> int | None:
    """The output tokens a request to ``url`` allows at most, all its choices together: the cap
    its endpoint reads (chat ``max_completion_tokens``, else ``max_tokens``; completions
    ``max_tokens``, 16 when absent; responses ``max_output_tokens``; any of them elsewhere) times
    ``n`` (and ``best_of`` for completions); 0 for embeddings and moderations. ``None`` when it
    states no cap. A value that is not a non-negative integer (a bool, a negative, a float) is
    no cap: the server refuses such a request, which then costs no output.
    """
    route = _route(url)
    if route.endswith("/chat/completions"):
        cap = _first_int(body, "max_completion_tokens", "max_tokens")
        return None if cap is None else cap * max(1, _first_int(body, "n") or 1)
    if route.endswith("/responses"):
        return _first_int(body, "max_output_tokens")
    if route.endswith("/completions"):
        cap = _first_int(body, "max_tokens")
        cap = LEGACY_COMPLETIONS_MAX_TOKENS if cap is None else cap
        return cap * max(1, _first_int(body, "n") or 1, _first_int(body, "best_of") or 1)
    if route.endswith(("/embeddings", "/moderations")):
        return 0
    return _first_int(body, "max_completion_tokens", "max_tokens", "max_output_tokens")


def _route(url: str) -> str:
    return url.rstrip("/").rsplit("/v1", 1)[-1]


class _Tally:
    """Adds up the estimate and the bound of the parts of one request."""

    def __init__(self, counter: TokenCounter, estimating: bool) -> None:
        self.counter = counter
        self.estimating = estimating
        self.estimate = 0
        self.bound = 0
        self.images = 0

    def text(self, value: Any) -> None:
        if isinstance(value, str) and value:
            if self.estimating:
                self.estimate += self.counter.count(value)
            self.bound += self.counter.bound(value)

    def fixed(self, tokens: int) -> None:
        self.estimate += tokens
        self.bound += tokens

    def json(self, value: Any) -> None:
        if value is not None:
            self.text(orjson.dumps(value).decode())

    def chat(self, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else ():
            if not isinstance(message, dict):
                continue
            self.fixed(TOKENS_PER_MESSAGE)
            self.text(message.get("role"))
            self.content(message.get("content"))
            if message.get("name"):
                self.fixed(TOKENS_PER_NAME)
                self.text(message.get("name"))
            for key in ("tool_calls", "function_call"):
                self.json(message.get(key))
            self.text(message.get("tool_call_id"))
        self.fixed(REPLY_PRIMING)
        for key in ("tools", "functions", "response_format"):
            self.json(body.get(key))

    def responses(self, body: dict[str, Any]) -> None:
        self.text(body.get("instructions"))
        items = body.get("input")
        if isinstance(items, str):
            self.fixed(TOKENS_PER_MESSAGE)
            self.text(items)
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            self.fixed(TOKENS_PER_MESSAGE)
            self.text(item.get("role"))
            self.content(item.get("content"))
            for key in ("output", "arguments", "name"):  # function_call / function_call_output items
                self.text(item.get(key))
        self.fixed(REPLY_PRIMING)
        self.json(body.get("tools"))
        self.json((body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None)

    def content(self, content: Any) -> None:
        if isinstance(content, str):
            self.text(content)
            return
        for part in content if isinstance(content, list) else ():
            if isinstance(part, str):
                self.text(part)
            elif isinstance(part, dict):
                kind = part.get("type", "")
                if kind in ("image_url", "input_image", "image"):
                    self.images += 1
                    self.fixed(IMAGE_TOKENS_LOW if _detail(part) == "low" else IMAGE_TOKENS)
                else:
                    self.text(part.get("text"))

    def prompt(self, value: Any) -> None:
        """``input``/``prompt``: a string, strings, token ids, or lists of token ids."""
        for item in _flatten(value):
            if isinstance(item, str):
                self.text(item)
            else:
                self.fixed(item)


def _flatten(value: Any) -> Iterator[str | int]:
    """Strings as they are; a list of token ids as its length (one token each)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        if value and all(is_int(v) for v in value):
            yield len(value)
            return
        for item in value:
            if isinstance(item, dict):  # moderation parts: {"type": "text", "text": ...}
                text = item.get("text")
                if isinstance(text, str):
                    yield text
            else:
                yield from _flatten(item)


def _detail(part: dict[str, Any]) -> Any:
    image = part.get("image_url")
    return image.get("detail") if isinstance(image, dict) else part.get("detail")


def _first_int(body: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if is_int(value) and value >= 0:
            return value
    return None
