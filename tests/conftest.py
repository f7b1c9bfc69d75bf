from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator

import pytest

from batchrun.simulator import Simulator, SimulatorConfig, run_in_thread


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp (the default transport) and the simulator run on asyncio only.
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never see the developer's keys or endpoint settings."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "BATCHRUN_")):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(autouse=True)
def fresh_logger() -> Iterator[None]:
    """Each test meets batchrun's logger as a library user does: no handler of the CLI's, its
    records propagating (so ``caplog`` sees them), whatever a CLI test before it set up."""
    logger = logging.getLogger("batchrun")
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:], logger.level, logger.propagate = [], logging.NOTSET, True
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(autouse=True)
def own_collector_thresholds() -> Iterator[None]:
    """A command run in the test process sets the collector's thresholds as it does its own
    process's (`runner.own_process`); the next test starts from the defaults again."""
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """The built-in simulator, healthy, on a thread of its own."""
    with run_in_thread(SimulatorConfig()) as simulator:
        yield simulator
