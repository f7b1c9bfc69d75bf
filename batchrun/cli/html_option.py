"""``--html FILE`` of ``batchrun report`` and ``batchrun run``: the report as a self-contained page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

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


def write_html(html_path: Path, page: str) -> None:
    """Write the page whole or not at all; a failure is a clear error, not a traceback."""
    from ..disk.publish import write_atomically

    try:
        write_atomically(html_path, page.encode())
    except OSError as exc:
        raise click.ClickException(f"cannot write {html_path}: {exc}") from None
