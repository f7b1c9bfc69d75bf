"""An answer cut at its output cap, in each API's shape."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.output_cap import hit_output_cap


@pytest.mark.parametrize(("body", "cut"), [
    ({"choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}]}, True),
    ({"choices": [{"finish_reason": "stop"}]}, False),
    ({"choices": []}, False),
    ({"choices": ["length"]}, False),
    ({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}, True),
    ({"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}, False),
    ({"status": "completed", "incomplete_details": {"reason": "max_output_tokens"}}, False),
    ({"status": "incomplete", "incomplete_details": "max_output_tokens"}, False),
    # A chat answer's choices decide, whatever else the body says.
    ({"choices": [{"finish_reason": "stop"}], "status": "incomplete",
      "incomplete_details": {"reason": "max_output_tokens"}}, False),
    (None, False),
    ("length", False),
    ([{"finish_reason": "length"}], False),
])
def test_a_cut_answer_is_told_from_a_finished_one(body: Any, cut: bool) -> None:
    assert hit_output_cap(body) is cut
