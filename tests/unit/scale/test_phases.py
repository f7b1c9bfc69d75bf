"""The line that says where a sharded run's time went."""

from __future__ import annotations

import pytest

from batchrun.scale.phases import Phases


def test_the_line_has_each_phase_in_the_order_it_ended_and_each_shard_s_start_and_run() -> None:
    phases = Phases()
    with phases.timed("ray start"), phases.timed("split", beside="ray start"):
        pass
    with phases.timed("shards"):
        pass
    phases.shards = [(1.234, 15.9), (1.5, 16.0)]
    phases.took = {name: 1.0 + index for index, name in enumerate(phases.took)}
    assert phases.line() == ("phases: split 1.00 s (beside ray start), ray start 2.00 s, "
                             "shards 3.00 s (started after 1.23, 1.50 s; ran 15.90, 16.00 s)")


def test_a_phase_that_raises_is_timed_too() -> None:
    phases = Phases()
    with pytest.raises(OSError), phases.timed("merge"):
        raise OSError("disk full")
    assert list(phases.took) == ["merge"] and phases.took["merge"] >= 0
