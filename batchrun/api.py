"""What ``import batchrun`` offers beside its classes: each command of the CLI as a function
(docs/python-api.md). ``run_batch`` and ``label_file`` send requests and are async, each with a
``_sync`` twin for code that is not; ``estimate`` and ``report`` read a file and send nothing.

With ``RunConfig(mock=True)`` a run starts the built-in simulator for itself, as ``--mock``
does, unless ``base_url`` is a loopback address (a simulator already running there, such as
``batchrun mock-server``'s, is used).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from . import engine
from .accounting.estimate import Estimate, estimate_file
from .accounting.pricing import load_prices
from .accounting.report import Report, report_file
from .config import RunConfig, is_loopback
from .engine import Observer
from .label import LabelJob, LabelOutcome, label_dataset
from .label.job import DEFAULT_MODEL
from .runner import run_async
from .stats import RunStats
from .tokens import DEFAULT_MAX_OUTPUT_TOKENS

__all__ = ["estimate", "label_file", "label_file_sync", "report", "run_batch", "run_batch_sync"]


async def run_batch(config: RunConfig, **kwargs: Any) -> RunStats:
    """Run every line of ``config.input_path`` and write the ordered output (`engine.run_batch`,
    whose keyword arguments these are); with ``config.mock``, against the simulator (above)."""
    with _endpoint(config) as ready:
        return await engine.run_batch(ready, **kwargs)


def run_batch_sync(config: RunConfig, **kwargs: Any) -> RunStats:
    """`run_batch` for code that is not already async (scripts; not inside a running loop)."""
    stats: RunStats = run_async(partial(run_batch, config, **kwargs))
    return stats


async def label_file(data_path: Path | str, template_path: Path | str, *, output_path: Path | str | None = None,
                     labels: str | None = None, json_schema: Path | str | None = None, model: str = DEFAULT_MODEL,
                     system: str | None = None, params: Sequence[str] = (), id_field: str | None = None,
                     observer: Observer | None = None, **options: Any) -> LabelOutcome:
    """Label every row of a CSV, TSV or JSONL file (``batchrun label``): the rows, with the model's
    answers as new columns, in ``output_path`` (default ``<data stem>.labeled<suffix>``).

    :param labels: the allowed answers, ``"a,b,c"``; or ``json_schema``, a JSON Schema file.
    :param params: request fields as ``NAME=VALUE`` (``"max_tokens=50"``).
    :param observer: progress hooks, as `engine.run_batch` takes them.
    :param options: `RunConfig`'s fields but its paths (``base_url``, ``api_key``, ``concurrency``,
        ``mock``, ``limit``, ``restart`` …), with the key and base URL from the environment
        unless given (`RunConfig.from_env`).
    :returns: how it ended: `LabelOutcome.exit_code`, and ``counts`` of what the output holds.
    :raises ConfigError: / :raises InputFileError: nothing was sent.
    """
    job = LabelJob.from_files(Path(data_path), Path(template_path),
                              output_path=None if output_path is None else Path(output_path), model=model,
                              system=system, labels=labels,
                              schema_path=None if json_schema is None else Path(json_schema), params=params,
                              id_field=id_field)
    # Checked now, before the label run creates its work folder; its own paths replace these.
    given = RunConfig.from_env(job.data_path, **options)
    with _endpoint(given) as ready:
        def engine_config(requests: Path, results: Path) -> RunConfig:
            return dataclasses.replace(ready, input_path=requests, output_path=results)

        return await label_dataset(job, engine_config, observer=observer)


def label_file_sync(data_path: Path | str, template_path: Path | str, **kwargs: Any) -> LabelOutcome:
    """`label_file` for code that is not already async."""
    outcome: LabelOutcome = run_async(partial(label_file, data_path, template_path, **kwargs))
    return outcome


def estimate(input_path: Path | str, *, prices_path: Path | str | None = None, batch_discount: bool = False,
             default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS) -> Estimate:
    """Check every line of a JSONL input and estimate its tokens and cost (``batchrun estimate``);
    nothing is sent. Its ``problems`` and ``problem_lines`` are the lines a run would not send,
    ``to_dict()`` the ``--json`` document. It reads the whole file: from async code, call it
    through ``anyio.to_thread.run_sync``.

    :raises InputFileError: the file cannot be read.
    """
    prices = load_prices(None if prices_path is None else Path(prices_path), batch_discount=batch_discount)
    return estimate_file(Path(input_path), prices, default_max_output=default_max_tokens)


def report(output_path: Path | str, *, prices_path: Path | str | None = None, batch_discount: bool = False) -> Report:
    """Usage, cost and latency of a file of results in the OpenAI Batch output shape (``batchrun
    report``): ``usage()``, ``cost()``, ``to_dict()`` (the ``--json`` document). As `estimate`, it
    reads the whole file.

    :raises InputFileError: the file cannot be read.
    """
    prices = load_prices(None if prices_path is None else Path(prices_path), batch_discount=batch_discount)
    return report_file(Path(output_path), prices)


@contextlib.contextmanager
def _endpoint(config: RunConfig) -> Iterator[RunConfig]:
    """``config``, pointed at a simulator started for the run when it asks for one (above)."""
    if not config.mock or is_loopback(config.base_url):
        yield config
        return
    from .simulator import SimulatorConfig, run_in_thread

    # As --mock's: it refuses a model or a path OpenAI would refuse.
    with run_in_thread(SimulatorConfig(any_model=False, any_root=False)) as sim:
        yield dataclasses.replace(config, base_url=sim.base_url)
