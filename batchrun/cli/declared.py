"""Click options made from `settings.Setting` declarations, and --help in the declarations'
sections (`settings.GROUPS`): click has no option groups of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..settings import GROUPS, Setting
from .bounded import Bounded, Duration

F = TypeVar("F", bound=Callable[..., Any])

OWN = "Options"  # the section of a command's own options, first


class DeclaredOption(click.Option):
    """An option that knows its --help section (``group``: one of `settings.GROUPS`)."""

    def __init__(self, *args: Any, group: str = OWN, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


def option(setting: Setting[Any], **extra: Any) -> Callable[[F], F]:
    """The click option of ``setting``: its flags, type (`Bounded` for a number), default, help,
    environment variable and section; ``extra`` adds to or overrides click's arguments."""
    assert setting.flag is not None, f"{setting.name} is the library's alone"
    decls = [setting.flag, *([setting.short] if setting.short else []), setting.name]
    help_text = setting.help + (f" Default: {setting.default_text}." if setting.default_text else "")
    kwargs: dict[str, Any] = {"cls": DeclaredOption, "group": setting.group, "help": help_text,
                              "metavar": setting.metavar, "envvar": setting.env, "show_envvar": setting.env is not None}
    if setting.kind == "flag":
        kwargs["is_flag"] = True
    else:
        kwargs.update(type=_type(setting), multiple=setting.multiple)
        if setting.default is not None and not setting.multiple:
            kwargs.update(default=setting.default, show_default=True)
    return click.option(*decls, **{**kwargs, **extra})


def options(settings: Sequence[Setting[Any]]) -> Callable[[F], F]:
    """A decorator adding the options of ``settings``, in their order; the command receives them
    as keyword arguments named as the settings."""

    def add(command: F) -> F:
        for setting in reversed(settings):
            command = option(setting)(command)
        return command

    return add


def _type(setting: Setting[Any]) -> click.ParamType | None:  # type: ignore[type-arg]  # generic from click 8.2 on
    if setting.kind == "duration" and setting.bounds is not None:
        return Duration(setting.bounds, words=setting.choices)  # a word such as "never" stands for None
    if setting.choices:
        return click.Choice(setting.choices)
    if setting.kind == "path":
        return click.Path(path_type=Path)
    if setting.bounds is not None:
        return Bounded(setting.bounds)
    return None


class SectionedCommand(click.Command):
    """A command whose --help lists its own options first, then the others in `settings.GROUPS`' order."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx) if isinstance(param, click.Option) else None
            if record is not None:
                sections.setdefault(getattr(param, "group", OWN), []).append(record)
        # One column for the help text in every section, as click gives the one list it makes.
        width = min(max((len(term) for rows in sections.values() for term, _ in rows), default=0), _TERM_MAX)
        order = (OWN, *GROUPS)
        for name in sorted(sections, key=order.index):
            with formatter.section(name):
                formatter.write_dl([(term.ljust(width), text) for term, text in sections[name]], col_max=_TERM_MAX)


_TERM_MAX = 30  # click's own widest first column
