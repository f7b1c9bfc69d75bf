"""The ``batchrun`` command group, and how library errors become exit codes."""

from __future__ import annotations

import click

from ..errors import BatchrunError
from ..runner import own_process
from ..stats import EXIT_USAGE
from .declared import SectionedCommand

_ARGV = "batchrun.argv"


class BatchrunGroup(click.Group):
    """Turns library errors into clean messages and their exit codes (docs/contract.md, "Exit codes");
    its commands' --help lists their options in sections (`SectionedCommand`)."""

    command_class = SectionedCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = list(args)  # before click consumes them
        return super().parse_args(ctx, args)

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
    own_process()


def command_args() -> list[str]:
    """The arguments the running command was given after ``batchrun``, as typed, but for the
    values of ``--header``, which are secrets: ``Name: ***``."""
    shown: list[str] = []
    value_next = False
    for arg in click.get_current_context().meta.get(_ARGV, []):
        if value_next:
            arg, value_next = _masked(arg), False
        elif arg == "--header":
            value_next = True
        elif arg.startswith("--header="):
            arg = "--header=" + _masked(arg.removeprefix("--header="))
        shown.append(arg)
    return shown


def _masked(header: str) -> str:
    return f"{header.partition(':')[0].strip()}: ***"
