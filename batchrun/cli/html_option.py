"""``--html FILE`` of ``batchrun report``, ``batchrun run`` and ``batchrun label``: the report as a
self-contained page."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..stats import RunStats

F = TypeVar("F", bound=Callable[..., Any])


def html_option(command: F) -> F:
    return click.option("--html", "html_path", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False),
                        help="Also write the report as one self-contained HTML page with charts "
                             "(pip install 'batchrun[report]').")(command)


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
    """Refuse, before anything is sent, a page that could not be written after the run: its
    folder missing or not writable, a directory at its name, another user's symlink there."""
    if html_path is None:
        return
    from ..disk.publish import link_target

    try:
        target = link_target(html_path)
    except OSError as exc:
        raise click.BadParameter(f"{html_path}: {exc.strerror}", param_hint="--html") from None
    folder = target.parent
    if not folder.is_dir():
        raise click.BadParameter(f"{html_path}: output directory {folder} does not exist", param_hint="--html")
    if target.is_dir():
        raise click.BadParameter(f"{html_path} is a directory; --html takes a file name", param_hint="--html")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"{html_path}: cannot write in {folder}", param_hint="--html")


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
    """Write the page whole or not at all; a failure is a clear error, not a traceback."""
    from ..disk.publish import write_atomically

    try:
        write_atomically(html_path, page.encode())
    except OSError as exc:
        raise click.ClickException(f"cannot write {html_path}: {exc}") from None
