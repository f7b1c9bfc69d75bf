"""The types of every numeric option: a finite number within the setting's `Bounds`, or a
duration (``90s``, ``6h``) within them."""

from __future__ import annotations

import os
import re

import click
from click.core import ParameterSource

from ..settings import Bounds


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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """``90``, ``90s``, ``30m``, ``6h`` or ``1d``: seconds, at most ``bounds.high``."""

    name = "duration"

    def __init__(self, bounds: Bounds, words: tuple[str, ...] = ()) -> None:
        self.bounds = bounds
        self.words = words  # taken for no duration (None): ``never``

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float | None:
        if isinstance(value, float):
            return value
        if str(value).strip().lower() in self.words:
            return None
        match = _DURATION.fullmatch(str(value).strip().lower())
        if match is None:
            also = "".join(f" or {word}" for word in self.words)
            self.fail(f"{value!r} is not a duration such as 90s, 30m, 6h or 1d{also}.", param, ctx)
        seconds = float(match[1]) * _UNITS[match[2] or "s"]
        if not self.bounds.admits(seconds):
            self.fail(f"{value} is more than {self.bounds.high / 86_400:g} days.", param, ctx)
        return seconds
