"""`json_numbers`: what counts as a number read from JSON, for every reader that takes one."""

from __future__ import annotations

import orjson

from batchrun.json_numbers import is_int, is_number
from batchrun.usage import Usage


def test_a_json_bool_is_no_integer_and_no_number() -> None:
    values = orjson.loads(b"[1, 0, -3, 2.0, 1.5, true, false, null, \"1\"]")
    assert [is_int(v) for v in values] == [True, True, True, False, False, False, False, False, False]
    assert [is_number(v) for v in values] == [True, True, True, True, True, False, False, False, False]


def test_a_usage_of_true_counts_no_tokens() -> None:
    usage = Usage.from_dict(orjson.loads(b'{"prompt_tokens": true, "completion_tokens": 2, "total_tokens": false}'))
    assert (usage.prompt, usage.completion, usage.total) == (0, 2, 2)
