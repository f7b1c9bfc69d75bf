"""Where a sharded run keeps its parts, and assembling them into the one output.

A sharded run's input is planned as contiguous parts (`shards.Shard` each), more of them than the
run has shards when the input is large enough (`shards.part_count`): each shard runs one part
after another (`slots`). Beside ``out.jsonl`` it keeps ``out.jsonl.shards/`` (private, as a
checkpoint):

    plan.json                 the parts (`Plan`): the input's identity, the run's id, each range
    0000.jsonl, 0001.jsonl…   each part once it is finished, with its
    0000.errors.jsonl …       errors file and report beside it, as a run publishes them
    0000.report.json …
    0000.jsonl.checkpoint/ …  a part's checkpoint until it is published

Every part is a run of its own (`engine.run_batch` of its `part_config`: its span of the input,
its part as the output, the plan's run id): it resumes from its own checkpoint, and writes the
ids of the plan's one run id, so the parts put end to end are
the output a single run would have written. `assemble` does that once every part is published,
and publishes the one output, errors file and report as a run does (`disk.publish`): a crash at
any point leaves either the parts, which the next `assemble` assembles again, or a committed
folder, which it finishes publishing.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from ..accounting.ledger import SpendLedger, carried_spend
from ..accounting.pricing import load_prices
from ..accounting.report import Report
from ..config import RunConfig
from ..disk import publish
from ..disk.identity import check_same_run, identity, scan_input
from ..disk.publish import private_file
from ..disk.rundir import make_run_dir
from ..engine.carry import spent_so_far
from ..engine.document import report_json, run_facts
from ..errors import ConfigError
from ..stats import RunStats
from .shards import Shard, part_count, split

PLAN = "plan.json"
FORMAT = 1
_ASSEMBLED = ("assembled.jsonl", "assembled.errors.jsonl", "assembled.report.json")


def shards_folder(output: Path) -> Path:
    """``out.jsonl`` → ``out.jsonl.shards``: a sharded run's parts until they are assembled."""
    return output.with_name(output.name + ".shards")


def part_path(output: Path, shard: Shard) -> Path:
    """``out.jsonl`` → ``out.jsonl.shards/0003.jsonl``: the output of ``shard``; its errors file,
    report and checkpoint are named from it as a run's are from its output."""
    width = max(4, len(str(shard.count - 1)))
    return shards_folder(output) / f"{shard.number:0{width}d}.jsonl"


def part_config(config: RunConfig, shard: Shard, run_id: str) -> RunConfig:
    """The run of ``shard`` of ``config``'s input (``config`` is the whole run's): its span of the
    input, its part as the output, and the plan's ``run_id`` for a checkpoint it starts."""
    return replace(config, output_path=part_path(config.out, shard), span=shard.span, run_id=run_id)


@dataclass(frozen=True)
class Plan:
    """A sharded run: the shards, and what makes another start of it the same run."""

    shards: list[Shard]
    run_id: str
    same_run: dict[str, Any]  # `identity.identity` of the whole input
    lines: int  # request lines in the whole input


def plan(config: RunConfig, count: int, laid_out: Callable[[], list[Shard] | None] | None = None) -> Plan:
    """The plan of running ``config`` (without a shard) as ``count`` shards' parts
    (`shards.part_count`): the one an earlier start made (whatever ``count``: its parts'
    checkpoints hold their ranges; an earlier version planned a part a shard), else a new one,
    saved before any part runs. ``restart`` discards an earlier one, parts and all; with
    ``retry_failed``, a finished output is split into the parts that retry it.

    :param laid_out: the `shards.split` of the input into its parts made meanwhile
        (`early_split`), used if the input is still as long as it was then.

    :raises InputFileError: the input cannot be read, or no line of it is a request.
    :raises ConfigError: the output's directory is missing; the earlier plan is of another input
        or other options (nothing was sent).
    """
    scan = scan_input(config.input_path)
    folder = shards_folder(config.out)
    if config.restart:
        shutil.rmtree(folder, ignore_errors=True)
    make_run_dir(folder, config.out)
    same_run = identity(scan, config)
    saved = _load(folder)  # written last: without it, nothing here was started
    if saved is not None:
        check_same_run(saved.same_run, same_run, f"{config.out} has shards of a different run",
                       "run again with --restart to discard them and start over")
        return saved
    shards = laid_out() if laid_out is not None else None
    if not shards or shards[-1].end != scan.size:
        shards = split(config.input_path, part_count(count, scan.lines, config.concurrency), scan.size)
    made = Plan(shards, secrets.token_hex(8), same_run, scan.lines)
    if config.retry_failed and config.out.exists():
        _split_output(config, made)
    publish.write_atomically(folder / PLAN, orjson.dumps(
        {"format": FORMAT, **same_run, "run_id": made.run_id, "lines": made.lines,
         "shards": [[s.start, s.end, s.first_index, s.first_line, sorted(s.duplicates)] for s in shards]}),
        private=True)
    return made


def early_split(config: RunConfig, count: int) -> list[Shard] | None:
    """The `shards.split` a new `plan` of ``config`` as ``count`` shards will need, made before
    it (while Ray starts); ``None`` when the plan is an earlier start's, which it keeps.

    :raises InputFileError: the input cannot be read.
    """
    if not config.restart and (shards_folder(config.out) / PLAN).exists():
        return None
    try:
        size = config.input_path.stat().st_size
        lines = _newlines(config.input_path, size)
    except OSError:  # the plan's own reading says what is wrong
        return None
    return split(config.input_path, part_count(count, lines, config.concurrency), size)


def _newlines(path: Path, size: int) -> int:
    """The line ends in ``path``'s first ``size`` bytes, of blank lines too: about its request
    lines, for how many parts it needs, counted at the disk's speed.

    :raises OSError: it cannot be read.
    """
    count = 0
    with open(path, "rb") as f:
        while size > 0 and (chunk := f.read(min(size, 2**20))):
            count += chunk.count(b"\n")
            size -= len(chunk)
    return count


def finished(config: RunConfig) -> bool:
    """Whether ``config``'s output is a finished one, for a single run of it to judge (up to date,
    or refused): no shards beside it, or shards an earlier `assemble` committed — it finishes
    publishing those now. Never with ``restart``, which discards it, nor ``retry_failed``, whose
    shards retry its lines (`plan`).

    :raises OSError: finishing the publishing failed; the next call goes on with it.
    """
    if config.restart:
        return False
    folder = shards_folder(config.out)
    committed = publish.complete(folder)
    return not config.retry_failed and (committed or (config.out.exists() and not folder.exists()))


def finished_report(part: RunConfig) -> dict[str, Any] | None:
    """A part's report when an earlier start finished it; ``None`` while it runs (its checkpoint
    carries its spend), or when it is no finished run (a part of a finished output split to be
    retried): such a part is run (again)."""
    if part.checkpoint_path.exists() or not part.report_path.exists():
        return None
    report: dict[str, Any] = orjson.loads(part.report_path.read_bytes())
    return report if report.get("status") == "complete" else None


def finished_parts(config: RunConfig, made: Plan) -> dict[int, dict[str, Any]]:
    """The reports of the parts of ``made`` an earlier start finished (`finished_report`), by number."""
    reports = {shard.number: finished_report(part_config(config, shard, made.run_id)) for shard in made.shards}
    return {number: report for number, report in reports.items() if report is not None}


def spent_before(config: RunConfig, made: Plan, done: dict[int, dict[str, Any]] | None = None) -> dict[int, float]:
    """USD each part spent in earlier starts, by number: a finished part's, as its report says
    (its lines' usage and its lost answers, `accounting.ledger`); with ``--max-cost``, an
    unfinished one's, as its checkpoint says, or its lines about to be retried
    (`engine.carry.spent_so_far`). A part waiting for its turn has spent that much, whichever
    parts run first.

    :param done: `finished_parts`, when the caller has them.
    :raises ConfigError: a part's checkpoint is one its start would refuse.
    """
    reports = finished_parts(config, made) if done is None else done
    spent = {number: float(report["cost_usd_priced"]) + carried_spend(report) for number, report in reports.items()}
    if config.max_cost is not None:
        for shard in made.shards:
            if shard.number not in spent:
                spent[shard.number] = spent_so_far(part_config(config, shard, made.run_id))
    return spent


def _split_output(config: RunConfig, made: Plan) -> None:
    """A finished output's lines, shard by shard, as the parts the shards then retry, as a run
    retries a finished output (``retry_failed``). Written before the plan: a crash before the plan
    leaves parts the next start writes again."""
    bounds = [shard.first_index for shard in made.shards[1:]] + [made.lines]
    with open(config.out, "rb") as f:
        for shard, end in zip(made.shards, bounds, strict=True):
            target = publish.AtomicFile(part_path(config.out, shard), private=True)
            try:
                target.file.writelines(itertools.islice(f, end - shard.first_index))
                target.commit()
            except BaseException:
                target.discard()
                raise


def _load(folder: Path) -> Plan | None:
    try:
        with open(folder / PLAN, "rb", opener=private_file) as f:
            doc = orjson.loads(f.read())
        rows = doc["shards"]
        shards = [Shard(number, len(rows), start, end, first_index, first_line, frozenset(found))
                  for number, (start, end, first_index, first_line, found) in enumerate(rows)]
        return Plan(shards, doc["run_id"], {"input": doc["input"], "options": doc["options"]}, doc["lines"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{folder / PLAN} cannot be read ({exc}); run again with --restart") from None


def assemble(config: RunConfig, made: Plan, *, shards: int, wall_s: float, sent: int = 0, tokens: int = 0) -> RunStats:
    """Put the published parts of ``made``'s shards end to end as the one output and errors file,
    add their reports up into one, and publish the three (module docstring). A second call after
    a crash completes what the first began.

    :param shards: how many parts ran at once (the report's ``shards``).
    :param wall_s: the sharded run's wall time. :param sent: / :param tokens: the lines it sent
        and their tokens (its throughput).
    :returns: the whole run's stats, as a single run of it would end.
    :raises ConfigError: a shard's part is not published yet.
    :raises OSError: a step failed; calling again completes it.
    """
    folder = shards_folder(config.out)
    prices = load_prices(config.prices_path, batch_discount=config.batch_discount)
    stats = RunStats(config.out, config.errors_path, Report(prices, source=str(config.out)),
                     total_hint=made.lines, simulated=config.mock, started=0.0, finished=wall_s)
    stats.tokens_this_start = tokens
    if not folder.exists() or publish.complete(folder):
        stats.count_finished_run(orjson.loads(config.report_path.read_bytes()))
        return stats
    parts = [part_config(config, shard, made.run_id) for shard in made.shards]
    for shard, part in zip(made.shards, parts, strict=True):
        if part.checkpoint_path.exists() or not part.out.exists():
            raise ConfigError(f"{part.out}: shard {shard.number} is not finished")
    lost = sum(_count(stats.report, orjson.loads(part.report_path.read_bytes())) for part in parts)
    stats.ledger = SpendLedger(stats.report.prices, carried=lost)
    stats.written = stats.report.lines
    stats.carried_over = stats.written - sent
    output_bytes = _concatenate(folder / _ASSEMBLED[0], [part.out for part in parts])
    _concatenate(folder / _ASSEMBLED[1], [part.errors_path for part in parts])
    facts = run_facts(input_path=str(config.input_path), same_run=made.same_run, input_lines=made.lines,
                      lines_finished=stats.written, max_cost=config.max_cost)
    report = report_json(stats, facts, output_bytes, extra={"shards": shards, "parts": len(parts)})
    publish.write_atomically(folder / _ASSEMBLED[2], report, private=True)
    finals = (config.out, config.errors_path, config.report_path)
    publish.commit(folder, [(folder / name, publish.link_target(final)) for name, final in zip(_ASSEMBLED, finals, strict=True)])
    return stats


def save_stopped(config: RunConfig, made: Plan, stats: RunStats, *, shards: int, sent: int) -> None:
    """Count into ``stats`` (how a start of ``made`` stopped, its wall time) what its shards'
    reports say, as each last stopped or finished, and write it as the report beside the output,
    as a stopped single run's. A shard without a report has finished no line yet.

    :param shards: how many parts ran at once (the report's ``shards``).
    :param sent: the lines this start sent and finished (its throughput).
    :raises OSError: the report could not be written.
    """
    lost, lines_finished = 0.0, 0
    for shard in made.shards:
        try:
            part_report = orjson.loads(part_config(config, shard, made.run_id).report_path.read_bytes())
        except FileNotFoundError:
            continue
        lost += _count(stats.report, part_report)
        lines_finished += part_report["lines_finished"]
    stats.ledger = SpendLedger(stats.report.prices, carried=lost)
    stats.written = stats.report.lines
    stats.carried_over = max(0, stats.written - sent)
    stats.report.source = str(shards_folder(config.out))
    facts = run_facts(input_path=str(config.input_path), same_run=made.same_run, input_lines=made.lines,
                      lines_finished=lines_finished, max_cost=config.max_cost)
    publish.write_atomically(config.report_path, report_json(stats, facts, extra={"shards": shards,
                                                                                "parts": len(made.shards)}))


def _count(report: Report, part_report: dict[str, Any]) -> float:
    """Add the counters of a shard's report to ``report``; what its lost answers cost besides
    (`accounting.ledger.carried_spend`)."""
    counted = Report(report.prices)
    counted.restore(part_report["counters"])
    report.merge(counted)
    return carried_spend(part_report)


def _concatenate(target: Path, sources: list[Path]) -> int:
    """Write ``sources`` end to end into ``target`` (made anew) and fsync it; its size."""
    with open(target, "wb", opener=private_file) as out:
        for source in sources:
            with open(source, "rb") as f:
                shutil.copyfileobj(f, out, 2**20)
        out.flush()
        os.fsync(out.fileno())
        return out.tell()
