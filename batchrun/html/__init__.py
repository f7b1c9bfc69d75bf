"""One run's report, or several runs side by side, as one self-contained HTML file (``--html``).

Needs the ``report`` extra (matplotlib draws the charts as inline SVG, Jinja2 fills the page):
`require` says so before anything is run.
"""

from __future__ import annotations

EXTRA_HINT = "--html needs the report extra: pip install 'batchrun-llm[report]' (in a checkout: pip install -e '.[report]')"


def require() -> None:
    """:raises ImportError: with `EXTRA_HINT`, when matplotlib or Jinja2 is missing."""
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{EXTRA_HINT} ({exc})") from exc
