"""``batchrun mock-server``: the simulator, in the foreground."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ..settings import MILLISECONDS_RANGE, WAIT_RANGE, Bounds
from .bounded import Bounded
from .group import main

if TYPE_CHECKING:
    from ..simulator import TokenCharge

MOCK_EXAMPLES = """
\b
Examples:
  batchrun mock-server --port 8000 --latency-ms 50
  batchrun mock-server --rate-429 0.1 --rate-500 0.05 --rate-drop 0.01 --seed 7
  batchrun mock-server --rpm 600 --tpm 90000 --limits-schedule 20:rpm=300
  batchrun mock-server --rpm 600 --tpm 90000 --token-charge max --no-limit-headers
  batchrun mock-server --rpm 3000 --bucket-seconds 1 --no-limit-headers
  batchrun mock-server --rate-429 0.05 --retry-after 2 --no-retry-after-ms
  batchrun mock-server --batch-seconds-per-request 0.5 --batch-expire-after 60 --batch-rate-lost 0.01
  batchrun mock-server --batch-queue-tokens 2000000
  batchrun mock-server --flex-unavailable 0.3 --flex-latency-ms 500
  batchrun run requests.jsonl --base-url http://127.0.0.1:8000/v1
"""

_PORT = Bounds(0, 65535, whole=True)
_SHARE = Bounds(0, 1)
_PER_MINUTE = Bounds(1, 1e12, whole=True)
_EXPIRY = Bounds(0, 7 * 86_400, low_open=True)
_QUEUE = Bounds(1, 1e12, whole=True)
_BUCKET = Bounds(0, 60, low_open=True)


@main.command("mock-server", epilog=MOCK_EXAMPLES)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=Bounded(_PORT), default=8000, show_default=True, help="0 picks a free port.")
@click.option("--latency-ms", type=Bounded(MILLISECONDS_RANGE), default=0.0, show_default=True,
              help="Fixed delay before every answer.")
@click.option("--jitter-ms", type=Bounded(MILLISECONDS_RANGE), default=0.0, show_default=True,
              help="Extra delay drawn uniformly from [0, jitter] per request.")
@click.option("--rate-429", type=Bounded(_SHARE), default=0.0, help="Share of requests answered 429.")
@click.option("--retry-after", type=Bounded(WAIT_RANGE), default=1.0, show_default=True,
              help="Seconds a 429 asks for (Retry-After and retry-after-ms).")
@click.option("--no-retry-after", is_flag=True, help="Send 429s without any Retry-After header.")
@click.option("--no-retry-after-ms", is_flag=True,
              help="Send --rate-429's 429s with Retry-After in whole seconds only, as most gateways do.")
@click.option("--rate-500", type=Bounded(_SHARE), default=0.0, help="Share answered 500/502/503/504.")
@click.option("--rate-timeout", type=Bounded(_SHARE), default=0.0, help="Share never answered (hang).")
@click.option("--hang-s", type=Bounded(WAIT_RANGE), default=3600.0, show_default=True,
              help="How long a hung request is held before its connection is closed.")
@click.option("--rate-drop", type=Bounded(_SHARE), default=0.0, help="Share whose connection is dropped.")
@click.option("--rate-truncate", type=Bounded(_SHARE), default=0.0, help="Share whose body is cut short.")
@click.option("--rate-malformed", type=Bounded(_SHARE), default=0.0, help="Share answered 200 with non-JSON.")
@click.option("--require-api-key-env", metavar="NAME",
              help="Answer 401 unless requests carry the key held in environment variable NAME.")
@click.option("--any-model", is_flag=True,
              help="Answer any model name; by default a model batchrun has no price for is answered 404 "
                   "model_not_found, as OpenAI answers a model that does not exist.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of fault and jitter draws.")
@click.option("--rpm", type=Bounded(_PER_MINUTE),
              help="Requests per minute, enforced like OpenAI: 429s past it, x-ratelimit-* headers on every answer.")
@click.option("--tpm", type=Bounded(_PER_MINUTE),
              help="Tokens per minute, charged as --token-charge says.")
@click.option("--token-charge", type=click.Choice(["usage", "max", "sum"]), default="usage", show_default=True,
              help="Tokens a request costs: usage = prompt + max output at arrival, corrected to the usage sent; "
                   "max = the larger of prompt and max output (OpenAI's rule); sum = prompt + max output; "
                   "max and sum are never refunded.")
@click.option("--bucket-seconds", type=Bounded(_BUCKET), default=60.0, show_default=True,
              help="Each --rpm/--tpm bucket holds this many seconds of its rate: 60 is a minute's worth, as "
                   "OpenAI's; --rpm 3000 --bucket-seconds 1 is a 50 per second quota with a burst of 50.")
@click.option("--no-limit-headers", is_flag=True,
              help="Send no x-ratelimit-* headers, and limit 429s with Retry-After in whole seconds only.")
@click.option("--limits-schedule", metavar="SECONDS:rpm=N,tpm=N", multiple=True,
              help="Change the limits that long after start (N, or none to lift one), e.g. 20:rpm=300; "
                   "repeatable. POST /_simulator/limits changes them too.")
@click.option("--batch-seconds-per-request", type=Bounded(WAIT_RANGE), default=0.001, show_default=True,
              help="Batch API: time a batch takes to answer each of its lines.")
@click.option("--batch-expire-after", type=Bounded(_EXPIRY), default=86_400.0, show_default=True,
              help="Batch API: seconds after its creation when a batch not done expires.")
@click.option("--batch-rate-failed", type=Bounded(_SHARE), default=0.0,
              help="Batch API: share of lines answered 500 in the output file.")
@click.option("--batch-rate-lost", type=Bounded(_SHARE), default=0.0,
              help="Batch API: share of lines in neither the output nor the error file.")
@click.option("--batch-queue-tokens", type=Bounded(_QUEUE), default=None, metavar="N",
              help="Batch API: the enqueued token limit per model, as OpenAI's: a batch past it fails validation "
                   "with token_limit_exceeded.")
@click.option("--flex-unavailable", type=Bounded(_SHARE), default=0.0,
              help="Share of service_tier=flex requests refused for capacity (429 Resource Unavailable).")
@click.option("--flex-latency-ms", type=Bounded(MILLISECONDS_RANGE), default=0.0, show_default=True,
              help="Added to the latency of every service_tier=flex request.")
def mock_server(host: str, port: int, latency_ms: float, jitter_ms: float, rate_429: float, retry_after: float,
                no_retry_after: bool, no_retry_after_ms: bool, rate_500: float, rate_timeout: float, hang_s: float,
                rate_drop: float, rate_truncate: float, rate_malformed: float, require_api_key_env: str | None,
                any_model: bool, seed: int, rpm: int | None, tpm: int | None, token_charge: TokenCharge, bucket_seconds: float,
                no_limit_headers: bool,
                limits_schedule: tuple[str, ...], batch_seconds_per_request: float, batch_expire_after: float,
                batch_rate_failed: float, batch_rate_lost: float, flex_unavailable: float,
                flex_latency_ms: float, batch_queue_tokens: int | None) -> None:
    """Serve the OpenAI-compatible simulator on loopback until Ctrl-C.

    Deterministic answers with realistic usage for /v1/chat/completions, /v1/completions,
    /v1/embeddings, /v1/responses and /v1/models; counters at /_simulator/stats. As OpenAI, it
    answers 404 to a path outside /v1/ and to a model it does not know (see --any-model).

    With --rpm/--tpm it throttles as OpenAI does (token buckets refilled continuously, 429 with
    retry-after-ms); GET or POST {"rpm": N, "tpm": N} to /_simulator/limits reads or changes them.
    --token-charge and --no-limit-headers model providers that charge or report otherwise;
    /_simulator/stats counts limit 429s (rate_limited) apart from --rate-429's (shed).

    The Batch API (/v1/files, /v1/batches) answers each batch's lines with the same answers, one
    every --batch-seconds-per-request, in an order of its own.

    A request with "service_tier": "flex" waits --flex-latency-ms more, or is refused at
    --flex-unavailable's share with 429 Resource Unavailable; answers to requests that name a
    tier echo it (service_tier), as OpenAI's do.
    """
    from ..simulator import (
        Batches,
        Faults,
        FlexTier,
        RateLimits,
        SimulatorConfig,
        parse_schedule,
        run_forever,
    )

    required = os.environ.get(require_api_key_env) if require_api_key_env else None
    if require_api_key_env and not required:
        raise click.UsageError(f"environment variable {require_api_key_env} is not set")
    try:
        faults = Faults(rate_429=rate_429, rate_500=rate_500, rate_timeout=rate_timeout, rate_drop=rate_drop,
                        rate_truncate=rate_truncate, rate_malformed=rate_malformed,
                        retry_after_s=None if no_retry_after else retry_after,
                        retry_after_ms=not no_retry_after_ms, hang_s=hang_s, require_api_key=required)
        limits = RateLimits(rpm, tpm, headers=not no_limit_headers, token_charge=token_charge,
                            bucket_s=bucket_seconds)
        config = SimulatorConfig(host=host, port=port, latency_ms=latency_ms, jitter_ms=jitter_ms,
                                 faults=faults, seed=seed, limits=limits,
                                 limits_schedule=parse_schedule(";".join(limits_schedule)),
                                 batches=Batches(seconds_per_request=batch_seconds_per_request,
                                                 expire_after_s=batch_expire_after, rate_failed=batch_rate_failed,
                                                 rate_lost=batch_rate_lost, queue_tokens=batch_queue_tokens),
                                 any_model=any_model, any_root=False,
                                 flex=FlexTier(flex_unavailable, flex_latency_ms))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    def ready(base_url: str) -> None:
        notes = [f"{name} {value:,}" for name, value in (("rpm", rpm), ("tpm", tpm)) if value]
        if token_charge != "usage":
            notes.append(f"token charge {token_charge}, never refunded")
        if bucket_seconds < 60 and (rpm or tpm):
            notes.append(f"buckets of {bucket_seconds:g} s")
        if no_limit_headers:
            notes.append("no x-ratelimit-* headers")
        if no_retry_after_ms and not no_retry_after:
            notes.append("--rate-429 without retry-after-ms")
        extra = "".join(f", {note}" for note in notes)
        click.echo(f"simulator listening on {base_url}  (Ctrl-C to stop{extra})", err=True)

    stats = run_forever(config, on_ready=ready)
    limited = sum(stats.rate_limited.values())
    counts = [f"{limited:,} of them rate-limited"] if limited else []
    if stats.shed:
        counts.append(f"{stats.shed:,} shed")
    if stats.flex_unavailable:
        counts.append(f"{stats.flex_unavailable:,} flex refused for capacity")
    note = f" ({', '.join(counts)})" if counts else ""
    click.echo(f"simulator stopped after {stats.requests:,} requests{note}", err=True)
