"""``batchrun cache stats|prune|clear``: what the response cache holds, and keeping it bounded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from ..cache.store import CacheBroken, clear, default_dir, prune, stats
from ..errors import ConfigError
from ..plural import counted
from ..settings import Bounds
from .bounded import Duration
from .group import main

CACHE_EXAMPLES = """
\b
Examples:
  batchrun run requests.jsonl --cache              # the default cache: $XDG_CACHE_HOME/batchrun
  batchrun cache stats
  batchrun cache prune --older-than 30d            # e.g. nightly, from cron
  batchrun cache clear ./my-cache
"""

T = TypeVar("T")
_AGE = Bounds(0, 100 * 365 * 86_400)
_DIR = click.argument("directory", metavar="[DIR]", required=False, type=click.Path(path_type=Path, file_okay=False))


@main.group(epilog=CACHE_EXAMPLES)
def cache() -> None:
    """The response cache of --cache (DIR: the cache's folder; default $XDG_CACHE_HOME/batchrun,
    else ~/.cache/batchrun). Safe to run while runs use the cache."""


@cache.command("stats")
@_DIR
def stats_command(directory: Path | None) -> None:
    """How many answers the cache holds, their size, and when they were stored."""
    held = _opened(stats, directory or default_dir())
    click.echo(f"cache      {held.path}")
    click.echo(f"answers    {held.entries:,} ({_size(held.answer_bytes)}; {_size(held.file_bytes)} on disk)")
    if held.oldest is not None and held.newest is not None:
        click.echo(f"stored     from {_when(held.oldest)} to {_when(held.newest)}")


@cache.command("prune")
@click.option("--older-than", "older_than", type=Duration(_AGE), required=True, metavar="DURATION",
              help="Remove the answers stored longer ago than this (90s, 30m, 6h, 30d).")
@_DIR
def prune_command(older_than: float, directory: Path | None) -> None:
    """Remove the answers stored longer ago than --older-than."""
    removed = _opened(lambda folder: prune(folder, older_than), directory or default_dir())
    click.echo(f"removed {counted(removed, 'answer')} stored more than {older_than / 86_400:g} days ago")


@cache.command("clear")
@_DIR
def clear_command(directory: Path | None) -> None:
    """Remove every answer from the cache."""
    removed = _opened(clear, directory or default_dir())
    click.echo(f"removed {counted(removed, 'answer')}")


def _opened(action: Callable[[Path], T], directory: Path) -> T:
    """``action`` on the cache; one that is missing or unusable is a usage error (exit 2)."""
    try:
        return action(directory)
    except CacheBroken as exc:
        raise ConfigError(str(exc)) from None


def _size(count: int) -> str:
    if count < 1024:
        return f"{count:,} bytes"
    scaled, unit = count / 1024, "KB"
    for larger in ("MB", "GB"):
        if scaled < 1024:
            break
        scaled, unit = scaled / 1024, larger
    return f"{scaled:,.1f} {unit}"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
