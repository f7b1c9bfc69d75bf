"""docs/options.md, the options of ``batchrun run`` and ``batchrun label`` by --help section,
made from the commands as click builds them from their declarations (`settings.Setting`).

``python -m batchrun.cli.options_doc`` writes it; a test fails when the file is not what this
makes of the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..settings import GROUPS
from .bounded import Bounded, Duration
from .declared import OWN, DeclaredOption
from .group import main

HEADER = """# Options

Every option of `batchrun run` and `batchrun label`, in the sections `--help` lists them in.
This page is made from the options' declarations (`batchrun/settings.py`,
`batchrun/batchapi/options.py`, `batchrun/cli/`): run `python -m batchrun.cli.options_doc` after
changing one. A variable in the *environment* column sets the option when it is not given.
A number outside its range, from the option or the variable, is a usage error (exit 2).
"""
SHARED = "Besides its own, `label` takes `run`'s options of these sections, with the same meaning: {names}."


def render() -> str:
    """The page, as Markdown."""
    assert isinstance(main, click.Group)
    run, label = main.commands["run"], main.commands["label"]
    parts = [HEADER, "## batchrun run\n", *_sections(run, skip=set())]
    shared = {option.name for option in _options(run) if isinstance(option, DeclaredOption)}
    parts += ["## batchrun label\n", *_sections(label, skip=shared)]
    groups = sorted({option.group for option in _options(label) if isinstance(option, DeclaredOption)
                     and option.name in shared}, key=GROUPS.index)
    parts.append(SHARED.format(names=", ".join(groups)) + "\n")
    return "\n".join(parts)


def _options(command: click.Command) -> list[click.Option]:
    return [param for param in command.params if isinstance(param, click.Option) and not param.hidden]


def _sections(command: click.Command, *, skip: set[str]) -> list[str]:
    """A table per section of ``command``'s options, leaving out those named in ``skip``."""
    sections: dict[str, list[click.Option]] = {}
    for option in _options(command):
        if option.name not in skip:
            sections.setdefault(getattr(option, "group", OWN), []).append(option)
    out = []
    for name in sorted(sections, key=(OWN, *GROUPS).index):
        rows = ["| option | takes | default | environment | |", "| --- | --- | --- | --- | --- |"]
        rows += [_row(option) for option in sections[name]]
        out.append(f"### {name if name != OWN else f'{command.name}: its own'}\n\n" + "\n".join(rows) + "\n")
    return out


def _row(option: click.Option) -> str:
    flags = ", ".join(f"`{flag}`" for flag in [*option.opts, *option.secondary_opts])
    default = option.default if option.show_default else ""
    envvar = f"`{option.envvar}`" if isinstance(option.envvar, str) else ""
    cells = [flags, _takes(option), f"{default}", envvar, (option.help or "").replace("\n", " ")]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _takes(option: click.Option) -> str:
    """What the option's value may be, in words."""
    kind = option.type
    if option.is_flag:
        return "(a flag)"
    if isinstance(kind, Bounded):
        return str(kind.bounds)
    if isinstance(kind, Duration):
        words = "".join(f", or `{word}`" for word in kind.words)
        return f"a duration (90s, 30m, 6h, 1d) up to {kind.bounds.high / 86_400:g} days{words}"
    if isinstance(kind, click.Choice):
        return " or ".join(f"`{choice}`" for choice in kind.choices)
    return option.metavar or kind.name.upper()


if __name__ == "__main__":
    Path(sys.argv[1] if len(sys.argv) > 1 else "docs/options.md").write_text(render(), encoding="utf-8")
