"""How an amount of US dollars is shown, everywhere one is: the report and estimate tables, the
progress bar and log, the budget's messages."""

from __future__ import annotations

SMALLEST = 0.0001  # four decimal places: a hundredth of a cent


def usd(value: float | None) -> str:
    """``$1,234.5678``: four decimal places, always. A non-zero amount below that shows as
    ``<$0.0001``, never as ``$0.0000``, which reads as free; ``None`` is ``unknown``."""
    if value is None:
        return "unknown"
    if 0 < value < SMALLEST:
        return f"<${SMALLEST}"
    return f"${value:,.4f}"
