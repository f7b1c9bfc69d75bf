"""The frozen configuration of a run, and every default in one place.

The CLI builds a `RunConfig` from options and environment; the library only ever reads this
object, never the environment.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .disk.publish import link_target
from .errors import ConfigError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_CONCURRENCY = 64
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
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_TIMEOUT = 600.0  # seconds one attempt may take in all: long generations are normal
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_MAX = 8.0  # as the openai SDK caps it; longer outages are the breaker's
DEFAULT_RATE_LIMIT_PATIENCE = 900.0
DEFAULT_RETRY_AFTER_MAX = 300.0
DEFAULT_DRAIN_TIMEOUT = 30.0  # seconds in-flight requests get to finish after a stop
DEFAULT_OUTAGE_THRESHOLD = 10
DEFAULT_MAX_OUTAGE = 1800.0


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


class ApiKey:
    """A secret that does not show itself in reprs, tracebacks or f-strings.

    Surrounding whitespace is dropped (a key file saved with CRLF); any other control character
    is refused, since it could not go into a header.
    """

    __slots__ = ("_password", "_scheme", "_value")

    def __init__(self, value: str, *, scheme: str = "Bearer") -> None:
        value = value.strip()
        if not value:
            raise ConfigError("the API key is empty")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError("the API key contains a control character (a line break?); check how it is set")
        self._value = value
        self._scheme = scheme
        self._password = ""

    @classmethod
    def basic(cls, user: str, password: str) -> ApiKey:
        """HTTP Basic credentials, as a base URL's ``user:password@`` gives them."""
        key = cls(base64.b64encode(f"{user}:{password}".encode()).decode(), scheme="Basic")
        key._password = password
        return key

    def reveal(self) -> str:
        return self._value

    def secrets(self) -> tuple[str, ...]:
        """Every form of the secret a server could quote back: the header's token, and a password."""
        return (self._value, self._password) if self._password else (self._value,)

    def header(self) -> str:
        """The ``Authorization`` header value, masked in reprs (tracebacks that show locals)."""
        return _Masked(f"{self._scheme} {self._value}")

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other.header() == self.header()

    def __hash__(self) -> int:
        return hash(self.header())


class _Masked(str):
    """A string that prints as itself but shows ``***`` in its repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"'{self.partition(' ')[0]} ***'"


class _Hidden(_Masked):
    """A string that prints as itself but shows only ``***`` in its repr: a header's value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request.

    :param max_attempts: attempts per line for failures other than 429.
    :param backoff_base: the first backoff cap in seconds; it doubles per failure.
    :param backoff_max: the largest backoff cap in seconds (full jitter below it).
    :param rate_limit_patience: seconds one line may spend waiting on 429s before it fails;
        429s do not use up attempts, since the server did no work.
    :param retry_after_max: the longest server-requested wait honoured, in seconds.
    """

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_MAX
    rate_limit_patience: float = DEFAULT_RATE_LIMIT_PATIENCE
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX

    def __post_init__(self) -> None:
        ATTEMPTS_RANGE.check("--max-attempts", self.max_attempts)
        WAIT_RANGE.check("--rate-limit-patience", self.rate_limit_patience)
        WAIT_RANGE.check("retry_after_max", self.retry_after_max)
        WAIT_RANGE.check("backoff_base", self.backoff_base)
        WAIT_RANGE.check("backoff_max", self.backoff_max)
        if self.backoff_max < self.backoff_base:
            raise ConfigError("backoff must satisfy 0 <= base <= max")


@dataclass(frozen=True)
class Shard:
    """One contiguous part of the input, run as a run of its own whose lines keep the numbers,
    ids and messages the whole run gives them (`scale.shards.split`).

    :param number: 0-based. :param count: shards in the run.
    :param start: byte offset of its first line (at a line start).
    :param end: byte offset just past its last line.
    :param first_index: request index (0-based, blank lines not counted) of its first request line.
    :param first_line: physical lines before its first line.
    :param duplicates: indices in this shard whose ``custom_id`` an earlier shard used.
    """

    number: int
    count: int
    start: int
    end: int
    first_index: int
    first_line: int
    duplicates: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs.

    :param input_path: the JSONL file of requests.
    :param output_path: where ordered results go; default ``<input stem>.results.jsonl``.
    :param base_url: the API root, where ``chat/completions`` is appended (`client.join_url`); its
        query goes on every request. A ``user:password@`` in it is taken out and sent as HTTP Basic
        credentials, in place of an API key.
    :param api_key: sent as ``Authorization: Bearer``; may be omitted for loopback endpoints.
    :param api_key_env: the environment variable the key is read from, for messages that say
        where to set it.
    :param concurrency: requests in flight at once (also the number of connections).
    :param window: how many lines past the oldest unfinished one may be dispatched; bounds the
        memory held by results waiting for their turn. Default ``max(4096, 64 * concurrency)``.
    :param window_bytes: dispatch also pauses while the results waiting for their turn hold this
        many bytes of output lines; those already sent still land (default 256 MiB).
    :param timeout: seconds one attempt may take in all, from asking for a connection to the
        last byte of the response (a server sending a byte now and then cannot stretch it).
    :param connect_timeout: seconds to wait for a connection, within ``timeout``.
    :param restart: discard the output's checkpoint (or finished output) and run every line.
    :param retry_failed: keep the successes of the checkpoint or finished output; send the
        failed lines again.
    :param drain_timeout: seconds in-flight requests may take to finish after a stop.
    :param mock: the endpoint is the built-in simulator, whose port changes from start to start.
    :param rpm: / :param tpm: requests / tokens per minute not to exceed; limits the endpoint
        announces in ``x-ratelimit-*`` headers are followed as well.
    :param outage_threshold: failures in a row (no response, 5xx) that make the endpoint count
        as down: dispatch pauses and one probe goes out at growing intervals; 0 never pauses.
    :param max_outage: seconds the endpoint may stay down before the run stops (exit 4).
    :param max_cost: USD the run may spend at most (exit 3 when reached).
    :param prices_path: a price file overriding or extending the built-in table.
    :param batch_discount: price every model at the OpenAI Batch API's discount.
    :param headers: ``"Name: value"`` headers sent with every request (an Azure ``api-key``, a
        gateway's token); they win over batchrun's own, ``Authorization`` included. Their values
        are secrets, like the key. With any of them, no API key is required.
    :param organization: / :param project: sent as ``OpenAI-Organization`` / ``OpenAI-Project``.
    :param model: the model every request is sent with, whatever its line says.
    :param via: ``"online"``, or ``"batch"``: through the provider's Batch API (`batchapi`).
    :param shard: run only this part of the input; the files are the part's (`scale.parts`),
        ``output_path`` stays the whole run's output.
    :param limit: send only the first ``limit`` lines (a smoke run, `smoke`): their answers stay in
        the checkpoint, and the run without a limit goes on from them. Not part of the run's
        identity, so not of `request_options`.
    """

    input_path: Path
    output_path: Path | None = None
    base_url: str = DEFAULT_BASE_URL
    api_key: ApiKey | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV
    concurrency: int = DEFAULT_CONCURRENCY
    window: int | None = None
    window_bytes: int = DEFAULT_WINDOW_BYTES
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    restart: bool = False
    retry_failed: bool = False
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    mock: bool = False
    rpm: float | None = None
    tpm: float | None = None
    outage_threshold: int = DEFAULT_OUTAGE_THRESHOLD
    max_outage: float = DEFAULT_MAX_OUTAGE
    max_cost: float | None = None
    prices_path: Path | None = None
    batch_discount: bool = False
    headers: tuple[str, ...] = ()
    organization: str | None = None
    project: str | None = None
    model: str | None = None
    via: str = "online"
    shard: Shard | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_path", Path(self.input_path))
        output = Path(self.output_path) if self.output_path else default_output_path(self.input_path)
        try:
            output = link_target(output)  # a symlinked output is written through, to its target's directory
        except OSError as exc:
            raise ConfigError(f"the output {output}: {exc.strerror}; remove the link or choose another -o") from None
        object.__setattr__(self, "output_path", output)
        self._check_numbers()
        if self.restart and self.retry_failed:
            raise ConfigError("--restart and --retry-failed exclude each other: one runs every line, one only the failed")
        try:
            base_url, credentials = split_base_url(self.base_url)
        except ConfigError as exc:
            raise ConfigError(f"--base-url {exc}") from None
        if credentials is not None:
            if self.api_key is not None:
                raise ConfigError("--base-url holds a user name and password, and an API key is set too: both "
                                  "would be the Authorization header. Keep one: drop user:password@ from the "
                                  "URL, or unset the key's variable (OPENAI_API_KEY, or the one --api-key-env names)")
            object.__setattr__(self, "api_key", credentials)
        object.__setattr__(self, "base_url", base_url)
        object.__setattr__(self, "headers", _checked_headers(self.headers))
        names = (("OPENAI_ORG_ID", self.organization), ("OPENAI_PROJECT_ID", self.project), ("--model", self.model))
        for name, value in names:
            if value is not None and (not value.isascii() or not value.isprintable() or not value or " " in value):
                raise ConfigError(f"{name} must be ASCII without spaces or control characters, got {value!r}")
        if self.via not in ("online", "batch"):
            raise ConfigError(f"via must be 'online' or 'batch', got {self.via!r}")
        if self.shard is not None and self.via != "online":
            raise ConfigError("a run through the Batch API is one process's: it cannot be sharded")
        if self.limit is not None and (self.via != "online" or self.shard is not None):
            raise ConfigError("--limit sends the first lines online, from one process: it cannot be combined with "
                              f"{'--via batch' if self.via != 'online' else '--ray'}")
        _check_paths({"input file": self.input_path, "output": self.out, "errors file": self.errors_path,
                      "report": self.report_path, "checkpoint": self.checkpoint_path, "batches": self.batches_path})
        if self.api_key is None and not self.headers and not self.mock and not is_loopback(self.base_url):
            raise ConfigError(
                f"no API key for {self.base_url}: set {self.api_key_env} (or the variable named by "
                "--api-key-env), pass the credentials with --header (Azure's 'api-key: ...'), or use --mock "
                "for the built-in simulator. From Python, RunConfig.from_env(...) reads the key from the "
                "environment, as the command does, or pass api_key=batchrun.ApiKey(...)"
            )

    @classmethod
    def from_env(cls, input_path: Path | str, output_path: Path | str | None = None, *,
                 environ: Mapping[str, str] | None = None, **fields: Any) -> RunConfig:
        """A config that takes from the environment what the command line takes from it: the key
        from ``api_key_env`` (``OPENAI_API_KEY``), ``OPENAI_BASE_URL``, ``OPENAI_ORG_ID`` and
        ``OPENAI_PROJECT_ID``; ``fields`` (any of the config's) win. A bare `RunConfig` reads
        nothing from the environment.

        :param environ: read instead of ``os.environ``.
        """
        env = os.environ if environ is None else environ
        found: dict[str, Any] = {}
        if key := env.get(fields.get("api_key_env", DEFAULT_API_KEY_ENV)):
            found["api_key"] = ApiKey(key)
        for name, variable in (("base_url", "OPENAI_BASE_URL"), ("organization", "OPENAI_ORG_ID"),
                               ("project", "OPENAI_PROJECT_ID")):
            if value := env.get(variable):
                found[name] = value
        return cls(Path(input_path), None if output_path is None else Path(output_path), **{**found, **fields})

    def _check_numbers(self) -> None:
        """Every number within its range (nan and inf in none); the window defaulted.

        :raises ConfigError: naming the option.
        """
        CONCURRENCY_RANGE.check("--concurrency", self.concurrency)
        if self.window is not None:
            WINDOW_RANGE.check("--window", self.window)
        window = self.window or max(MIN_WINDOW, WINDOW_PER_SLOT * self.concurrency)
        if window < self.concurrency:
            raise ConfigError(f"--window ({window}) must be at least --concurrency ({self.concurrency})")
        object.__setattr__(self, "window", window)
        WINDOW_BYTES_RANGE.check("window_bytes", self.window_bytes)
        DEADLINE_RANGE.check("--timeout", self.timeout)
        DEADLINE_RANGE.check("--connect-timeout", self.connect_timeout)
        WAIT_RANGE.check("--drain-timeout", self.drain_timeout)
        WAIT_RANGE.check("--max-outage", self.max_outage)
        OUTAGE_THRESHOLD_RANGE.check("outage_threshold", self.outage_threshold)
        for name, value, bounds in (("--rpm", self.rpm, RPM_RANGE), ("--tpm", self.tpm, TPM_RANGE),
                                    ("--max-cost", self.max_cost, COST_RANGE), ("--limit", self.limit, LIMIT_RANGE)):
            if value is not None:
                bounds.check(name, value)

    @property
    def out(self) -> Path:
        """The output path, always set after construction; a shard's, its part's."""
        assert self.output_path is not None
        if self.shard is None:
            return self.output_path
        from .scale.parts import part_path  # it reads configs: imported here, not at the top

        return part_path(self.output_path, self.shard)

    @property
    def errors_path(self) -> Path:
        return errors_path_for(self.out)

    @property
    def report_path(self) -> Path:
        """``out.jsonl`` → ``out.report.json`` (``out`` → ``out-report.json``): the run's usage
        and cost report, beside the output."""
        return report_path_for(self.out)

    @property
    def checkpoint_path(self) -> Path:
        """``out.jsonl`` → ``out.jsonl.checkpoint``: the run's state until it is published."""
        return self.out.with_name(self.out.name + ".checkpoint")

    @property
    def batches_path(self) -> Path:
        """``out.jsonl`` → ``out.jsonl.batches``: a ``--via batch`` run's batches until it is published."""
        return self.out.with_name(self.out.name + ".batches")

    def request_options(self) -> dict[str, str]:
        """The options that shape what is sent: a checkpoint only resumes with the same ones.
        Header values are secrets, and left out like the key."""
        options = {"base_url": "(the built-in simulator)" if self.mock else self.base_url.rstrip("/")}
        if self.model is not None:
            options["model"] = self.model
        if self.via != "online":  # a checkpoint of an online run, which had no such option, resumes online
            options["via"] = self.via
        return options

    def header_fields(self) -> dict[str, str]:
        """The extra headers to send, by lower-case name: ``organization`` and ``project``, then
        ``headers``, which win."""
        fields = {name: value for name, value in (("openai-organization", self.organization),
                                                  ("openai-project", self.project)) if value}
        fields.update(split_header(line) for line in self.headers)
        return {name: _Hidden(value) for name, value in fields.items()}


def default_output_path(input_path: Path) -> Path:
    """``data/in.jsonl`` → ``data/in.results.jsonl``."""
    return input_path.with_name(f"{_stem(input_path)}.results.jsonl")


def errors_path_for(output_path: Path) -> Path:
    """``out.jsonl`` → ``out.errors.jsonl`` (``out`` → ``out-errors.jsonl``), beside the output."""
    return _beside(output_path, "errors.jsonl")


def report_path_for(output_path: Path) -> Path:
    """``out.jsonl`` → ``out.report.json`` (``out`` → ``out-report.json``), beside the output."""
    return _beside(output_path, "report.json")


def _beside(output: Path, what: str) -> Path:
    """A file derived from the output's name: ``.jsonl`` gives way to ``.<what>``; any other
    name keeps its whole self and gets ``-<what>``. The two forms never meet, so no two outputs
    share an errors file or a report (``out`` and ``out.jsonl`` least of all)."""
    if output.name.endswith(".jsonl"):
        return output.with_name(f"{output.name.removesuffix('.jsonl')}.{what}")
    return output.with_name(f"{output.name}-{what}")


def _stem(path: Path) -> str:
    return path.name.removesuffix(".jsonl")


def _check_paths(paths: dict[str, Path]) -> None:
    """Every file of a run is a file of its own: none is a directory (but the checkpoint and the
    batches' folder), and no two are one — by name, through symlinks, or as hard links.

    :raises ConfigError: naming the two paths.
    """
    seen: dict[object, str] = {}
    for what, path in paths.items():
        if what not in ("input file", "checkpoint", "batches") and path.is_dir():
            raise ConfigError(f"the {what} {path} is a directory; -o takes a file name")
        keys: list[object] = [path.resolve()]
        try:
            stat = path.stat()
            keys.append((stat.st_dev, stat.st_ino))
        except OSError:
            pass  # not there yet
        for key in keys:
            if key in seen:
                raise ConfigError(f"the {what} {path} is the {seen[key]}; choose another -o")
            seen[key] = f"{what} {path}"


def split_base_url(url: str) -> tuple[str, ApiKey | None]:
    """The base URL without its ``user:password@``, and those as Basic credentials (or ``None``).

    The credentials are a secret like the key: the URL that is kept, compared on resume and shown
    in messages is the one without them.

    :raises ConfigError: the URL is not http(s), has no host, a port out of range, a character a
        URL cannot hold, a ``#fragment``, or a path that already names an endpoint; its text is
        quoted only without the credentials.
    """
    shown = _without_userinfo(url)
    # urlsplit drops tabs and line breaks without a word; they would reach the server raw.
    if (bad := next((c for c in url if c.isspace() or not (c.isascii() and c.isprintable()) or c == "\\"), None)):
        raise ConfigError(f"has {bad!r}, which a URL cannot hold (percent-encode it): {shown!r}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"is not a URL ({exc}): {shown!r}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"must be an http(s) URL, got {shown!r}")
    if not parts.hostname:
        raise ConfigError(f"has no host: {shown!r}")
    if "#" in url:
        raise ConfigError(f"has a #fragment, which is never sent; remove it: {shown!r}")
    if _ENDPOINT_PATH.search(parts.path):
        raise ConfigError(f"names an endpoint, not the API root: {shown!r}; it should end where "
                          "'chat/completions' can be appended (e.g. https://api.openai.com/v1)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigError(f"has a port that is not a number from 1 to 65535: {shown!r}")
    if not parts.username and not parts.password:
        return shown, None
    return shown, ApiKey.basic(unquote(parts.username or ""), unquote(parts.password or ""))


def split_header(line: str) -> tuple[str, str]:
    """``"Name: value"`` as ``(name in lower case, value)``; the value is a secret: never quoted.

    :raises ConfigError: no colon, a name that is not an HTTP token, an empty value, a line
        break or another control character, or a header batchrun must set itself.
    """
    name, colon, value = line.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name:
        # Not quoted: without its colon the text may be all value.
        raise ConfigError(f"--header must be 'Name: value', got one without {'a colon' if not colon else 'a name'}")
    if bad := set(name) - _TOKEN_CHARS:
        raise ConfigError(f"--header {name!r}: a header name cannot hold {''.join(sorted(bad))!r}")
    if name.lower() in _OWN_HEADERS:
        raise ConfigError(f"--header {name!r}: batchrun sets this header itself")
    if not value:
        raise ConfigError(f"--header {name!r} has an empty value (is the variable it comes from set?)")
    if any(not (c == "\t" or " " <= c <= "~") for c in value):
        raise ConfigError(f"--header {name!r}: its value holds a line break, a control character or a "
                          "character outside ASCII, which a header cannot carry")
    return name.lower(), value


def _checked_headers(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The header lines, checked, one per name, each masked in reprs (tracebacks that show locals).

    :raises ConfigError: as `split_header` says, or a name given twice.
    """
    fields: dict[str, str] = {}
    for line in lines:
        name, value = split_header(line)
        if name in fields:
            raise ConfigError(f"--header {name!r} is given twice; keep one")
        fields[name] = value
    return tuple(_Masked(f"{name}: {value}") for name, value in fields.items())


# The characters of an HTTP header name (RFC 9110 token).
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# What frames the request and its JSON body: the transport's and batchrun's alone.
_OWN_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection"})


def _without_userinfo(url: str) -> str:
    return _USERINFO.sub(r"\1", url, count=1)


# The authority runs to the first / ? or #; the user information in it, to its last @.
_USERINFO = re.compile(r"^([^:/?#]*://)[^/?#]*@")
# A base URL whose path already ends with an endpoint: every request would go to
# .../chat/completions/chat/completions. Bare "/completions" etc. could be an Azure deployment's name.
_ENDPOINT_PATH = re.compile(r"/(?:chat/completions|v1/(?:completions|embeddings|responses))/*$")


def is_loopback(url: str) -> bool:
    """Whether the URL's host is this machine, where a key is not required."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
