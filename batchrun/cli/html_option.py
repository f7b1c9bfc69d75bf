"""``--html FILE`` of ``batchrun report``, ``batchrun run`` and ``batchrun label``: the report as a
self-contained page."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..stats import RunStats

F = TypeVar("F", bound=Callable[..., Any])


def html_option(command: F) -> F:
    return click.option("--html", "html_path", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False),
                        help="Also write the report as one self-contained HTML page with charts "
                             "(pip install 'batchrun-llm[report]').")(command)


def check_html_extra(html_path: Path | None) -> None:
    """Fail before any work when ``--html`` is asked and the ``report`` extra is missing."""
    if html_path is None:
        return
    from ..html import require

    try:
        require()
    except ImportError as exc:
        raise click.UsageError(str(exc)) from None


def check_html_path(html_path: Path | None) -> None:
    """Refuse, before anything is sent, an ``--html`` FILE the page could not be written to once
    the run is over: in a directory that is missing or not writable, a directory itself, or a
    symlink that `write_html` would not follow (another user's, a loop).

    A command checks it where it checks its other arguments, so that a run is not spent to end
    in an error it could have found at the start.

    :raises ConfigError: naming the file and why (exit 2).
    """
    if html_path is None:
        return
    from ..disk.publish import link_target

    try:
        target = link_target(html_path)  # where write_html lands: through a link this user may follow
    except OSError as exc:
        raise ConfigError(f"--html {html_path}: {exc.strerror}; remove the link or choose another FILE") from None
    folder = target.parent
    try:
        info = os.stat(folder)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"--html {html_path}: output directory {folder} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"--html {html_path}: {folder}: {exc.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"--html {html_path}: {folder} is not a directory")
    if os.path.isdir(target):
        raise ConfigError(f"--html {html_path}: is a directory; name a file")
    if not os.access(folder, os.W_OK | os.X_OK):  # the page is written beside its name, then renamed
        raise ConfigError(f"--html {html_path}: cannot write in {folder}: permission denied")


def write_run_page(html_path: Path, report_path: Path, stats: RunStats | None, max_cost: float | None) -> None:
    """A run's report JSON as a page; the latency distribution from the run's own counters
    (``stats``: ``None`` when this start ran nothing)."""
    import orjson

    from ..html.page import render_run

    if not report_path.exists():
        click.echo(f"batchrun: no report to write {html_path} from (the run wrote none)", err=True)
        return
    doc = orjson.loads(report_path.read_bytes())
    latency = stats.report.latency if stats is not None else None  # empty when up to date: nothing counted
    write_html(html_path, render_run(doc, latency_histogram=latency.state() if latency and latency.count else None,
                                     max_cost=max_cost))


def write_html(html_path: Path, page: str) -> None:
    """Write the page whole or not at all, and say where on stderr (not under the command's
    ``--quiet``); a failure is a clear error, not a traceback."""
    from ..disk.publish import write_atomically

    try:
        write_atomically(html_path, page.encode())
    except OSError as exc:
        raise click.ClickException(f"cannot write {html_path}: {exc}") from None
    context = click.get_current_context(silent=True)
    if context is None or not context.params.get("quiet"):
        click.echo(f"batchrun: HTML report written to {html_path}", err=True)
