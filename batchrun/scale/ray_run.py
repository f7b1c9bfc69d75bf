"""``batchrun run --ray``: a run's shards (`parts.plan`) as Ray tasks, then `parts.assemble`.

The only module that imports Ray, and only when a run asks for it (``pip install
'batchrun-llm[ray]'``). Each shard is one task calling `engine.run_batch` for its range, as the
local runner does one after another: the engine stays the engine.

- Its part and checkpoint are in ``out.jsonl.shards/``, which every node must reach (on a real
  cluster: shared storage mounted at the same path). Relative paths are the driver's: each task
  works in the driver's working directory.
- A task whose worker or node dies is retried by Ray (``max_retries``); the retry resumes from
  the shard's checkpoint, so nothing answered is sent again. A driver killed and started again
  resumes every shard the same way (the plan is saved before any shard runs).
- Ctrl-C in the driver cancels the tasks: Ray delivers SIGINT to each worker, where the engine
  drains as a single run does (its requests in flight get ``--drain-timeout``); a second Ctrl-C
  cancels them outright. Either way the run's report is written, as a stopped run's.
- One actor (`desk.RunDesk`) holds the run's rate budget (``--rpm``/``--tpm`` and the limits
  the shards learn) and its ``--max-cost`` cap; each shard leases slices of them, so none of its
  requests waits on a call to the actor. It also holds each shard's counters, which the driver
  adds up for its progress display.
- Which cluster: without an address (argument or ``RAY_ADDRESS``), a local cluster of the run's
  own, started for it and stopped after it; never one a ``ray start`` left running, which Ray
  would join by itself and whose workers have not the run's credentials. With an address, or a
  connection this process already made, an existing cluster.
- Credentials never travel as task arguments (Ray keeps those in its control store). The run's
  own cluster's processes inherit them from the driver's environment, put there before the
  cluster starts; on an existing cluster each worker reads the key from ``--api-key-env`` on its
  node, and a shard whose node has none when the driver had one is refused (nothing sent).
- Ray's own log lines reach stderr only when batchrun's log shows debug lines (``-v``).
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from ..accounting.pricing import load_prices
from ..accounting.report import Report
from ..config import ApiKey, RunConfig
from ..engine import run_batch
from ..errors import BatchrunError, ConfigError
from ..runner import own_process, run_async
from ..stats import EXIT_STOPPED, EXIT_USAGE, RunStats
from .budget import Grant, Holding, News, ShardBudget, Want
from .desk import RunDesk
from .lean import without_idle_processes
from .parts import Plan, assemble, early_split, finished, part_config, plan, save_stopped, spent_before
from .phases import Phases
from .progress import Display, Post, ShardPoster, add_up
from .shards import Shard, default_count

log = logging.getLogger("batchrun")

SECRETS_ENV = "BATCHRUN_RAY_CREDENTIALS"  # how the run's own cluster's workers get the driver's credentials
TASK_RETRIES = 3  # a shard's worker or node may die this many times before the run stops
POLL = 0.25  # seconds between the driver's looks at the shards' progress
DESK_WAIT = 60.0  # seconds a task looks for the run's actor, which the driver creates right after it
_INIT = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}


@dataclass(frozen=True)
class ShardOutcome:
    """What a shard's task sends back: enough to end the run as a single run would."""

    number: int
    stop_reason: str | None
    stop_code: int
    sent: int
    tokens: int
    began: float = 0.0  # when the task began to run (`time.time`)
    ran_s: float = 0.0  # how long its run took


@dataclass(frozen=True)
class _Where:
    """What a task needs to know of the driver: its working directory, whether the cluster is
    the run's own (its workers inherited the credentials), whether the run has a key, and the
    name of its actor."""

    cwd: str
    own: bool
    keyed: bool
    desk: str  # the name of the run's `RunDesk` actor


def run_on_ray(config: RunConfig, *, address: str | None = None, shards: int | None = None,
               display: Display | None = None) -> RunStats:
    """Run ``config`` as shards on a Ray cluster and assemble their parts.

    :param address: an existing cluster's (``ray://…`` or ``host:port``); ``None``: the one
        ``RAY_ADDRESS`` names, else a local cluster of the run's own, using every core.
    :param shards: how many; default `shards.default_count` of the cluster's CPUs and the input.
    :param display: shows the shards' progress added up, as a single run's.
    :raises ConfigError: the run cannot be sharded as given, or the cluster cannot be reached
        (nothing was sent).
    """
    if finished(config):  # up to date, or refused, as a single run judges it
        stats: RunStats = run_async(partial(run_batch, config))
        return stats
    ray: Any = _import_ray()
    phases = Phases()
    with ThreadPoolExecutor(1, thread_name_prefix="batchrun-split") as pool:
        # With the count given, the input is split while Ray starts (a second's pass over 100 MB).
        early = None if shards is None else pool.submit(_timed, phases, "split", early_split, config, shards)
        with _connected(ray, config, address, phases) as own:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            with phases.timed("plan"):
                made = plan(config, shards or default_count(cpus, config.input_path.stat().st_size),
                            None if early is None else early.result)
            count = len(made.shards)
            log.info("running %d shard%s on %d CPU%s", count, "" if count == 1 else "s", cpus, "" if cpus == 1 else "s")
            outcomes, wall_s = _run_shards(ray, config, made, own, display, phases)
    sent, tokens = sum(o.sent for o in outcomes), sum(o.tokens for o in outcomes)
    stopped = [outcome for outcome in outcomes if outcome.stop_reason is not None]
    try:
        if stopped:
            return _stopped(config, made, stopped[0], wall_s=wall_s, sent=sent, tokens=tokens)
        with phases.timed("merge"):
            return assemble(config, made, wall_s=wall_s, sent=sent, tokens=tokens)
    finally:
        log.debug("%s", phases.line())


def _run_shards(ray: Any, config: RunConfig, made: Plan, own: bool, display: Display | None,
                phases: Phases) -> tuple[list[ShardOutcome], float]:
    """Each shard of ``made`` as a task, and their outcomes, in order; the seconds they took."""
    task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(_run_shard)
    where = _Where(os.getcwd(), own, config.api_key is not None, f"batchrun-desk-{made.run_id}-{secrets.token_hex(4)}")
    spent = spent_before(config, made)
    started, submitted = time.monotonic(), time.time()
    with phases.timed("shards"):
        # The tasks first, then the actor they find by its name: Ray gives the tasks the workers
        # it prestarted with the cluster and starts one for the actor. The actor first (its handle
        # a task argument), Ray started a fourth worker, a CPU second while every core is busy.
        refs = [task.remote(_secretless(part_config(config, shard, made.run_id)), where, shard, display is not None)
                for shard in made.shards]
        # The run's one rate budget and cap, and its progress: one actor, taking no CPU a shard
        # could use. Ray registers a named actor before `.remote` returns.
        server = ray.remote(RunDesk).options(num_cpus=0, name=where.desk).remote(
            rpm=config.rpm, tpm=config.tpm, max_cost=config.max_cost, spent=spent)
        board = None if display is None else server
        watch = _Watch(config, made, display)
        try:
            outcomes = _gather(ray, refs, partial(watch.look, ray, board))
        finally:
            watch.close()
    phases.shards = [(max(0.0, o.began - submitted), o.ran_s) for o in outcomes]
    return outcomes, time.monotonic() - started


def _timed(phases: Phases, name: str, work: Callable[..., Any], *args: Any) -> Any:
    with phases.timed(name, beside="ray start"):
        return work(*args)


@contextlib.contextmanager
def _connected(ray: Any, config: RunConfig, address: str | None, phases: Phases) -> Iterator[bool]:
    """Connected to the cluster the run uses (module docstring); inside, whether it is the run's
    own. Ray's logger is quiet meanwhile unless batchrun's shows debug lines. The start and the
    stop (or joining and leaving) are timed in ``phases``.

    :raises ConfigError: the credentials cannot reach an existing cluster's workers, or the
        cluster cannot be joined.
    """
    ray_log = logging.getLogger("ray")
    level = ray_log.level
    verbose = log.isEnabledFor(logging.DEBUG)
    if not verbose:
        ray_log.setLevel(logging.ERROR)
    try:
        if ray.is_initialized():  # the caller's own connection: not to be closed here
            _check_existing(config)
            yield False
            return
        own = address is None and not os.environ.get("RAY_ADDRESS")
        if own:
            os.environ[SECRETS_ENV] = _secrets(config)  # the cluster started now inherits them
        else:
            _check_existing(config)
        try:
            # "local": a new cluster even when one is running here (Ray would join that one).
            with contextlib.nullcontext() if verbose else _stderr_muted(), phases.timed("ray start"), \
                    without_idle_processes() if own else contextlib.nullcontext():
                ray.init(address="local" if own else address, **_INIT)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            joining = "start a local Ray cluster" if own else f"join the Ray cluster at {address or '$RAY_ADDRESS'}"
            raise ConfigError(f"--ray: cannot {joining}: {str(exc).splitlines()[0]}") from None
        finally:
            os.environ.pop(SECRETS_ENV, None)
        try:
            yield own
        finally:
            with phases.timed("ray stop"):
                ray.shutdown()  # the run's own cluster stops; from an existing one, the driver leaves
    finally:
        ray_log.setLevel(level)


@contextlib.contextmanager
def _stderr_muted() -> Iterator[None]:
    """File descriptor 2 on /dev/null: Ray's core writes its warnings there before its logging
    is set up (a line a second while a cluster refuses the connection), which no logger
    or environment variable silences; the processes it starts meanwhile keep their own logs."""
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _check_existing(config: RunConfig) -> None:
    """:raises ConfigError: credentials an existing cluster's workers cannot read on their node."""
    if config.headers or (config.api_key is not None and not os.environ.get(config.api_key_env)):
        raise ConfigError("on an existing Ray cluster each worker reads the key from "
                          f"${config.api_key_env} on its node, and nothing else: --header and a "
                          "user:password@ in --base-url can be used with --ray's own local cluster only")


def _import_ray() -> Any:
    """Ray, typed loosely: its stubs are partial, and mypy runs without it too.

    :raises ConfigError: it is not installed.
    """
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'batchrun-llm[ray]' (in a checkout: pip install -e '.[ray]')") from None


def _secrets(config: RunConfig) -> str:
    """The credentials, for the environment the run's own cluster's processes inherit."""
    return orjson.dumps({"authorization": config.api_key.header() if config.api_key else None,
                         "headers": list(config.headers)}).decode()


def _credentials(api_key_env: str, where: _Where) -> tuple[ApiKey | None, tuple[str, ...]]:
    """A worker's key and headers: those the run's own cluster inherited from the driver, or
    the key in ``api_key_env`` on an existing cluster's node.

    :raises ConfigError: the driver had a key and this worker has none.
    """
    node = socket.gethostname()
    if not where.own:
        key = os.environ.get(api_key_env)
        if where.keyed and not key:
            raise ConfigError(f"${api_key_env} is not set on the Ray node {node}: on an existing cluster each worker "
                              "reads the key there; set it in the environment the node was started with")
        return (ApiKey(key) if key else None), ()
    handed = os.environ.get(SECRETS_ENV)
    if handed is None:
        raise ConfigError(f"the Ray worker on {node} did not inherit the run's credentials")
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


def _run_shard(settings: dict[str, Any], where: _Where, shard: Shard, shown: bool) -> ShardOutcome:
    """A shard's task, on a worker: its range through the engine, with SIGINT draining it, its
    pace and spending leased from the run's `RunDesk` actor (``where.desk``), its progress posted
    to it too when ``shown``. ``settings``: its `part_config` (`_secretless`)."""
    began = time.time()
    try:
        _work_in(where.cwd, settings)
        key, headers = _credentials(settings["api_key_env"], where)
        part = RunConfig(**settings, api_key=key, headers=headers)
    except ConfigError as exc:  # refused, nothing sent
        return ShardOutcome(shard.number, str(exc), EXIT_USAGE, 0, 0)
    server = _desk(_import_ray(), where.desk)
    board = server if shown else None
    shared = ShardBudget(_ActorClient(server), shard.number)
    poster = None if board is None else ShardPoster(lambda post: board.post.remote(shard.number, post))
    own_process()  # a worker of this run's, as a command's process is its own
    try:
        stats: RunStats = run_async(partial(run_batch, part, handle_signals=True, shared=shared, observer=poster))
    except BatchrunError as exc:  # refused, nothing sent: another run (a killed driver's task) holds its part
        return ShardOutcome(shard.number, str(exc), EXIT_USAGE, 0, 0)
    if board is not None:  # the last count is on the board before the driver hears the task is done
        _import_ray().get(board.post.remote(shard.number, Post.of(stats)))
    return ShardOutcome(shard.number, stats.stop_reason, stats.stop_code, stats.sent_this_start,
                        stats.tokens_this_start, began, stats.wall_s)


def _desk(ray: Any, name: str, pause: Callable[[float], None] = time.sleep) -> Any:
    """The run's `RunDesk` actor, found by its name. The driver creates it right after it submits
    the tasks, and Ray registers it before that call returns; but a worker the cluster had idle,
    with batchrun imported, can start its task sooner.

    :raises ValueError: it is not there after `DESK_WAIT` seconds (the task fails).
    """
    waited = 0.0
    while True:
        try:
            return ray.get_actor(name)
        except ValueError:
            if waited >= DESK_WAIT:
                raise
        pause(0.01)
        waited += 0.01


def _work_in(cwd: str, settings: dict[str, Any]) -> None:
    """Work in the driver's directory, where the run's relative paths are (a worker of an
    existing cluster starts in its node's).

    :raises ConfigError: it is not on this node, and a path is relative.
    """
    try:
        os.chdir(cwd)
    except OSError as exc:
        paths = [settings["input_path"], settings["output_path"], settings["prices_path"]]
        if any(path is not None and not Path(path).is_absolute() for path in paths):
            raise ConfigError(f"the driver's working directory {cwd} cannot be used on the Ray node "
                              f"{socket.gethostname()} ({exc.strerror}): give absolute paths on storage "
                              "every node mounts at the same place") from None


class _ActorClient:
    """A `budget.BudgetClient` calling the `RunDesk` actor (an actor's call is awaitable)."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor

    async def lease(self, shard: int, holding: Holding, want: Want) -> Grant:
        grant: Grant = await self._actor.lease.remote(shard, holding, want)
        return grant

    async def give_back(self, shard: int, holding: Holding) -> None:
        await self._actor.give_back.remote(shard, holding)

    async def report(self, shard: int, holding: Holding, news: News) -> None:
        await self._actor.report.remote(shard, holding, news)


class _Watch:
    """The driver's side of the progress: the shards' posts added up into one `RunStats` (the
    one object the display reads) and shown."""

    def __init__(self, config: RunConfig, made: Plan, display: Display | None) -> None:
        self._prices = load_prices(config.prices_path, batch_discount=config.batch_discount)
        self.stats = RunStats(config.out, config.errors_path, Report(self._prices, source=str(config.out)),
                              total_hint=made.lines, simulated=config.mock)
        self._display = display
        if display is not None:
            display.started(self.stats)

    def look(self, ray: Any, board: Any) -> None:
        if self._display is not None:
            add_up(self.stats, ray.get(board.read.remote()), self._prices)
            self._display.moved(self.stats)

    def close(self) -> None:
        if self._display is not None:
            self._display.close(self.stats)


def _gather(ray: Any, refs: list[Any], look: Any) -> list[ShardOutcome]:
    """Every task's outcome, calling ``look`` every `POLL` seconds meanwhile. Ctrl-C cancels the
    tasks (they drain); a second one cancels them outright, and they count as interrupted."""
    try:
        _wait(ray, refs, look)
    except KeyboardInterrupt:
        log.warning("SIGINT: no new requests in any shard; waiting for the requests in flight (again to cancel them)")
        for ref in refs:
            ray.cancel(ref)
        try:
            _wait(ray, refs, look)
        except KeyboardInterrupt:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
    return [_outcome(ray, ref, number) for number, ref in enumerate(refs)]


def _wait(ray: Any, refs: list[Any], look: Any) -> None:
    pending = refs
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL)
        look()


def _outcome(ray: Any, ref: Any, number: int) -> ShardOutcome:
    """A finished task's outcome: what it returned (after draining, when cancelled), or a stop
    when Ray dropped it: cancelled outright, or failed past its retries (its checkpoint stays)."""
    try:
        outcome: ShardOutcome = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return ShardOutcome(number, "interrupted by SIGINT", EXIT_STOPPED, 0, 0)
    except ray.exceptions.RayError as exc:  # its worker or node died more than TASK_RETRIES times
        return ShardOutcome(number, f"its Ray task failed: {str(exc).strip().splitlines()[0]}", EXIT_STOPPED, 0, 0)
    return outcome


def _stopped(config: RunConfig, made: Plan, first: ShardOutcome, *, wall_s: float, sent: int, tokens: int) -> RunStats:
    """A run with stopped shards ends as the first of them: its reason and exit code, and the
    report beside the output (`parts.save_stopped`); every shard's checkpoint is kept for the
    next start.

    :raises ConfigError: the first was refused before anything was sent.
    """
    reason = f"shard {first.number + 1} of {len(made.shards)}: {first.stop_reason}"
    if first.stop_code == EXIT_USAGE and not sent:
        raise ConfigError(reason)
    stats = RunStats(config.out, config.errors_path,
                     Report(load_prices(config.prices_path, batch_discount=config.batch_discount)),
                     total_hint=made.lines, simulated=config.mock, started=0.0, finished=wall_s)
    stats.stop_reason, stats.stop_code = reason, first.stop_code
    stats.tokens_this_start = tokens
    try:
        save_stopped(config, made, stats, sent=sent)
    except OSError as exc:
        log.warning("could not write the report %s: %s", config.report_path, exc)
    return stats
