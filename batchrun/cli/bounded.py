"""The type of every numeric option: a finite number within the setting's `Bounds`."""

from __future__ import annotations

import os

import click
from click.core import ParameterSource

from ..config import Bounds


class Bounded(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A number in ``bounds``; nan, inf and anything outside are usage errors naming the option,
    and the environment variable when the value came from one."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.name = "integer" if bounds.whole else "float"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number: float = int(str(value)) if self.bounds.whole else float(str(value))
        except ValueError:
            self.fail(f"{value!r} is not {self.bounds}{_origin(param, ctx)}.", param, ctx)
        if not self.bounds.admits(number):
            self.fail(f"{value} is not {self.bounds}{_origin(param, ctx)}.", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"Bounded({self.bounds})"


def _origin(param: click.Parameter | None, ctx: click.Context | None) -> str:
    """`` (from $NAME)`` when the value was read from an environment variable, else nothing."""
    if param is None or ctx is None or param.name is None or param.envvar is None:
        return ""
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return ""
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
    name = next((name for name in names if name in os.environ), names[0])
    return f" (from ${name})"
