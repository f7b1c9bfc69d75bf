"""The frozen configuration of a run; its settings' defaults and ranges are declared in `settings`.

The CLI builds a `RunConfig` from options and environment; the library only ever reads this
object, never the environment.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from . import settings as declared
from .errors import ConfigError


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

    max_attempts: int = declared.MAX_ATTEMPTS.default
    backoff_base: float = declared.BACKOFF_BASE.default
    backoff_max: float = declared.BACKOFF_MAX.default
    rate_limit_patience: float = declared.RATE_LIMIT_PATIENCE.default
    retry_after_max: float = declared.RETRY_AFTER_MAX.default

    def __post_init__(self) -> None:
        for setting in declared.RETRY_SETTINGS:
            setting.check(getattr(self, setting.name))
        if self.backoff_max < self.backoff_base:
            raise ConfigError("backoff must satisfy 0 <= base <= max")


@dataclass(frozen=True)
class Span:
    """A contiguous part of the input, run as a run of its own whose lines keep the numbers, ids
    and messages the whole input gives them.

    :param start: byte offset of its first line (at a line start).
    :param end: byte offset just past its last line.
    :param first_index: request index (0-based, blank lines not counted) of its first request line.
    :param first_line: physical lines before its first line.
    :param duplicates: indices in it whose ``custom_id`` a line before it used.
    """

    start: int
    end: int
    first_index: int
    first_line: int
    duplicates: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, as values: building one checks them and looks at no file (what
    the names stand for on disk is `disk.runfiles.checked`'s, where the files are opened). Its
    settings' defaults and ranges are declared in `settings`.

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
    :param cache: the response cache's folder (`batchrun.cache`): lines answered before are
        answered from it, and this run's successes kept there; ``None``: no cache.
    :param headers: ``"Name: value"`` headers sent with every request (an Azure ``api-key``, a
        gateway's token); they win over batchrun's own, ``Authorization`` included. Their values
        are secrets, like the key. With any of them, no API key is required.
    :param organization: / :param project: sent as ``OpenAI-Organization`` / ``OpenAI-Project``.
    :param model: the model every request is sent with, whatever its line says.
    :param span: run only this part of the input (a shard's: `scale.parts`); ``output_path``
        is then the part's own output.
    :param tier: the service tier lines are sent at online (``"flex"``: `tiers`); ``None``: as they say.
    :param tier_fallback: with ``tier``, seconds from the run's start after which a line still
        unanswered goes at the standard tier (so does one refused for capacity
        `tiers.FALLBACK_REFUSALS` times); ``None``: never.
    :param limit: send only the first ``limit`` lines (a smoke run, `smoke`): their answers stay in
        the checkpoint, and the run without a limit goes on from them. Not part of the run's
        identity, so not of `request_options`.
    :param run_id: the id a new checkpoint gets, which makes its lines' ids its own; ``None``:
        a random one. Runs of the parts of one input share one, so their outputs put end to end
        are the output one run of the whole input writes.
    """

    input_path: Path
    output_path: Path | None = None
    base_url: str = declared.BASE_URL.default
    api_key: ApiKey | None = None
    api_key_env: str = declared.API_KEY_ENV.default
    concurrency: int = declared.CONCURRENCY.default
    window: int | None = declared.WINDOW.default
    window_bytes: int = declared.WINDOW_BYTES.default
    timeout: float = declared.TIMEOUT.default
    connect_timeout: float = declared.CONNECT_TIMEOUT.default
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    restart: bool = declared.RESTART.default
    retry_failed: bool = declared.RETRY_FAILED.default
    drain_timeout: float = declared.DRAIN_TIMEOUT.default
    mock: bool = declared.MOCK.default
    rpm: float | None = declared.RPM.default
    tpm: float | None = declared.TPM.default
    outage_threshold: int = declared.OUTAGE_THRESHOLD.default
    max_outage: float = declared.MAX_OUTAGE.default
    max_cost: float | None = declared.MAX_COST.default
    prices_path: Path | None = declared.PRICES.default
    batch_discount: bool = declared.BATCH_DISCOUNT.default
    cache: Path | None = declared.CACHE.default
    headers: tuple[str, ...] = declared.HEADERS.default
    organization: str | None = None
    project: str | None = None
    model: str | None = None
    span: Span | None = None
    run_id: str | None = None
    tier: str | None = declared.TIER.default
    tier_fallback: float | None = declared.TIER_FALLBACK.default
    limit: int | None = declared.LIMIT.default

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_path", Path(self.input_path))
        output = Path(self.output_path) if self.output_path else default_output_path(self.input_path)
        object.__setattr__(self, "output_path", output)
        self._check_numbers()
        if self.tier is not None and self.tier not in declared.TIER.choices:
            raise ConfigError(f"--tier must be one of {', '.join(declared.TIER.choices)}, got {self.tier!r}")
        if self.tier_fallback is not None and self.tier is None:
            raise ConfigError("--tier-fallback only applies with --tier")
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
        if self.limit is not None and self.span is not None:
            raise ConfigError("--limit sends the first lines online, from one process: it cannot be combined with --ray")
        _check_names(self.files())
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
        if key := env.get(fields.get("api_key_env", declared.DEFAULT_API_KEY_ENV)):
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
        for setting in declared.RUN_SETTINGS:
            setting.check(getattr(self, setting.name))
        window = self.window or max(declared.MIN_WINDOW, declared.WINDOW_PER_SLOT * self.concurrency)
        if window < self.concurrency:
            raise ConfigError(f"--window ({window}) must be at least --concurrency ({self.concurrency})")
        object.__setattr__(self, "window", window)

    @property
    def out(self) -> Path:
        """The output path, always set after construction."""
        assert self.output_path is not None
        return self.output_path

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

    def files(self) -> dict[str, Path]:
        """The input and every file and folder a run of it writes, by what each is."""
        return {"input file": self.input_path, "output": self.out, "errors file": self.errors_path,
                "report": self.report_path, "checkpoint": self.checkpoint_path, "batches": self.batches_path}

    def request_options(self) -> dict[str, str]:
        """The options that shape what is sent: a checkpoint only resumes with the same ones.
        Header values are secrets, and left out like the key."""
        options = {"base_url": "(the built-in simulator)" if self.mock else self.base_url.rstrip("/")}
        if self.model is not None:
            options["model"] = self.model
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


def _check_names(paths: dict[str, Path]) -> None:
    """No two files of a run have one name (the filesystem's view — links, directories — is
    `disk.runfiles.checked`'s, where the files are opened).

    :raises ConfigError: naming the two paths.
    """
    seen: dict[str, str] = {}
    for what, path in paths.items():
        key = os.path.normpath(path)
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
