"""Rate pacing: batchrun against the simulator's limits and shed load, beside
the openai-SDK loop users would otherwise write, each figure judged against its target.

    python scripts/bench_pacing.py                  # every case
    python scripts/bench_pacing.py --quick          # fewer lines, 150 s timeout: a smoke run
    python scripts/bench_pacing.py --cases shed-10-429,quota-rpm-headers --json-out pacing.json
    python scripts/bench_pacing.py --rev HEAD       # clients on committed batchrun/, not the work tree
    python scripts/bench_pacing.py --quick --cases shed-30-429-30-5xx --repeat 3   # judged on the median of 3

How it runs. batchrun/ is copied from the work tree at the start, and every process below
imports that copy (bench.py's snapshot), so edits made during a run do not mix in; with
``--rev`` the clients import a copy of that commit's batchrun/ instead (git archive), while the
simulator stays the work tree's. For each case and each of its clients a fresh simulator is
started (``python -m batchrun mock-server --port 0 --latency-ms 50`` plus the case's flags: its
buckets start full, its counters at zero), and the client runs to its end against it at the
case's concurrency C while a thread reads the simulator's ``/_simulator/stats`` every 0.1 s.
Clients (scripts/bench_clients/, as bench.py runs them; each times its own request phase, from
after its imports to its last result):

  batchrun    ``batchrun run INPUT -o OUT --base-url URL --concurrency C -q`` plus the case's
              flags, run as ``python -m batchrun`` runs it. Its ``OUT.report.json`` is kept:
              ``requests``, ``retries``, ``rate_limited``, ``wall_time_s`` and the ``pacing`` block
              when there is one (all in the JSON output; the pacing block in the runs table).
  openai-sdk  ``AsyncOpenAI(max_retries=R)``, ``asyncio.Semaphore(C)``, one task per line: the SDK
              waits out 429s and 5xx itself (Retry-After, else exponential backoff).

Cases: lines (with --quick), C, and the target.

  shed-30-429-30-5xx    ``--rate-429 0.3 --rate-500 0.3 --no-retry-after-ms`` (a 429 says only
                        ``Retry-After: 1``). 2,000 (600) lines, C=64; batchrun ``--max-attempts
                        12``, openai-sdk max_retries 11. batchrun's lines/s ≥ 1.5x the SDK's.
  shed-10-429           ``--rate-429 0.1 --no-retry-after-ms``; the same, batchrun's defaults.
  quota-rpm-headers     ``--rpm 600``: a full bucket of 600 requests refilled at 10/s, and
                        x-ratelimit-* headers. 900 (690) lines, C=64. Wall time ≤ 1.15x the ideal,
                        (lines - 600) / 10 s (the full bucket at once, then the refill); 429s < 1%.
  quota-rpm-no-headers  ``--rpm 600 --no-limit-headers``: only 429s with Retry-After in whole
                        seconds tell of the limit. 900 (690) lines, C=64. Sustained rate ≥ 90% of
                        the limit; 429s ≤ 3% (the whole run's; the sustained phase's is shown too).
  quota-rps-no-headers  ``--rpm 3000 --bucket-seconds 1 --no-limit-headers``: a 50 per second
                        quota whose bucket holds 50 (starts full), only 429s with Retry-After in
                        whole seconds (issue 26). 1,500 (1,000) lines, C=64. Wall time ≤ 1.05x the
                        ideal, (lines - 50) / 50 s (≥ 95% of the quota used); 429s ≤ 5%.
  quota-tpm-headers     ``--tpm 6000 --token-charge sum``: each request charged prompt + max_tokens
                        on arrival, nothing refunded. Short prompts with max_tokens 20 (a charge of
                        37 tokens). 300 (200) lines, C=32. Wall time ≤ 1.15x the ideal,
                        (total charge - 6,000) / 100 s; 429s < 1%.
  tpm-prompt-charge     ``--tpm 60000 --token-charge sum``: charged the prompt's tokens counted from
                        its messages plus max_tokens (37), while batchrun estimates body bytes / 4
                        plus max_tokens (53; issue 26). Headers announce the limit. 2,200 (1,900)
                        lines: the full bucket's 1,621, then the refill, C=64. Sustained rate ≥
                        95% of the limit; 429s < 1%.
  rpm-learned, rpm-flag, tpm-learned, tpm-flag, rpm-change
                        ``--rpm 6000`` or ``--tpm 600000``, the limits learned from the
                        headers or given to batchrun (``--rpm``/``--tpm``); rpm-change halves the
                        simulator's rpm 15 s (9 s) after the first answer (POST /_simulator/limits).
                        Short prompts with max_tokens 60 (about 54 tokens used). Lines: the full
                        bucket's worth plus about 20 s (6 s) at the limit: rpm 9,000 (7,200), tpm
                        17,000 (14,500), rpm-change 8,500 (7,200); C=64. Sustained rate ≥ 95% of
                        the limit; 429s < 1%; rpm-change: the new limit followed.

Figures (the simulator's counters are the truth for requests, answers, 429s and charges):

  lines/s          lines answered with a success / the client's request-phase wall time.
  wall / ideal     batchrun's request-phase wall time over the ideal above. The total charge of
                   quota-tpm-headers is the simulator's final ``charged_tokens`` (nothing is
                   refunded), scaled to every line if some were never admitted.
  sustained rate   admissions per minute (``charged_requests``; tpm cases: ``charged_tokens``, net
                   of refunds) from the sample where the bucket first ran dry to the last
                   admission (rpm-change: to the change), less what the bucket still held at that
                   sample. The bucket ran dry at the first limit 429 (holding nothing), or when its
                   level, replayed from the charges (full at the start, refilled at limit/60 per
                   second, never above the limit), fell under 2% of the limit. A client that never
                   drains it ("bucket never dry") is measured from 5 s after its first admission
                   (a quarter of the run, if shorter) instead; a figure far above 100% then means
                   the case had too few lines to get past the burst.
  429s             429 responses / requests received, over the whole run, and over the
                   sustained phase.
  rpm-change       seconds from the change until the admissions over the trailing 2 s are at most
                   5% above the new limit; and the 429s after the change.

In every case batchrun must also answer every line (exit 0, no failed line, within the timeout:
``--timeout``, 300 s, 150 s with ``--quick``); a run that did not fails its case whatever its
figures. The SDK's failed lines are shown beside its rate, not judged.

``--repeat N`` runs each case N times over (batchrun, then the SDK loop, then batchrun again ...:
other load on the machine falls on both alike) and judges the median repetition: the one whose
ratio (sustained cases: share of the limit) is the median of the N (the lower middle one when N
is even; the SDK's lines/s is compared within its own repetition, side by side). Repetition k
gives the simulator ``--seed k-1`` (unless the case sets one), so the repetitions draw other
faults (a fixed seed deals the same faults in the order requests arrive, and N runs would be
nearly one), and both clients of a repetition the same. Every batchrun run must still answer
every line. The targets table shows the median's figures and the range; the runs table every
run.

Cases whose simulator flags the simulator lacks are skipped, and said so. Prints the targets
table, then one row per client run; exits 1 when a target was missed. ``--json-out`` saves every
run with its samples. Takes about 10 minutes when batchrun meets its targets (more when a run goes
to its timeout), the quick run about 3 (N times that with ``--repeat N``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO, Workspace, custom_id, environment, write_input
from pacing_runs import Run, Sample, batchrun_argv, measure, sdk_argv, simulator_help

LATENCY_MS = 50
WARMUP_S = 5.0
SETTLE_S = 5.0  # after the bucket ran dry: the requests in flight then meet it empty, whatever a client does
FOLLOW_WINDOW_S = 2.0
DRY_SHARE = 0.02


# --- the cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What the simulator does, what batchrun is given, and which target judges it.

    ``kind``: "versus-sdk" (lines/s against the SDK loop's), "ideal" (wall time against the
    ideal) or "sustained" (the admission rate once the bucket first ran dry, against the limit).
    ``target``: ``ratio`` (at least, for versus-sdk; at most, for ideal), ``share`` (of the limit,
    at least), ``429_below`` or ``429_at_most`` (429s over requests).
    """

    name: str
    kind: str
    lines: int
    quick_lines: int
    target: dict[str, float]
    concurrency: int = 64
    rpm: int | None = None
    tpm: int | None = None
    simulator: tuple[str, ...] = ()
    batchrun: tuple[str, ...] = ()
    sdk_retries: int | None = None  # also run the SDK loop, with this max_retries
    max_tokens: int | None = None  # short prompts with this cap; None: bench.py's inputs
    change_after_s: tuple[float, float] | None = None  # (full, quick): halve the rpm after the first answer
    bucket_s: float = 60.0  # the simulator's buckets hold this many seconds of their rate

    def simulator_flags(self) -> list[str]:
        limits = [*(["--rpm", str(self.rpm)] if self.rpm else []), *(["--tpm", str(self.tpm)] if self.tpm else [])]
        if self.bucket_s != 60.0:
            limits += ["--bucket-seconds", f"{self.bucket_s:g}"]
        return ["--latency-ms", str(LATENCY_MS), *limits, *self.simulator]

    def burst(self, limit: int) -> float:
        """What the simulator's bucket of a ``limit`` per minute holds when full."""
        return limit * min(self.bucket_s, 60.0) / 60


NO_MS = "--no-retry-after-ms"
ISSUE_5 = {"share": 0.95, "429_below": 0.01}
CASES = (
    Case("shed-30-429-30-5xx", "versus-sdk", 2000, 600, {"ratio": 1.5},
         simulator=("--rate-429", "0.3", "--rate-500", "0.3", NO_MS), batchrun=("--max-attempts", "12"),
         sdk_retries=11),
    Case("shed-10-429", "versus-sdk", 2000, 600, {"ratio": 1.5}, simulator=("--rate-429", "0.1", NO_MS),
         sdk_retries=11),
    Case("quota-rpm-headers", "ideal", 900, 690, {"ratio": 1.15, "429_below": 0.01}, rpm=600),
    Case("quota-rpm-no-headers", "sustained", 900, 690, {"share": 0.90, "429_at_most": 0.03}, rpm=600,
         simulator=("--no-limit-headers",)),
    Case("quota-rps-no-headers", "ideal", 1500, 1000, {"ratio": 1.05, "429_at_most": 0.05}, rpm=3000,
         bucket_s=1.0, simulator=("--no-limit-headers",)),
    Case("quota-tpm-headers", "ideal", 300, 200, {"ratio": 1.15, "429_below": 0.01}, concurrency=32, tpm=6000,
         simulator=("--token-charge", "sum"), max_tokens=20),
    Case("tpm-prompt-charge", "sustained", 2200, 1900, ISSUE_5, tpm=60_000, simulator=("--token-charge", "sum"),
         max_tokens=20),
    Case("rpm-learned", "sustained", 9000, 7200, ISSUE_5, rpm=6000, max_tokens=60),
    Case("rpm-flag", "sustained", 9000, 7200, ISSUE_5, rpm=6000, batchrun=("--rpm", "6000"), max_tokens=60),
    Case("tpm-learned", "sustained", 17000, 14500, ISSUE_5, tpm=600_000, max_tokens=60),
    Case("tpm-flag", "sustained", 17000, 14500, ISSUE_5, tpm=600_000, batchrun=("--tpm", "600000"), max_tokens=60),
    Case("rpm-change", "sustained", 8500, 7200, ISSUE_5, rpm=6000, max_tokens=60, change_after_s=(15.0, 9.0)),
)


def write_short_input(path: Path, lines: int, max_tokens: int) -> None:
    """Envelopes of a short chat request (the simulator counts 17 prompt tokens) capped at max_tokens."""
    with path.open("w") as f:
        for index in range(lines):
            body = {"model": "gpt-4o-mini", "max_tokens": max_tokens,
                    "messages": [{"role": "system", "content": "Answer in a few words."},
                                 {"role": "user", "content": f"Name pet {index}."}]}
            envelope = {"custom_id": custom_id(index), "method": "POST", "url": "/v1/chat/completions", "body": body}
            f.write(json.dumps(envelope, separators=(",", ":")) + "\n")


# --- running -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """A case's runs (batchrun first), or why it was not run."""

    case: Case
    lines: int
    runs: list[Run] = field(default_factory=list)  # every repetition's, one after the other
    skipped: str | None = None

    def repetitions(self) -> list[list[Run]]:
        """The runs, one list per repetition of the case (batchrun's first in each)."""
        size = 2 if self.case.sdk_retries is not None else 1
        return [self.runs[i:i + size] for i in range(0, len(self.runs), size)]


def run_case(case: Case, quick: bool, spaces: tuple[Workspace, Workspace], timeout_s: float,
             repeat: int = 1) -> list[Run]:
    lines = case.quick_lines if quick else case.lines
    input_path = spaces[0].path / f"{case.name}.jsonl"
    if case.max_tokens is None:
        write_input(input_path, lines)
    else:
        write_short_input(input_path, lines, case.max_tokens)
    change = None
    if case.change_after_s is not None and case.rpm:
        change = (case.change_after_s[quick], {"rpm": case.rpm // 2})
    clients = [("batchrun", batchrun_argv(list(case.batchrun)))]
    if case.sdk_retries is not None:
        clients.append(("openai-sdk", sdk_argv(case.sdk_retries)))
    runs = []
    for number in range(1, repeat + 1):
        flags = case.simulator_flags()
        if number > 1 and "--seed" not in flags:  # other faults in each repetition, the same for both clients
            flags += ["--seed", str(number - 1)]
        for name, argv in clients:
            run = measure(name, argv, input_path, lines, case.concurrency, flags, spaces, timeout_s, change)
            _progress(case, run, f" ({number}/{repeat})" if repeat > 1 else "")
            runs.append(run)
    return runs


def _progress(case: Case, run: Run, number: str) -> None:
    server = run.server
    text = (f"[{case.name}] {run.client}{number}: {run.ok:,} of {run.lines:,} lines in {run.wall_s:.1f} s "
            f"({run.rate:,.1f} lines/s); server: {server['requests']:,} requests, "
            f"{server['responses'].get('429', 0):,} 429s")
    print(text + (f"; {run.problem}" if run.problem else ""), file=sys.stderr, flush=True)


def missing_flags(case: Case, help_text: str) -> list[str]:
    return [flag for flag in case.simulator_flags() if flag.startswith("--") and flag not in help_text]


def make_workspaces(path: Path, rev: str | None) -> tuple[Workspace, Workspace]:
    """(the clients', the simulator's): bench.py's snapshot of the work tree's batchrun/ for both,
    or for the clients a second one of ``rev``'s."""
    simulator = Workspace.create(path)
    if rev is None:
        return simulator, simulator
    snapshot = path / "client-snapshot"  # rev: a commit id, resolved at the start (see main)
    snapshot.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", rev, "batchrun"], cwd=REPO, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(snapshot)], input=archive, check=True)
    return Workspace(path, {**simulator.env, "PYTHONPATH": str(snapshot)}), simulator


# --- figures from the samples --------------------------------------------------------------


def _per_minute(s0: Sample, s1: Sample, counter: str) -> float | None:
    seconds = s1.t - s0.t
    return (getattr(s1, counter) - getattr(s0, counter)) * 60 / seconds if seconds > 0 else None


def _limit(case: Case) -> tuple[int, str, str]:
    """(limit per minute, unit, the counter it charges) of a case's limit."""
    return (case.rpm, "rpm", "charged_requests") if case.rpm else (case.tpm or 0, "tpm", "charged_tokens")


def _dry(samples: list[Sample], capacity: int, counter: str) -> tuple[Sample, float] | None:
    """The first sample at which the simulator's bucket was (nearly) empty, and its level then: a
    limit's 429 (level 0), or the level replayed from the charges (full at the start, refilled at
    capacity/60 per second, never above capacity) under DRY_SHARE of the capacity."""
    level, previous = float(capacity), None
    for sample in samples:
        if sample.rate_limited:
            return sample, 0.0
        if previous is not None:
            level = min(capacity, level + capacity / 60 * (sample.t - previous.t))
            level -= getattr(sample, counter) - getattr(previous, counter)
        if level <= capacity * DRY_SHARE:
            return sample, max(level, 0.0)
        previous = sample
    return None


@dataclass
class Sustained:
    """The sustained phase of a run: admissions per minute, its 429 share, when it began."""

    rate: float | None = None
    share_429: float | None = None
    dry_at_s: float | None = None  # when the bucket first ran dry; None: never, before the end
    share_429_settled: float | None = None  # from SETTLE_S after it ran dry: the transient left out


def sustained(case: Case, run: Run) -> Sustained:
    """From the sample where the bucket first ran dry to the last admission (or to the limit
    change), less what the bucket still held then; a client that never drained it: from WARMUP_S
    after its first admission (a quarter of the run, if shorter), as it is."""
    limit, _, counter = _limit(case)
    samples = run.samples
    first = next((s for s in samples if s.charged_requests), None)
    if first is None:
        return Sustained()
    end_t = run.changed_at if run.changed_at is not None else \
        next(s for s in samples if s.charged_requests == samples[-1].charged_requests).t
    dry = _dry(samples, limit, counter)
    if dry is not None and dry[0].t < end_t:
        start_t, held, dry_at = dry[0].t, dry[1], dry[0].t
    else:
        start_t, held, dry_at = first.t + min(WARMUP_S, (end_t - first.t) / 4), 0.0, None
    window = [s for s in samples if start_t <= s.t <= end_t]
    if len(window) < 2 or window[-1].t <= window[0].t:
        return Sustained(dry_at_s=dry_at)
    s0, s1 = window[0], window[-1]
    rate = (getattr(s1, counter) - getattr(s0, counter) - held) * 60 / (s1.t - s0.t)
    settled = [s for s in window if s.t >= start_t + SETTLE_S]
    settled_share = None
    if dry_at is not None and len(settled) >= 2:
        u0, u1 = settled[0], settled[-1]
        settled_share = (u1.status_429 - u0.status_429) / max(u1.requests - u0.requests, 1)
    return Sustained(rate, (s1.status_429 - s0.status_429) / max(s1.requests - s0.requests, 1), dry_at,
                     settled_share)


def followed(run: Run, new_rpm: int) -> tuple[float | None, int]:
    """(seconds until the admissions over the trailing FOLLOW_WINDOW_S are within 5% of the new
    limit, 429s after the change)."""
    assert run.changed_at is not None
    after = [s for s in run.samples if s.t >= run.changed_at]
    limited = after[-1].status_429 - after[0].status_429
    for sample in after:
        trailing = [s for s in after if sample.t - FOLLOW_WINDOW_S <= s.t <= sample.t]
        if sample.t - run.changed_at < FOLLOW_WINDOW_S or len(trailing) < 2:
            continue
        rate = _per_minute(trailing[0], trailing[-1], "charged_requests")
        if rate is not None and rate <= new_rpm * 1.05:
            return round(sample.t - run.changed_at, 1), limited
    return None, limited


def share_429(run: Run) -> float:
    return run.server["responses"].get("429", 0) / max(run.server["requests"], 1)


def ideal_s(case: Case, run: Run) -> float:
    """The least wall time the limit allows: the full bucket at once, then the refill."""
    if case.rpm:
        return max(run.lines - case.burst(case.rpm), 0) / (case.rpm / 60)
    assert case.tpm
    admitted = max(run.server["charged_requests"], 1)
    total = run.server["charged_tokens"] * run.lines / admitted
    return max(total - case.burst(case.tpm), 0) / (case.tpm / 60)


# --- judging -------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the targets table; ``missed`` lists what failed (empty: the case passed)."""

    measured: str
    compared: str
    ratio: str
    rate_limited: str
    target: str
    missed: list[str]
    figures: dict[str, Any]


def _failed(run: Run) -> str:
    return f"{run.failed:,} unanswered ({run.problem.split(':')[0]})" if run.problem else f"{run.failed:,} failed"


def _answered_all(run: Run) -> list[str]:
    if run.problem:
        return [f"batchrun {run.problem.split(':')[0]}"]
    return [f"{run.failed:,} lines failed"] if run.failed else []


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}%}"


def _times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def _429(run: Run) -> str:
    return f"{run.server['responses'].get('429', 0):,} ({_pct(share_429(run), 2)})"


def _check_429(case: Case, run: Run, missed: list[str]) -> str:
    """Add a missed 429 target to ``missed``; the target's text."""
    share = share_429(run)
    if "429_below" in case.target:
        bound, ok, text = case.target["429_below"], share < case.target["429_below"], "<"
    else:
        bound, ok, text = case.target["429_at_most"], share <= case.target["429_at_most"], "≤"
    if not ok:
        missed.append(f"429s {_pct(share, 2)}")
    return f"429s {text} {bound:.0%}"


def judge_versus_sdk(case: Case, runs: list[Run]) -> Row:
    ours, sdk = runs
    ratio = ours.rate / sdk.rate if sdk.rate else None
    missed = _answered_all(ours)
    if ratio is None or ratio < case.target["ratio"]:
        missed.append(f"ratio {_times(ratio)}")
    return Row(f"{ours.rate:,.1f} lines/s, {_failed(ours)}", f"openai-sdk: {sdk.rate:,.1f} lines/s, {_failed(sdk)}",
               _times(ratio), f"{_429(ours)}; sdk {_429(sdk)}", f"≥ {case.target['ratio']}x; every line answered",
               missed, {"ratio": ratio, "rate": ours.rate, "sdk_rate": sdk.rate})


def judge_ideal(case: Case, runs: list[Run]) -> Row:
    (ours,) = runs
    ideal = ideal_s(case, ours)
    ratio = ours.wall_s / ideal if ideal else None
    missed = _answered_all(ours)
    if ratio is None or ratio > case.target["ratio"]:
        missed.append(f"wall {_times(ratio)} the ideal")
    target = f"≤ {case.target['ratio']}x; {_check_429(case, ours, missed)}"
    return Row(f"wall {ours.wall_s:.1f} s", f"ideal {ideal:.1f} s", _times(ratio), _429(ours), target, missed,
               {"ratio": ratio, "ideal_s": ideal, "wall_s": ours.wall_s, "429_share": share_429(ours)})


def judge_sustained(case: Case, runs: list[Run]) -> Row:
    (ours,) = runs
    limit, unit, _ = _limit(case)
    phase = sustained(case, ours)
    share = phase.rate / limit if phase.rate is not None else None
    missed = _answered_all(ours)
    if share is None or share < case.target["share"]:
        missed.append(f"rate {_pct(share)} of the limit")
    target = f"≥ {case.target['share']:.0%}; {_check_429(case, ours, missed)}"
    measured = "—" if phase.rate is None else f"{phase.rate:,.0f} {unit} sustained"
    measured += f", bucket dry at {phase.dry_at_s:.1f} s" if phase.dry_at_s is not None else ", bucket never dry"
    row = Row(measured, f"limit {limit:,} {unit}", _pct(share),
              f"{_429(ours)}; sustained phase {_pct(phase.share_429, 2)}; "
              f"{SETTLE_S:g} s after dry {_pct(phase.share_429_settled, 2)}", target, missed,
              {"rate": phase.rate, "share": share, "bucket_dry_at_s": phase.dry_at_s, "429_share": share_429(ours),
               "429_share_sustained": phase.share_429, "429_share_settled": phase.share_429_settled})
    if case.change_after_s is not None:
        _judge_change(case, ours, row)
    return row


def _judge_change(case: Case, run: Run, row: Row) -> None:
    new_rpm = (case.rpm or 0) // 2
    row.target += "; follows the halved limit"
    if run.changed_at is None:
        row.missed.append("the run ended before the change")
        return
    seconds, after = followed(run, new_rpm)
    row.measured += f"; ≤ {new_rpm:,} rpm {seconds} s after the change" if seconds is not None \
        else f"; {new_rpm:,} rpm not followed"
    row.rate_limited += f"; {after} after the change"
    row.figures.update(new_limit=new_rpm, followed_in_s=seconds, **{"429_after_change": after})
    if seconds is None:
        row.missed.append("new limit not followed")


JUDGES = {"versus-sdk": judge_versus_sdk, "ideal": judge_ideal, "sustained": judge_sustained}
# The figure whose median picks the repetition a case is judged on, by kind ("ratio" if not named).
MEDIAN_OF = {"sustained": "share"}


def judge(outcome: Outcome) -> Row:
    """The case judged on its median repetition (see the docstring), and on every batchrun run
    having answered every line."""
    case = outcome.case
    rows = [JUDGES[case.kind](case, runs) for runs in outcome.repetitions()]
    if len(rows) == 1:
        return rows[0]
    key = MEDIAN_OF.get(case.kind, "ratio")
    values = [row.figures.get(key) for row in rows]
    ranked = sorted(range(len(rows)), key=lambda i: (values[i] is not None, values[i] or 0.0))
    middle = ranked[(len(rows) - 1) // 2]
    row = rows[middle]
    known = [v for v in values if v is not None]
    spread = f"{min(known):.2f}–{max(known):.2f}" if known else "—"
    row.ratio = f"{row.ratio} (median of {len(rows)}: {spread})"
    for number, runs in enumerate(outcome.repetitions(), 1):
        if number != middle + 1:
            row.missed += [f"run {number}: {text}" for text in _answered_all(runs[0])]
    row.figures = {**row.figures, "repetition": middle + 1, f"{key}_each": values}
    return row


# --- rendering -----------------------------------------------------------------------------


def targets_table(outcomes: list[Outcome], rows: dict[str, Row]) -> str:
    lines = ["| case | lines, C | batchrun | compared with | ratio | 429s (of requests) | target | result |",
             "|---|---|---|---|---:|---|---|---|"]
    for outcome in outcomes:
        case = outcome.case
        head = f"| {case.name} | {outcome.lines:,}, C={case.concurrency} |"
        if outcome.skipped:
            lines.append(f"{head} — | — | — | — | — | not run: {outcome.skipped} |")
            continue
        row = rows[case.name]
        result = "pass" if not row.missed else "**FAIL**: " + "; ".join(row.missed)
        lines.append(f"{head} {row.measured} | {row.compared} | {row.ratio} | {row.rate_limited} | {row.target} "
                     f"| {result} |")
    return "\n".join(lines)


def runs_table(outcomes: list[Outcome]) -> str:
    lines = ["| case | client | exit | wall s | ok | failed | lines/s | requests | 200 | 429 | 5xx | batchrun pacing |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for outcome in outcomes:
        repetitions = outcome.repetitions()
        for number, run in ((n, run) for n, runs in enumerate(repetitions, 1) for run in runs):
            responses = run.server["responses"]
            client = f"{run.client} ({number})" if len(repetitions) > 1 else run.client
            errors = sum(n for status, n in responses.items() if status.startswith("5"))
            exit_text = f"{run.status}" + (f" ({run.problem.split(':')[0]})" if run.problem else "")
            lines.append(f"| {outcome.case.name} | {client} | {exit_text} | {run.wall_s:.1f} | {run.ok:,} "
                         f"| {run.failed:,} | {run.rate:,.1f} | {run.server['requests']:,} "
                         f"| {responses.get('200', 0):,} | {responses.get('429', 0):,} | {errors:,} "
                         f"| {_pacing_text(run)} |")
    return "\n".join(lines)


def _pacing_text(run: Run) -> str:
    pacing = (run.report or {}).get("pacing")
    if run.client != "batchrun":
        return ""
    if not pacing:
        return "(no pacing block)"
    return "; ".join(f"{key} {json.dumps(_rounded(value), separators=(',', ':'))}" for key, value in pacing.items())


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.3g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return value


def header(env: dict[str, Any], rev: str | None, elapsed_s: float, quick: bool, repeat: int) -> str:
    tree = f"git {rev} (the simulator: {env['batchrun_tree']})" if rev else env["batchrun_tree"]
    versions = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    load = ", ".join(f"{x:.2f}" for x in env["load_average"])
    return (f"batchrun at {tree}; Python {env['python']}, {env['cpus']} CPUs, load average before the run {load}; "
            f"{versions}. Simulator latency {LATENCY_MS} ms. {'Quick run (indicative). ' if quick else ''}"
            f"{f'Each case run {repeat} times, judged on the median. ' if repeat > 1 else ''}"
            f"Took {elapsed_s:.0f} s.")


# --- command line --------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [case.name for case in CASES]
    parser.add_argument("--cases", type=lambda text: [part for part in text.split(",") if part], default=names,
                        help="comma list (default: all): " + ", ".join(names))
    parser.add_argument("--quick", action="store_true", help="fewer lines (see above), 150 s timeout")
    parser.add_argument("--timeout", type=float, help="seconds before a client is killed (default: 300, quick 150)")
    parser.add_argument("--rev", help="run the clients on batchrun/ as committed at this git revision, not the work "
                        "tree (the simulator stays the work tree's)")
    parser.add_argument("--repeat", type=int, default=1, help="run each case N times and judge the median (see above)")
    parser.add_argument("--json-out", type=Path, help="save every run, its samples and figures as JSON here")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = set(args.cases) - set(names)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    return args


def run_all(args: argparse.Namespace, spaces: tuple[Workspace, Workspace]) -> list[Outcome]:
    help_text = simulator_help(spaces[1])
    timeout_s = args.timeout or (150.0 if args.quick else 300.0)
    outcomes = []
    for case in (c for c in CASES if c.name in args.cases):
        outcome = Outcome(case, case.quick_lines if args.quick else case.lines)
        missing = missing_flags(case, help_text)
        if missing:
            outcome.skipped = f"the simulator has no {', '.join(missing)}"
            print(f"[{case.name}] skipped: {outcome.skipped}", file=sys.stderr, flush=True)
        else:
            outcome.runs = run_case(case, args.quick, spaces, timeout_s, args.repeat)
        outcomes.append(outcome)
    return outcomes


def save_json(path: Path, env: dict[str, Any], args: argparse.Namespace, outcomes: list[Outcome],
              rows: dict[str, Row]) -> None:
    cases = []
    for outcome in outcomes:
        row = rows.get(outcome.case.name)
        cases.append({"case": asdict(outcome.case), "lines": outcome.lines, "skipped": outcome.skipped,
                      "figures": row.figures if row else None, "missed": row.missed if row else None,
                      "runs": [{**asdict(run), "rate": run.rate} for run in outcome.runs]})
    document = {"environment": env, "arguments": {k: str(v) for k, v in vars(args).items()}, "cases": cases}
    path.write_text(json.dumps(document, indent=1))


def main() -> None:
    args = parse_args()
    if args.rev:  # the commit, not a name that may move during the run
        args.rev = subprocess.run(["git", "rev-parse", "--short", f"{args.rev}^{{commit}}"], cwd=REPO,
                                  capture_output=True, text=True, check=True).stdout.strip()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="batchrun-pacing-") as tmp:
        env = environment()
        outcomes = run_all(args, make_workspaces(Path(tmp), args.rev))
    rows = {o.case.name: judge(o) for o in outcomes if not o.skipped}
    print(header(env, args.rev, time.monotonic() - started, args.quick, args.repeat), "",
          targets_table(outcomes, rows), "", runs_table(outcomes), sep="\n")
    if args.json_out:
        save_json(args.json_out, env, args, outcomes, rows)
    if any(row.missed for row in rows.values()):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
