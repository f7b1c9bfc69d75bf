"""The ``batchrun`` command group, and how library errors become exit codes."""

from __future__ import annotations

import click

from ..errors import BatchrunError
from ..stats import EXIT_USAGE


class BatchrunGroup(click.Group):
    """Turns library errors into clean messages and their exit codes (README, "Exit codes")."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BatchrunError as exc:
            click.echo(f"batchrun: error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=BatchrunGroup)
@click.version_option(package_name="batchrun")
def main() -> None:
    """Run JSONL files of LLM requests against OpenAI-compatible endpoints."""
