"""``batchrun run --ray``: a run's shards (`parts.plan`) as Ray tasks, then `parts.assemble`.

The only module that imports Ray, and only when a run asks for it (``pip install
'batchrun-llm[ray]'``). Each shard is one task calling `engine.run_batch` for its range, as the
local runner does one after another: the engine stays the engine.

- Its part and checkpoint are in ``out.jsonl.shards/``, which every node must reach (on a real
  cluster: shared storage mounted at the same path).
- A task whose worker or node dies is retried by Ray (``max_retries``); the retry resumes from
  the shard's checkpoint, so nothing answered is sent again. A driver killed and started again
  resumes every shard the same way (the plan is saved before any shard runs).
- Ctrl-C in the driver cancels the tasks: Ray delivers SIGINT to each worker, where the engine
  drains as a single run does (its requests in flight get ``--drain-timeout``); a second Ctrl-C
  cancels them outright.
- One `budget.BudgetServer` actor holds the run's rate budget (``--rpm``/``--tpm`` and the limits
  the shards learn) and its ``--max-cost`` cap; each shard leases slices of them, so none of its
  requests waits on a call to the actor.
- Credentials never travel as task arguments (Ray keeps those in its control store). A local
  cluster's processes inherit them from the driver's environment, put there before the cluster
  starts; on an existing cluster each worker reads the key from ``--api-key-env`` on its node.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import logging
import os
import time
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import orjson

from ..config import ApiKey, RunConfig
from ..engine import run_batch
from ..errors import BatchrunError, ConfigError
from ..runner import run_async
from ..stats import EXIT_STOPPED, EXIT_USAGE, RunStats
from .budget import BudgetServer, Grant, Holding, News, ShardBudget, Want
from .parts import Plan, assemble, finished, part_config, plan, spent_before
from .shards import Shard, default_count

log = logging.getLogger("batchrun")

SECRETS_ENV = "BATCHRUN_RAY_CREDENTIALS"  # how a local cluster's workers get the driver's credentials
TASK_RETRIES = 3  # a shard's worker or node may die this many times before the run stops


@dataclass(frozen=True)
class ShardOutcome:
    """What a shard's task sends back: enough to end the run as a single run would."""

    number: int
    stop_reason: str | None
    stop_code: int
    sent: int
    tokens: int


def run_on_ray(config: RunConfig, *, address: str | None = None, shards: int | None = None) -> RunStats:
    """Run ``config`` as shards on a Ray cluster and assemble their parts.

    :param address: an existing cluster's (``ray://…`` or ``host:port``); ``None``: the one
        ``RAY_ADDRESS`` names, else a local cluster using every core.
    :param shards: how many; default `shards.default_count` of the cluster's CPUs and the input.
    :raises ConfigError: the run cannot be sharded as given (nothing was sent).
    """
    if finished(config):  # up to date, or refused, as a single run judges it
        stats: RunStats = run_async(partial(run_batch, config))
        return stats
    ray: Any = _import_ray()
    if not ray.is_initialized() and address is None and not os.environ.get("RAY_ADDRESS"):
        os.environ[SECRETS_ENV] = _secrets(config)  # the local cluster started now inherits them
        try:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        finally:
            del os.environ[SECRETS_ENV]
    elif config.headers or (config.api_key is not None and not os.environ.get(config.api_key_env)):
        raise ConfigError("on an existing Ray cluster each worker reads the key from "
                          f"${config.api_key_env} on its node, and nothing else: --header and a "
                          "user:password@ in --base-url can be used with a local cluster only")
    elif not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    size = config.input_path.stat().st_size
    made = plan(config, shards or default_count(cpus, size))
    log.info("running %d shards on %d CPUs", len(made.shards), cpus)
    task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(_run_shard)
    # The run's one rate budget and cap; it takes no CPU a shard could use.
    server = ray.remote(BudgetServer).options(num_cpus=0).remote(rpm=config.rpm, tpm=config.tpm,
                                                                   max_cost=config.max_cost,
                                                                   spent=spent_before(config, made))
    started = time.monotonic()
    refs = [task.remote(_secretless(part_config(config, shard, made.run_id)), shard, server) for shard in made.shards]
    outcomes: list[ShardOutcome] = _gather(ray, refs)
    stopped = [outcome for outcome in outcomes if outcome.stop_reason is not None]
    if stopped:
        return _stopped(config, made, outcomes, stopped)
    return assemble(config, made, wall_s=time.monotonic() - started, sent=sum(o.sent for o in outcomes),
                    tokens=sum(o.tokens for o in outcomes))


def _import_ray() -> Any:
    """Ray, typed loosely: its stubs are partial, and mypy runs without it too.

    :raises ConfigError: it is not installed.
    """
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'batchrun-llm[ray]' (in a checkout: pip install -e '.[ray]')") from None


def _secrets(config: RunConfig) -> str:
    """The credentials, for the environment a local cluster's processes inherit."""
    return orjson.dumps({"authorization": config.api_key.header() if config.api_key else None,
                         "headers": list(config.headers)}).decode()


def _credentials(api_key_env: str) -> tuple[ApiKey | None, tuple[str, ...]]:
    """A worker's key and headers: those its local cluster inherited from the driver, else the
    key in ``api_key_env`` on its node."""
    handed = os.environ.get(SECRETS_ENV)
    if handed is None:
        key = os.environ.get(api_key_env)
        return (ApiKey(key) if key else None), ()
    secrets = orjson.loads(handed)
    authorization: str | None = secrets["authorization"]
    if authorization is None:
        return None, tuple(secrets["headers"])
    scheme, _, value = authorization.partition(" ")
    if scheme == "Basic":
        user, _, password = base64.b64decode(value).decode().partition(":")
        return ApiKey.basic(user, password), tuple(secrets["headers"])
    return ApiKey(value, scheme=scheme), tuple(secrets["headers"])


def _secretless(part: RunConfig) -> dict[str, Any]:
    """A shard's `RunConfig` fields but the credentials, which a worker gets itself (`_credentials`)."""
    return {field.name: getattr(part, field.name) for field in fields(part) if field.name not in ("api_key", "headers")}


def _run_shard(settings: dict[str, Any], shard: Shard, server: Any) -> ShardOutcome:
    """A shard's task, on a worker: its range through the engine, with SIGINT draining it, its
    pace and spending leased from the run's `BudgetServer` actor. ``settings``: its `part_config`
    (`_secretless`)."""
    key, headers = _credentials(settings["api_key_env"])
    part = RunConfig(**settings, api_key=key, headers=headers)
    shared = ShardBudget(_ActorClient(server), shard.number)
    try:
        stats: RunStats = run_async(partial(run_batch, part, handle_signals=True, shared=shared))
    except BatchrunError as exc:  # refused, nothing sent: another run (a killed driver's task) holds its part
        return ShardOutcome(shard.number, str(exc), EXIT_USAGE, 0, 0)
    return ShardOutcome(shard.number, stats.stop_reason, stats.stop_code, stats.sent_this_start,
                        stats.tokens_this_start)


class _ActorClient:
    """A `budget.BudgetClient` calling the `BudgetServer` actor (an actor's call is awaitable)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def lease(self, shard: int, holding: Holding, want: Want) -> Grant:
        grant: Grant = await self._actor.lease.remote(shard, holding, want)
        return grant

    async def give_back(self, shard: int, holding: Holding) -> None:
        await self._actor.give_back.remote(shard, holding)

    async def report(self, shard: int, holding: Holding, news: News) -> None:
        await self._actor.report.remote(shard, holding, news)


def _gather(ray: Any, refs: list[Any]) -> list[ShardOutcome]:
    """Every task's outcome; Ctrl-C cancels them (they drain), a second one outright."""
    try:
        return list(ray.get(refs))
    except KeyboardInterrupt:
        log.warning("SIGINT: no new requests in any shard; waiting for the requests in flight (again to cancel them)")
        for ref in refs:
            ray.cancel(ref)
        try:
            return [_outcome(ray, ref, number) for number, ref in enumerate(refs)]
        except KeyboardInterrupt:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise


def _outcome(ray: Any, ref: Any, number: int) -> ShardOutcome:
    """A cancelled task's outcome: what it returned after draining, or a stop if Ray dropped it."""
    try:
        outcome: ShardOutcome = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return ShardOutcome(number, "interrupted by SIGINT", EXIT_STOPPED, 0, 0)
    return outcome


def _stopped(config: RunConfig, made: Plan, outcomes: list[ShardOutcome], stopped: list[ShardOutcome]) -> RunStats:
    """A run with stopped shards ends as the first of them: its reason and exit code; every
    shard's checkpoint is kept for the next start."""
    first = stopped[0]
    stats = RunStats(config.out, config.errors_path, total_hint=made.lines, simulated=config.mock)
    stats.stop_reason = f"shard {first.number + 1} of {len(made.shards)}: {first.stop_reason}"
    stats.stop_code = first.stop_code
    stats.written = sum(outcome.sent for outcome in outcomes)
    return stats
