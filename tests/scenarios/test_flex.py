"""``--tier flex`` end to end against the simulator over loopback: which lines get the tier,
what they cost, refusals for capacity retried as shedding, the fall back to the standard tier,
and the Batch API's deadline handing its lines to flex. Waits run on fake clocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun import RunConfig, run_batch
from batchrun.accounting.pricing import BATCH_DISCOUNT, load_prices
from batchrun.batchapi.options import BatchOptions
from batchrun.config import RetryPolicy
from batchrun.records import Result
from batchrun.simulator import FlexTier, SimulatorConfig, run_in_thread, serve
from batchrun.stats import EXIT_BUDGET, RunStats
from batchrun.usage import Usage
from tests.batchworld import lines, world
from tests.helpers import FakeClock, chat_line, invoke, read_jsonl, write_jsonl

FLEX_MODEL = "gpt-5-mini"  # the price table lists it with flex
NO_FLEX_MODEL = "gpt-4o-mini"  # and this one without


def report(out: Path) -> dict[str, Any]:
    return orjson.loads(out.with_name(out.name.removesuffix(".jsonl") + ".report.json").read_bytes())


def tier(record: dict[str, Any]) -> str | None:
    return record["response"]["body"].get("service_tier")


NO_REFUSALS = FlexTier()


async def run(tmp_path: Path, rows: list[dict[str, Any]], flex: FlexTier = NO_REFUSALS, *, clock: Any = None,
              **config: Any) -> tuple[RunStats, list[dict[str, Any]], dict[str, int]]:
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    async with serve(SimulatorConfig(flex=flex, seed=5)) as sim:
        stats = await run_batch(RunConfig(source, out, base_url=sim.base_url, concurrency=8, **config),
                                clock=clock or FakeClock())
        counters = {"flex_requests": sim.stats.flex_requests, "flex_unavailable": sim.stats.flex_unavailable,
                    "requests": sim.stats.requests}
    return stats, read_jsonl(out) if out.exists() else [], counters


def embedding_line(i: int) -> dict[str, Any]:
    return {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": f"text {i}"}}


def responses_line(i: int) -> dict[str, Any]:
    return {"custom_id": f"resp-{i}", "method": "POST", "url": "/v1/responses",
            "body": {"model": FLEX_MODEL, "input": f"question {i}"}}


async def test_flex_goes_on_chat_and_responses_lines_only_and_is_priced_at_the_batch_rate(tmp_path: Path) -> None:
    rows = [chat_line(0, model=FLEX_MODEL), responses_line(1), embedding_line(2),
            chat_line(3, model=FLEX_MODEL, service_tier="default"),  # names its own tier: kept
            chat_line(4, model=NO_FLEX_MODEL)]  # a model without flex: sent at the standard tier
    stats, out, sim = await run(tmp_path, rows, tier="flex")
    assert stats.exit_code == 0
    assert [tier(r) for r in out] == ["flex", "flex", None, "default", "default"]  # embeddings name none
    assert sim["flex_requests"] == 2
    doc = report(tmp_path / "out.jsonl")
    assert doc["tiers"] == {"flex": 2, "default": 2}
    assert doc["flex"]["lines"] == 2
    prices = load_prices()
    flex_usage, other = Usage(), Usage()
    for record in out:
        if tier(record) == "flex":
            flex_usage.add(Usage.from_body(record["response"]["body"]) or Usage())
    mini = prices.cost(FLEX_MODEL, flex_usage)
    assert mini is not None
    assert doc["flex"]["cost_usd"] == pytest.approx(mini * BATCH_DISCOUNT)
    assert doc["models"][FLEX_MODEL]["cost_usd"] == pytest.approx(
        mini * BATCH_DISCOUNT + prices.cost(FLEX_MODEL, Usage.from_body(out[3]["response"]["body"]) or other))


async def test_without_tier_nothing_is_sent_on_flex(tmp_path: Path) -> None:
    stats, out, sim = await run(tmp_path, [chat_line(i, model=FLEX_MODEL) for i in range(5)])
    assert stats.exit_code == 0 and sim["flex_requests"] == 0
    assert all(tier(r) == "default" for r in out)
    assert report(tmp_path / "out.jsonl")["flex"] is None


async def test_refusals_for_capacity_are_retried_per_line_without_pacing_or_using_attempts(tmp_path: Path) -> None:
    # 70% refused: as quota 429s that share would start the pacer's test (over 1 - 1/K), and
    # with two attempts a line would fail after its second refusal.
    retry = RetryPolicy(max_attempts=2)
    stats, out, sim = await run(tmp_path, [chat_line(i, model=FLEX_MODEL) for i in range(60)],
                                FlexTier(unavailable=0.7), tier="flex", retry=retry)
    assert stats.exit_code == 0 and all(r["error"] is None for r in out)
    assert sim["flex_unavailable"] > 60
    pacer = stats.pacer
    assert pacer is not None
    assert pacer.capacity_refused == sim["flex_unavailable"]
    assert pacer.rate_limited == 0 and pacer.acceptance.pace is None and pacer.acceptance.state == "free"
    assert pacer.breaker.state == pacer.breaker.CLOSED
    doc = report(tmp_path / "out.jsonl")
    assert doc["capacity_refused"] == sim["flex_unavailable"] and doc["rate_limited"] == 0
    assert sum(r["batchrun"].get("capacity_refused", 0) for r in out) == sim["flex_unavailable"]


async def test_lines_refused_for_capacity_three_times_go_at_the_standard_tier(tmp_path: Path) -> None:
    stats, out, sim = await run(tmp_path, [chat_line(i, model=FLEX_MODEL) for i in range(10)],
                                FlexTier(unavailable=1.0), tier="flex", tier_fallback=3600.0)
    assert stats.exit_code == 0 and all(r["error"] is None for r in out)
    assert [tier(r) for r in out] == ["default"] * 10
    assert all(r["batchrun"]["tier_fallback"] is True and r["batchrun"]["capacity_refused"] == 3 for r in out)
    assert sim["flex_unavailable"] == 30
    doc = report(tmp_path / "out.jsonl")
    assert doc["tier_fallback"]["lines"] == 10
    assert doc["tier_fallback"]["cost_usd"] == pytest.approx(doc["cost_usd"])  # every line, at the standard price
    assert doc["tiers"] == {"default": 10} and doc["flex"] is None


async def test_without_fallback_a_flex_tier_out_of_capacity_fails_lines_after_the_patience(tmp_path: Path) -> None:
    retry = RetryPolicy(rate_limit_patience=20.0)
    stats, out, sim = await run(tmp_path, [chat_line(i, model=FLEX_MODEL) for i in range(3)],
                                FlexTier(unavailable=1.0), tier="flex", retry=retry)
    assert stats.exit_code == 1
    assert all(r["response"]["status_code"] == 429 for r in out)
    assert sim["flex_requests"] == sim["requests"]  # never sent at the standard tier


class Hurried(FakeClock):
    """A fake clock that jumps an hour once ``after`` lines are written."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def started(self, stats: RunStats) -> None:
        pass

    def written(self, result: Result, stats: RunStats) -> None:
        if stats.written == self.after:
            self.t += 3600.0

    def retrying(self, *args: object) -> None:
        pass


async def test_lines_unanswered_when_the_fallback_time_comes_go_at_the_standard_tier(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i, model=FLEX_MODEL) for i in range(12)])
    out = tmp_path / "out.jsonl"
    clock = Hurried(after=4)
    async with serve(SimulatorConfig()) as sim:
        stats = await run_batch(RunConfig(source, out, base_url=sim.base_url, concurrency=1, tier="flex",
                                          tier_fallback=1800.0), clock=clock, observer=clock)
    assert stats.exit_code == 0
    tiers = [tier(r) for r in read_jsonl(out)]
    assert tiers[:4] == ["flex"] * 4 and tiers[5:] == ["default"] * 7
    doc = report(out)
    assert doc["tier_fallback"]["lines"] == tiers.count("default")
    assert doc["tiers"] == {"flex": tiers.count("flex"), "default": tiers.count("default")}


async def test_max_cost_reserves_and_charges_flex_lines_at_the_batch_rate(tmp_path: Path) -> None:
    rows = [chat_line(i, model=FLEX_MODEL, max_tokens=20_000) for i in range(10)]
    # Below one line's worst case at the standard price (20,000 output tokens at $2 per 1M), above
    # it at flex's with room for the answers (a few hundred tokens each).
    cap = 20_000 * 2.00e-6 * 0.75
    (tmp_path / "standard").mkdir()
    (tmp_path / "flex").mkdir()
    standard, _, sent = await run(tmp_path / "standard", rows, max_cost=cap)
    flex, out, _ = await run(tmp_path / "flex", rows, max_cost=cap, tier="flex")
    assert standard.exit_code == EXIT_BUDGET and sent["requests"] == 0
    assert flex.exit_code == 0 and len(out) == 10 and all(tier(r) == "flex" for r in out)
    assert report(tmp_path / "flex" / "out.jsonl")["cost_usd"] <= cap


def test_a_batch_deadline_sends_the_rest_online_at_the_tier_given(tmp_path: Path) -> None:
    path = lines(tmp_path, 20, model=FLEX_MODEL)
    out = tmp_path / "out.jsonl"
    with world(seconds_per_request=1.0) as w:
        stats = w.run(path, out, BatchOptions(deadline=6.0, poll_interval=30.0), tier="flex")
        assert w.sim.stats.flex_requests > 0
    assert isinstance(stats, RunStats) and stats.exit_code == 0
    records = read_jsonl(out)
    via_batch = [r for r in records if "batch_id" in r["batchrun"]]
    online = [r for r in records if "batch_id" not in r["batchrun"]]
    assert via_batch and online
    assert all(tier(r) == "default" for r in via_batch)  # a Batch API upload never carries a tier
    assert all(tier(r) == "flex" for r in online)
    doc = report(out)
    assert doc["flex"]["lines"] == len(online) and doc["batch_api"]["lines"] == len(via_batch)


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The config of each run the CLI starts; the run itself stops at once, sending nothing."""
    seen: list[RunConfig] = []

    async def capture(config: RunConfig, **kw: object) -> RunStats:
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr("batchrun.engine.run_batch", capture)  # where the command looks it up when it runs
    return seen


@pytest.mark.parametrize(("args", "timeout"), [(["--tier", "flex"], 900.0),
                                               (["--tier", "flex", "--timeout", "600"], 600.0), ([], 600.0)])
def test_flex_attempts_default_to_a_15_minute_timeout(tmp_path: Path, configs: list[RunConfig],
                                                     args: list[str], timeout: float) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    invoke("run", str(source), "--mock", "-q", *args)
    assert [config.timeout for config in configs] == [timeout]


def test_tier_fallback_takes_a_duration_or_never(tmp_path: Path, configs: list[RunConfig]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    invoke("run", str(source), "--mock", "-q", "--tier", "flex", "--tier-fallback", "30m")
    invoke("run", str(source), "--mock", "-q", "--tier", "flex", "--tier-fallback", "never")
    assert [config.tier_fallback for config in configs] == [1800.0, None]
    code, text = invoke("run", str(source), "--mock", "-q", "--tier-fallback", "30m")
    assert code == 2 and "--tier-fallback only applies with --tier" in text



def test_label_takes_the_tier_too(tmp_path: Path) -> None:
    samples = Path(__file__).parents[2] / "samples"
    for name in ("reviews.csv", "sentiment.txt"):
        (tmp_path / name).write_bytes((samples / name).read_bytes())
    with run_in_thread(SimulatorConfig(flex=FlexTier(unavailable=0.3), seed=2)) as sim:
        code, err = invoke("label", str(tmp_path / "reviews.csv"), "-t", str(tmp_path / "sentiment.txt"),
                           "--labels", "positive,negative,neutral", "--model", FLEX_MODEL, "--tier", "flex",
                           "--base-url", sim.base_url, "-q")
        refused = sim.stats.flex_unavailable
    assert code == 0, err
    assert refused > 0
    doc = orjson.loads((tmp_path / "reviews.labeled.csv.batch" / "results.report.json").read_bytes())
    assert doc["tiers"] == {"flex": 30} and doc["capacity_refused"] == refused
