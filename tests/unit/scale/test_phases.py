"""The line that says where a sharded run's time went."""

from __future__ import annotations

import pytest

from batchrun.scale.phases import PartTimes, Phases


def test_the_line_has_each_phase_in_the_order_it_ended_and_each_shard_s_parts() -> None:
    phases = Phases()
    with phases.timed("ray start"), phases.timed("split", beside="ray start"):
        pass
    with phases.timed("shards"):
        pass
    # Shard 1 (slot 0) ran parts 0 and 2, shard 2 parts 1 and 3; each part's task took 0.1 s
    # besides its run, and 0.1 s passed between a part's end and the next one's start.
    phases.parts = [PartTimes(1, 1.5, 8.6, 7.0), PartTimes(0, 1.234, 8.334, 7.0), PartTimes(0, 8.434, 15.0, 6.466),
                    PartTimes(1, 8.7, 16.0, 7.2)]
    phases.took = {name: 1.0 + index for index, name in enumerate(phases.took)}
    assert phases.line() == ("phases: split 1.00 s (beside ray start), ray start 2.00 s, "
                             "shards 3.00 s (started after 1.23, 1.50 s; ran 13.47, 14.20 s; ended after 15.00, "
                             "16.00 s; parts 2, 2; 0.15 s a part besides its run)")


def test_a_phase_that_raises_is_timed_too() -> None:
    phases = Phases()
    with pytest.raises(OSError), phases.timed("merge"):
        raise OSError("disk full")
    assert list(phases.took) == ["merge"] and phases.took["merge"] >= 0
