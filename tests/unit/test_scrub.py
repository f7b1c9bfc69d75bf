"""`scrub.Scrubber`: every run of `RUN` characters of a secret masked wherever it shows — text,
the strings and keys of a parsed body — and `suspect`, the raw-bytes check that spares clean
answers the walk, never missing a body that holds one."""

from __future__ import annotations

import orjson
import pytest

from batchrun.scrub import MASK, MIN_SECRET, RUN, Scrubber

KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123"
TOKEN = "gw/token+value=4567890abcdefgh"


def test_a_run_anywhere_is_masked_and_overlapping_runs_are_one_mask() -> None:
    scrub = Scrubber([KEY])
    assert scrub.text(f"key={KEY};") == f"key={MASK};"
    assert scrub.text(f"<{KEY[4 : 4 + RUN]}>") == f"<{MASK}>"
    assert scrub.text(f"{KEY[:20]}{KEY[10:]}") == MASK  # two runs that touch: one mask
    assert scrub.text(f"{KEY[: RUN - 1]} and {KEY[-(RUN - 1) :]}") == f"{KEY[: RUN - 1]} and {KEY[-(RUN - 1) :]}"


def test_every_secret_is_looked_for_and_short_ones_are_not() -> None:
    scrub = Scrubber([KEY, TOKEN, "ollama"])
    assert scrub.text(f"{TOKEN[2:16]} {KEY[-RUN:]}") == f"{MASK} {MASK}"
    assert scrub.text("ollama serves this") == "ollama serves this"
    assert len("ollama") < MIN_SECRET
    assert Scrubber([]).text(KEY) == KEY and not Scrubber(["short"]).suspect(orjson.dumps({"a": "short"}))


def test_a_parsed_body_is_scrubbed_in_its_strings_and_keys_and_nothing_else() -> None:
    scrub = Scrubber([KEY])
    body = {"a": [KEY, {KEY: 1.5, "n": None}], "b": f"Bearer {KEY}", "c": 12, "d": True}
    assert scrub.json(body) == {"a": [MASK, {MASK: 1.5, "n": None}], "b": f"Bearer {MASK}", "c": 12, "d": True}


@pytest.mark.parametrize("spelled", [
    KEY,
    KEY[5 : 5 + RUN],
    "".join(f"\\u{ord(c):04x}" for c in KEY[:RUN]),  # every character escaped
    KEY[:6] + "\\u0041" + KEY[7 : 7 + RUN],  # one escaped in the middle (KEY[6] is "A")
])
def test_suspect_flags_every_json_spelling_of_a_run(spelled: str) -> None:
    raw = b'{"choices": [{"text": "ok ' + spelled.encode() + b' ok"}]}'
    scrub = Scrubber([KEY])
    assert scrub.suspect(raw)
    assert MASK in orjson.dumps(scrub.json(orjson.loads(raw))).decode()


def test_a_slash_escaped_secret_is_found() -> None:
    scrub = Scrubber([TOKEN])
    raw = orjson.dumps({"echo": "x"}).replace(b'"x"', b'"' + TOKEN.replace("/", "\\/").encode() + b'"')
    assert scrub.suspect(raw) and scrub.json(orjson.loads(raw)) == {"echo": MASK}


def test_an_ordinary_answer_is_not_suspect() -> None:
    scrub = Scrubber([KEY])
    answer = {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
              "choices": [{"message": {"role": "assistant", "content": "caf\u00e9, sk-proj- and Abc are common"}}],
              "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}}
    assert not scrub.suspect(orjson.dumps(answer))
    assert not scrub.suspect(b'{"embedding": [0.0123456789, 0.0123456789, -0.5]}')
