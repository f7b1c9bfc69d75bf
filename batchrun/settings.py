"""Every setting of a run declared once: its name, option, default, range, environment
variable, help and --help section (`Setting`). The CLI's options (`cli.declared`), the range
checks of `RunConfig` and `RetryPolicy`, and the options table in docs/options.md are made
from these declarations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# Lines that may wait, finished, behind the oldest unfinished one: per concurrency slot, with a
# floor so that small pools still ride out one slow request. Lines waiting out a Retry-After
# hold their place too: at 10% random 429s with whole-second Retry-After, 2,000 lines at C=64
# took 6.7 s with a window of 1,024 and 4.6 s with 4,096 (the pacing benchmark's shed-10-429 case,
# scripts/bench_pacing.py). A waiting line costs its encoded output line, about a kilobyte.
WINDOW_PER_SLOT = 64
MIN_WINDOW = 4096
# The bytes those waiting lines may hold before dispatch pauses: far above what a window of
# kilobyte answers holds (4 MB), so it only binds when answers are large (64 KB on average at
# the smallest window), where the window alone let a slow first line hold gigabytes.
DEFAULT_WINDOW_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Bounds:
    """The values a numeric setting accepts: finite, from ``low`` (excluded when ``low_open``)
    to ``high``; whole numbers only when ``whole``."""

    low: float
    high: float
    low_open: bool = False
    whole: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high or (self.whole and value != int(value)):
            return False
        return value > self.low if self.low_open else value >= self.low

    def check(self, name: str, value: float) -> None:
        """:raises ConfigError: naming the setting, unless `admits` the value."""
        if not self.admits(value):
            raise ConfigError(f"{name} must be {self}, got {value!r}")

    def __str__(self) -> str:
        if self.whole:
            return f"a whole number from {_figure(self.low)} to {_figure(self.high)}"
        if self.low_open:
            return f"a number above {_figure(self.low)} and at most {_figure(self.high)}"
        return f"a number from {_figure(self.low)} to {_figure(self.high)}"


def _figure(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


# Every numeric setting has a finite range, shared by the options and `RunConfig`: nan passes
# every comparison and inf every lower bound, and either one hung a run (a deadline never due, a
# line waiting on 429s forever) or crashed it deep inside. The upper bounds are far above any
# useful value, except concurrency's.
ONE_DAY = 86_400.0
# Each worker costs about 4 KB before it sends anything (peak RSS of `batchrun run` on 20 lines
# with --mock, under /usr/bin/time: 48 MB at -c 10, 84 MB at -c 10000), and each request in
# flight holds a connection: a file descriptor, and towards one endpoint one of Linux's 28,232
# ephemeral ports (32768-60999), which a closed connection keeps for a minute in TIME_WAIT.
MAX_CONCURRENCY = 10_000
CONCURRENCY_RANGE = Bounds(1, MAX_CONCURRENCY, whole=True)
WINDOW_RANGE = Bounds(1, WINDOW_PER_SLOT * MAX_CONCURRENCY, whole=True)  # the default's largest
WINDOW_BYTES_RANGE = Bounds(1, 2**40, whole=True)
ATTEMPTS_RANGE = Bounds(1, 100, whole=True)
WAIT_RANGE = Bounds(0, ONE_DAY)  # seconds that may be none: patience, drain, outage, backoff
DEADLINE_RANGE = Bounds(0, ONE_DAY, low_open=True)  # seconds that must pass first: timeouts
MILLISECONDS_RANGE = Bounds(0, ONE_DAY * 1000)  # the simulator's latency
RPM_RANGE = Bounds(0, 1e9, low_open=True)
TPM_RANGE = Bounds(0, 1e12, low_open=True)
COST_RANGE = Bounds(0, 1e9, low_open=True)  # USD
OUTAGE_THRESHOLD_RANGE = Bounds(0, 1_000_000, whole=True)
LIMIT_RANGE = Bounds(1, 2**53, whole=True)  # lines


# The sections of --help, in their order: the common ones first.
ENDPOINT = "Endpoint"
THROUGHPUT = "Throughput and pacing"
BUDGET = "Budget"
OUTPUT = "Output"
BATCH_API = "Batch API"
RAY = "Ray"
SIMULATOR = "Simulator"
GROUPS = (ENDPOINT, THROUGHPUT, BUDGET, OUTPUT, BATCH_API, RAY, SIMULATOR)


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting, declared once.

    :param name: its keyword: the command's parameter, and the `RunConfig` or `RetryPolicy`
        field of that name when it sets one.
    :param flag: its long option; ``None`` for a setting of the library only.
    :param default: :param group: its --help section (`GROUPS`). :param help: one sentence or two.
    :param bounds: the numbers it takes; ``None`` for a setting that is not a number.
    :param env: the environment variable that sets it too (for cron).
    :param short: its one-letter option. :param metavar: what --help calls its value.
    :param default_text: the default as words, where it is not one value.
    :param kind: what its text is: ``"text"``, ``"path"``, ``"duration"`` (``90s``, ``6h``), or
        ``"flag"`` (no value; the default of a `bool` setting).
    :param multiple: it may be given more than once; its value is a tuple.
    :param choices: the values it takes, if a few words.
    """

    name: str
    flag: str | None
    default: T
    group: str
    help: str = ""
    bounds: Bounds | None = None
    env: str | None = None
    short: str | None = None
    metavar: str | None = None
    default_text: str | None = None
    kind: str = "text"
    multiple: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.default, bool) and self.kind == "text":
            object.__setattr__(self, "kind", "flag")

    @property
    def label(self) -> str:
        """How messages name it: its option, or its field."""
        return self.flag or self.name

    def check(self, value: object) -> None:
        """:raises ConfigError: naming the setting, if ``value`` (a number, unless ``None``) is
        outside its bounds."""
        if self.bounds is not None and value is not None:
            assert isinstance(value, (int, float))
            self.bounds.check(self.label, value)


BASE_URL = Setting("base_url", "--base-url", "https://api.openai.com/v1", ENDPOINT, env="OPENAI_BASE_URL",
                   metavar="URL", help="The OpenAI-compatible API root, where chat/completions is appended.")
API_KEY_ENV = Setting("api_key_env", "--api-key-env", DEFAULT_API_KEY_ENV, ENDPOINT, metavar="NAME",
                      help="Environment variable holding the API key (never pass the key itself).")
HEADERS: Setting[tuple[str, ...]] = Setting(
    "headers", "--header", (), ENDPOINT, multiple=True, metavar="'NAME: VALUE'",
    help="Header sent with every request (repeatable): Azure's api-key, a gateway's token. Wins over batchrun's "
         "own, Authorization included; never logged. OPENAI_ORG_ID and OPENAI_PROJECT_ID are sent as "
         "OpenAI-Organization and OpenAI-Project.")

CONCURRENCY = Setting("concurrency", "--concurrency", 64, THROUGHPUT, bounds=CONCURRENCY_RANGE,
                      env="BATCHRUN_CONCURRENCY", short="-c", help="Requests in flight at once.")
WINDOW: Setting[int | None] = Setting(
    "window", "--window", None, THROUGHPUT, bounds=WINDOW_RANGE, env="BATCHRUN_WINDOW",
    default_text=f"max({MIN_WINDOW}, {WINDOW_PER_SLOT} x concurrency)",
    help="Most lines dispatched past the oldest unfinished one (bounds memory).")
MAX_ATTEMPTS = Setting("max_attempts", "--max-attempts", 6, THROUGHPUT, bounds=ATTEMPTS_RANGE,
                       env="BATCHRUN_MAX_ATTEMPTS",
                       help="Attempts per line for retryable failures; 429s are bounded by --rate-limit-patience.")
RATE_LIMIT_PATIENCE = Setting("rate_limit_patience", "--rate-limit-patience", 900.0, THROUGHPUT, bounds=WAIT_RANGE,
                              env="BATCHRUN_RATE_LIMIT_PATIENCE",
                              help="Seconds one line may wait on 429s before it is failed.")
# Seconds one attempt may take in all: long generations are normal.
TIMEOUT = Setting("timeout", "--timeout", 600.0, THROUGHPUT, bounds=DEADLINE_RANGE, env="BATCHRUN_TIMEOUT",
                  help="Seconds one attempt may take, from connecting to the response's last byte.")
CONNECT_TIMEOUT = Setting("connect_timeout", "--connect-timeout", 10.0, THROUGHPUT, bounds=DEADLINE_RANGE,
                          help="Seconds to wait for a connection.")
RPM: Setting[float | None] = Setting(
    "rpm", "--rpm", None, THROUGHPUT, bounds=RPM_RANGE, env="BATCHRUN_RPM",
    help="Requests per minute not to exceed. Without it, limits the endpoint announces (x-ratelimit-* headers) "
         "are learned and followed.")
TPM: Setting[float | None] = Setting(
    "tpm", "--tpm", None, THROUGHPUT, bounds=TPM_RANGE, env="BATCHRUN_TPM",
    help="Tokens per minute not to exceed (estimated before sending, corrected by usage).")
MAX_OUTAGE = Setting("max_outage", "--max-outage", 1800.0, THROUGHPUT, bounds=WAIT_RANGE,
                     help="Seconds the endpoint may stay down (dispatch paused, probing) before the run stops.")
DRAIN_TIMEOUT = Setting("drain_timeout", "--drain-timeout", 30.0, THROUGHPUT, bounds=WAIT_RANGE,
                        help="After Ctrl-C or SIGTERM, seconds in-flight requests get to finish.")
TIER: Setting[str | None] = Setting(
    "tier", "--tier", None, THROUGHPUT, choices=("flex",), env="BATCHRUN_TIER",
    help="Send chat and Responses lines that name no service_tier at this tier: flex is billed at the Batch API's "
         "prices, answers more slowly (attempts then default to a 15-minute --timeout) and refuses for capacity "
         "now and then (retried without slowing the run). Models the price table lists without it go at the "
         "standard tier.")
TIER_FALLBACK: Setting[float | None] = Setting(
    "tier_fallback", "--tier-fallback", None, THROUGHPUT, bounds=WAIT_RANGE, kind="duration", choices=("never",),
    metavar="AFTER|never", env="BATCHRUN_TIER_FALLBACK", default_text="never",
    help="With --tier: send a line at the standard tier once it is still unanswered this long after the run "
         "started, or was refused for capacity 3 times.")
# The library's alone: no option sets them.
WINDOW_BYTES = Setting("window_bytes", None, DEFAULT_WINDOW_BYTES, THROUGHPUT, bounds=WINDOW_BYTES_RANGE,
                       help="Dispatch also pauses while the lines waiting for their turn hold this many bytes.")
OUTAGE_THRESHOLD = Setting("outage_threshold", None, 10, THROUGHPUT, bounds=OUTAGE_THRESHOLD_RANGE,
                           help="Failures in a row (no response, 5xx) that make the endpoint count as down; 0 never.")
BACKOFF_BASE = Setting("backoff_base", None, 1.0, THROUGHPUT, bounds=WAIT_RANGE,
                       help="The first backoff cap in seconds; it doubles per failure.")
# As the openai SDK caps it; longer outages are the breaker's.
BACKOFF_MAX = Setting("backoff_max", None, 8.0, THROUGHPUT, bounds=WAIT_RANGE,
                      help="The largest backoff cap in seconds (full jitter below it).")
RETRY_AFTER_MAX = Setting("retry_after_max", None, 300.0, THROUGHPUT, bounds=WAIT_RANGE,
                          help="The longest server-requested wait honoured, in seconds.")

MAX_COST: Setting[float | None] = Setting(
    "max_cost", "--max-cost", None, BUDGET, bounds=COST_RANGE, env="BATCHRUN_MAX_COST", metavar="USD",
    help="Spend at most this many dollars: dispatch stops before a request could pass it (exit 3); the summary "
         "prints the command that continues with a higher cap.")
PRICES: Setting[Path | None] = Setting(
    "prices_path", "--prices", None, BUDGET, kind="path", metavar="FILE",
    help="Price file (JSON or TOML) overriding or extending the built-in table.")
BATCH_DISCOUNT = Setting("batch_discount", "--batch-discount", False, BUDGET,
                         help="Price the lines answered online at the Batch API's 50% too (lines answered through "
                              "it always are).")
CACHE: Setting[Path | None] = Setting(
    "cache", "--cache", None, BUDGET, kind="path", metavar="[DIR]",
    default_text="off; --cache alone: $XDG_CACHE_HOME/batchrun, else ~/.cache/batchrun",
    help="Answer a request answered successfully before (same endpoint, path and body) from the response cache "
         "in DIR, at no cost, instead of sending it; keep this run's successes there. Requests with "
         "temperature > 0 are cached too. See batchrun cache.")

RESTART = Setting("restart", "--restart", False, OUTPUT,
                  help="Discard earlier results for this output (checkpoint or finished) and run everything again.")
RETRY_FAILED = Setting("retry_failed", "--retry-failed", False, OUTPUT,
                       help="Keep the earlier successes for this output; send only what failed again.")

LIMIT: Setting[int | None] = Setting(
    "limit", "--limit", None, OUTPUT, bounds=LIMIT_RANGE, metavar="N",
    help="Send only the first N lines, to check a prompt before the whole file: their answers stay in the "
         "checkpoint (not published), and the same command without --limit sends only the rest.")
MOCK = Setting("mock", "--mock", False, SIMULATOR, help="Run against the built-in simulator: no key, no network.")

# What `RetryPolicy` checks, and what `RunConfig` checks besides.
RETRY_SETTINGS: tuple[Setting[Any], ...] = (MAX_ATTEMPTS, RATE_LIMIT_PATIENCE, BACKOFF_BASE, BACKOFF_MAX,
                                            RETRY_AFTER_MAX)
RUN_SETTINGS: tuple[Setting[Any], ...] = (
    BASE_URL, API_KEY_ENV, HEADERS, CONCURRENCY, WINDOW, TIMEOUT, CONNECT_TIMEOUT, RPM, TPM, MAX_OUTAGE,
    DRAIN_TIMEOUT, WINDOW_BYTES, OUTAGE_THRESHOLD, MAX_COST, PRICES, BATCH_DISCOUNT, CACHE, RESTART, RETRY_FAILED, LIMIT,
    MOCK, TIER, TIER_FALLBACK)
