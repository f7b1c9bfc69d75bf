"""Sources asked in order: the first answer wins, ``None`` passes on, `StopBefore` ends the asking."""

from __future__ import annotations

import pytest

from batchrun.engine.sources import first_answer
from batchrun.errors import StopBefore
from batchrun.records import Job, LineError, Result
from batchrun.stats import EXIT_BUDGET


def job(index: int) -> Job:
    return Job(index, index + 1, f"req-{index}", "/v1/chat/completions", b"{}", "gpt-4o-mini")


class Table:
    """A source that answers the lines it has, and records what it was asked."""

    def __init__(self, answers: dict[int, str], *, stop_at: int | None = None) -> None:
        self.answers, self.stop_at = answers, stop_at
        self.asked: list[int] = []

    def take(self, item: Job | LineError) -> Result | None:
        self.asked.append(item.index)
        if item.index == self.stop_at:
            raise StopBefore("budget reached", EXIT_BUDGET)
        text = self.answers.get(item.index)
        return None if text is None else Result(item.index, item.custom_id, 200, None, {"text": text}, None)


def test_the_first_source_with_an_answer_wins_and_later_sources_are_not_asked() -> None:
    first, second = Table({0: "carried"}), Table({0: "batch", 1: "batch"})
    result = first_answer([first, second], job(0))
    assert result is not None and result.body == {"text": "carried"}
    assert second.asked == []


def test_a_source_without_the_answer_passes_the_line_on() -> None:
    first, second = Table({}), Table({1: "batch"})
    result = first_answer([first, second], job(1))
    assert result is not None and result.body == {"text": "batch"}
    assert (first.asked, second.asked) == ([1], [1])


def test_no_source_has_it_the_line_goes_online() -> None:
    sources = [Table({}), Table({})]
    assert first_answer(sources, job(2)) is None
    assert first_answer([], job(2)) is None
    assert [source.asked for source in sources] == [[2], [2]]


def test_a_source_that_stops_before_a_line_ends_the_asking_with_its_reason_and_code() -> None:
    later = Table({0: "never"})
    with pytest.raises(StopBefore) as stopped:
        first_answer([Table({}, stop_at=0), later], job(0))
    assert (stopped.value.reason, stopped.value.code, str(stopped.value)) == ("budget reached", EXIT_BUDGET,
                                                                               "budget reached")
    assert later.asked == []


def test_a_bad_line_is_asked_about_too() -> None:
    bad = LineError(4, 5, "req-4", "invalid_json", "not JSON")
    source = Table({4: "from before"})
    result = first_answer([source], bad)
    assert result is not None and result.body == {"text": "from before"}
