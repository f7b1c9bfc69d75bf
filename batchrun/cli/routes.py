"""The way a command's lines go — online, through the provider's Batch API (``--via batch``), or
as shards on a Ray cluster (``--ray``) — for ``batchrun run`` and ``batchrun label`` alike: the
options, what may be combined, and the one call that runs a `RunConfig` on its route."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ..batchapi.options import BatchOptions
from ..batchapi.pending import Pending
from ..config import RunConfig
from ..errors import ConfigError
from ..scale.shards import SHARDS_RANGE
from ..settings import RAY
from ..stats import EXIT_STOPPED, RunStats
from .batch_options import batch_options, make_batch_options
from .bounded import Bounded
from .declared import DeclaredOption
from .engine_options import EngineOptions

if TYPE_CHECKING:
    from ..engine.sources import Source

F = TypeVar("F", bound=Callable[..., Any])

_RAY_OPTIONS = [
    click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
                 cls=DeclaredOption, group=RAY,
                 help="Run as shards on a Ray cluster (pip install 'batchrun-llm[ray]'): the one at ADDRESS, the one "
                      "$RAY_ADDRESS names, or a local one of the run's own using every core."),
    click.option("--shards", type=Bounded(SHARDS_RANGE), metavar="N", cls=DeclaredOption, group=RAY,
                 help="With --ray: how many contiguous parts of the input run at once. Default: one per CPU, "
                      "fewer for a small input."),
]
_BATCH_PARAMS = ("via", "detach", "cancel", "batch_deadline", "poll_interval", "batch_max_requests",
                 "batch_max_bytes", "batch_mixed_models", "batch_queue_tokens")


def route_options(command: F) -> F:
    """Add ``--ray``, ``--shards`` and the Batch API's options; `Route.take` reads them back."""
    command = batch_options(command)
    for option in reversed(_RAY_OPTIONS):
        command = option(command)
    return command


@dataclass(frozen=True)
class Route:
    """Where a run's lines are answered.

    :param batch: through the Batch API with these options; ``None``: not.
    :param ray_address: as shards on Ray: ``""`` for a local cluster (or the one ``RAY_ADDRESS``
        names), else the cluster's address; ``None``: in this process.
    :param shards: with Ray, how many (default: by the cluster's CPUs and the input).
    """

    batch: BatchOptions | None = None
    ray_address: str | None = None
    shards: int | None = None

    @classmethod
    def take(cls, params: dict[str, Any]) -> Route:
        """The route that a command's options (`route_options`) ask for, taken out of ``params``.

        :raises click.UsageError: options that do not go together.
        """
        ray_address, shards = params.pop("ray_address"), params.pop("shards")
        batch = make_batch_options(*(params.pop(name) for name in _BATCH_PARAMS))
        if shards is not None and ray_address is None:
            raise click.UsageError("--shards only applies with --ray")
        if ray_address is not None and batch is not None:
            raise click.UsageError("--ray runs online: it cannot be combined with --via batch")
        if params.get("limit") is not None and (ray_address is not None or batch is not None):
            route = "--ray" if ray_address is not None else "--via batch"
            raise click.UsageError(f"--limit sends the first lines online, from one process: it cannot be combined "
                                   f"with {route}")
        return cls(batch, ray_address, shards)

    def run(self, options: EngineOptions, config: RunConfig, sources: Sequence[Source] = ()) -> RunStats | Pending:
        """Run ``config`` on this route: `Pending` when its batches are still at the provider.

        :param sources: answers found before sending (`engine.sources`), e.g. those ``label``
            keeps from its earlier run.
        :raises ConfigError: sources on Ray, whose shards do not take them.
        """
        if self.ray_address is not None:
            if sources:
                raise ConfigError("--ray cannot keep the answers of an earlier run: run without --ray to label "
                                  "only the new or changed rows, or add --restart to label every row again")
            from ..scale.ray_run import run_on_ray

            try:
                return run_on_ray(config, address=self.ray_address or None, shards=self.shards,
                                  display=options.progress())
            except KeyboardInterrupt:  # while the cluster started, or the parts were put together
                click.echo("\nbatchrun: interrupted; run the same command again to continue", err=True)
                sys.exit(EXIT_STOPPED)
        if self.batch is not None:
            return options.run_via_batch(config, self.batch, sources)
        return options.run(config, sources)


def exit_pending(pending: Pending, quiet: bool) -> NoReturn:
    """End the command as a start whose batches are still at the provider ends: say so, and why
    or what to run next, unless quiet and all is well."""
    if not quiet or pending.exit_code:
        click.echo(f"batchrun: {pending.message}", err=True)
    sys.exit(pending.exit_code)
