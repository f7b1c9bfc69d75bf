"""``batchrun run --ray``: a run's parts (`parts.plan`) as Ray tasks, ``--shards`` at once
(`slots`), then `parts.assemble`.

The only module that imports Ray, and only when a run asks for it (``pip install
'batchrun-llm[ray]'``). Each part is one task calling `engine.run_batch` for its range, as the
local runner does one after another: the engine stays the engine.

- Its output and checkpoint are in ``out.jsonl.shards/``, which every node must reach (on a real
  cluster: shared storage mounted at the same path). Relative paths are the driver's: each task
  works in the driver's working directory.
- A task whose worker or node dies is retried by Ray (``max_retries``); the retry resumes from
  the part's checkpoint, so nothing answered is sent again. A driver killed and started again
  resumes the same way (the plan is saved before any part runs): the parts it finished are not
  run again, those it was running resume, the rest start in turn.
- Ctrl-C in the driver cancels the running tasks: Ray delivers SIGINT to each worker, where the
  engine drains as a single run does (its requests in flight get ``--drain-timeout``); a second
  Ctrl-C cancels them outright. Parts not started yet are left for the next start. Either way
  the run's report is written, as a stopped run's.
- One actor (`desk.RunDesk`) holds the run's rate budget (``--rpm``/``--tpm`` and the limits
  the parts learn) and its ``--max-cost`` cap; each running part leases slices of them, so none
  of its requests waits on a call to the actor, and gives them back when it ends. It also holds
  each part's counters, which the driver adds up for its progress display.
- Which cluster, and how the credentials reach its workers: `cluster`. On an existing cluster
  each worker reads the key from ``--api-key-env`` on its node, and a part whose node has none
  when the driver had one is refused (nothing sent).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
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
from .cluster import SECRETS_ENV, connected, import_ray
from .desk import RunDesk
from .parts import Plan, assemble, early_split, finished, finished_parts, part_config, plan, save_stopped, spent_before
from .phases import PartTimes, Phases
from .progress import Display, Post, ShardPoster, Watch
from .shards import Shard, default_count
from .slots import Ran, run_parts

log = logging.getLogger("batchrun")

TASK_RETRIES = 3  # a part's worker or node may die this many times before the run stops
DESK_WAIT = 60.0  # seconds a task looks for the run's actor, which the driver creates right after it


@dataclass(frozen=True)
class PartOutcome:
    """What a part's task sends back: enough to end the run as a single run would."""

    number: int
    stop_reason: str | None
    stop_code: int
    sent: int
    tokens: int
    began: float = 0.0  # when the task began to run (`time.time`)
    ran_s: float = 0.0  # how long its run took
    ended: float = 0.0  # when the task ended (`time.time`)


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
    :param shards: how many parts run at once; default `shards.default_count` of the cluster's
        CPUs and the input. The input is planned as more parts than that (`shards.part_count`).
    :param display: shows the parts' progress added up, as a single run's.
    :raises ConfigError: the run cannot be sharded as given, or the cluster cannot be reached
        (nothing was sent).
    """
    if finished(config):  # up to date, or refused, as a single run judges it
        stats: RunStats = run_async(partial(run_batch, config))
        return stats
    ray: Any = import_ray()
    phases = Phases()
    with ThreadPoolExecutor(1, thread_name_prefix="batchrun-split") as pool:
        # With the count given, the input is split while Ray starts (a second's pass over 100 MB).
        early = None if shards is None else pool.submit(_timed, phases, "split", early_split, config, shards)
        with connected(ray, config, address, phases) as own:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            width = shards or default_count(cpus, config.input_path.stat().st_size)
            with phases.timed("plan"):
                made = plan(config, width, None if early is None else early.result)
                done = finished_parts(config, made)
            todo = [shard.number for shard in made.shards if shard.number not in done]
            width = max(1, min(width, len(todo)))
            log.info("running %d shard%s (%d part%s) on %d CPU%s", width, "" if width == 1 else "s", len(todo),
                     "" if len(todo) == 1 else "s", cpus, "" if cpus == 1 else "s")
            ran, wall_s = _run_parts(ray, config, made, (todo, done, width), own, display, phases)
    outcomes = [r.outcome for r in ran]
    sent, tokens = sum(o.sent for o in outcomes), sum(o.tokens for o in outcomes)
    stopped = sorted((o for o in outcomes if o.stop_reason is not None), key=lambda o: o.number)
    if not stopped and len(ran) < len(todo):  # Ctrl-C before the rest started, and those running finished
        stopped = [PartOutcome(min(set(todo) - {r.part for r in ran}), "interrupted by SIGINT", EXIT_STOPPED, 0, 0)]
    try:
        if stopped:
            return _stopped(config, made, stopped[0], shards=width, wall_s=wall_s, sent=sent, tokens=tokens)
        with phases.timed("merge"):
            return assemble(config, made, shards=width, wall_s=wall_s, sent=sent, tokens=tokens)
    finally:
        log.debug("%s", phases.line())


def _run_parts(ray: Any, config: RunConfig, made: Plan, work: tuple[list[int], dict[int, dict[str, Any]], int],
               own: bool, display: Display | None, phases: Phases) -> tuple[list[Ran[PartOutcome]], float]:
    """The parts of ``made`` still to run, each as a task, ``width`` at once (`slots`); the
    seconds they took. ``work``: the numbers of the parts to run, the reports of those an earlier
    start finished, and how many run at once."""
    todo, done, width = work
    where = _Where(os.getcwd(), own, config.api_key is not None, f"batchrun-desk-{made.run_id}-{secrets.token_hex(4)}")
    runner = _RayParts(ray, config, made, where, display is not None, spent_before(config, made, done))
    started, submitted = time.monotonic(), time.time()
    with phases.timed("shards"):
        watch = Watch(config, made.lines, display, done)
        try:
            ran = run_parts(runner, todo, width, partial(runner.look, watch))
        finally:
            watch.close()
    phases.parts = [PartTimes(r.slot, max(0.0, r.outcome.began - submitted), max(0.0, r.outcome.ended - submitted),
                              r.outcome.ran_s) for r in ran if r.outcome.began]
    return ran, time.monotonic() - started


class _RayParts:
    """A `slots.Runner`: each part a Ray task (`_run_part`), retried by Ray when its worker dies;
    and the run's actor (`RunDesk`: the one rate budget and cap, and the progress board).

    :param spent: USD each part spent in earlier starts (`parts.spent_before`).
    """

    def __init__(self, ray: Any, config: RunConfig, made: Plan, where: _Where, shown: bool,
                 spent: dict[int, float]) -> None:
        self._ray = ray
        self._task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(_run_part)
        self._config, self._made, self._where, self._shown, self._spent = config, made, where, shown, spent
        self._desk: Any = None

    def look(self, watch: Watch) -> None:
        """Show the progress the parts posted."""
        desk = self._desk
        if desk is not None:
            watch.look(lambda: self._ray.get(desk.read.remote()))

    def start(self, part: int) -> Any:
        shard = self._made.shards[part]
        return self._task.remote(_secretless(part_config(self._config, shard, self._made.run_id)), self._where, shard,
                                 self._shown)

    def ended(self, running: list[Any], timeout: float) -> list[Any]:
        if self._desk is None:
            # Made once the first parts are submitted, which then find it by its name: Ray gives
            # the tasks the workers it prestarted with the cluster and starts one for the actor.
            # The actor first (its handle a task argument), Ray started a fourth worker, a CPU
            # second while every core is busy. Ray registers a named actor before ``.remote``
            # returns; it takes no CPU a part could use.
            self._desk = self._ray.remote(RunDesk).options(num_cpus=0, name=self._where.desk).remote(
                rpm=self._config.rpm, tpm=self._config.tpm, max_cost=self._config.max_cost, spent=self._spent)
        ready, rest = self._ray.wait(running, num_returns=1, timeout=timeout)
        if ready and rest:
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        return list(ready)

    def outcome(self, handle: Any, part: int) -> PartOutcome:
        return _outcome(self._ray, handle, part)

    def cancel(self, handle: Any, *, force: bool) -> None:
        with contextlib.suppress(Exception) if force else contextlib.nullcontext():
            self._ray.cancel(handle, force=force)


def _timed(phases: Phases, name: str, work: Callable[..., Any], *args: Any) -> Any:
    with phases.timed(name, beside="ray start"):
        return work(*args)


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
    """A part's `RunConfig` fields but the credentials, which a worker gets itself (`_credentials`)."""
    return {field.name: getattr(part, field.name) for field in fields(part) if field.name not in ("api_key", "headers")}


def _run_part(settings: dict[str, Any], where: _Where, shard: Shard, shown: bool) -> PartOutcome:
    """A part's task, on a worker: its range through the engine, with SIGINT draining it, its
    pace and spending leased from the run's `RunDesk` actor (``where.desk``), its progress posted
    to it too when ``shown``. ``settings``: its `part_config` (`_secretless`)."""
    began = time.time()
    try:
        _work_in(where.cwd, settings)
        key, headers = _credentials(settings["api_key_env"], where)
        part = RunConfig(**settings, api_key=key, headers=headers)
    except ConfigError as exc:  # refused, nothing sent
        return PartOutcome(shard.number, str(exc), EXIT_USAGE, 0, 0)
    server = _desk(import_ray(), where.desk)
    board = server if shown else None
    shared = ShardBudget(_ActorClient(server), shard.number)
    poster = None if board is None else ShardPoster(lambda post: board.post.remote(shard.number, post))
    own_process()  # a worker of this run's, as a command's process is its own
    try:
        stats: RunStats = run_async(partial(run_batch, part, handle_signals=True, shared=shared, observer=poster))
    except BatchrunError as exc:  # refused, nothing sent: another run (a killed driver's task) holds its part
        return PartOutcome(shard.number, str(exc), EXIT_USAGE, 0, 0)
    if board is not None:  # the last count is on the board before the driver hears the task is done
        import_ray().get(board.post.remote(shard.number, Post.of(stats)))
    return PartOutcome(shard.number, stats.stop_reason, stats.stop_code, stats.sent_this_start,
                       stats.tokens_this_start, began, stats.wall_s, time.time())


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


def _outcome(ray: Any, ref: Any, number: int) -> PartOutcome:
    """A finished task's outcome: what it returned (after draining, when cancelled), or a stop
    when Ray dropped it: cancelled outright, or failed past its retries (its checkpoint stays)."""
    try:
        outcome: PartOutcome = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return PartOutcome(number, "interrupted by SIGINT", EXIT_STOPPED, 0, 0)
    except ray.exceptions.RayError as exc:  # its worker or node died more than TASK_RETRIES times
        return PartOutcome(number, f"its Ray task failed: {str(exc).strip().splitlines()[0]}", EXIT_STOPPED, 0, 0)
    return outcome


def _stopped(config: RunConfig, made: Plan, first: PartOutcome, *, shards: int, wall_s: float, sent: int,
             tokens: int) -> RunStats:
    """A run with stopped shards ends as the first of them: its reason and exit code, and the
    report beside the output (`parts.save_stopped`); every shard's checkpoint is kept for the
    next start.

    :raises ConfigError: the first was refused before anything was sent.
    """
    reason = f"part {first.number + 1} of {len(made.shards)}: {first.stop_reason}"
    if first.stop_code == EXIT_USAGE and not sent:
        raise ConfigError(reason)
    stats = RunStats(config.out, config.errors_path,
                     Report(load_prices(config.prices_path, batch_discount=config.batch_discount)),
                     total_hint=made.lines, simulated=config.mock, started=0.0, finished=wall_s)
    stats.stop_reason, stats.stop_code = reason, first.stop_code
    stats.tokens_this_start = tokens
    try:
        save_stopped(config, made, stats, shards=shards, sent=sent)
    except OSError as exc:
        log.warning("could not write the report %s: %s", config.report_path, exc)
    return stats
