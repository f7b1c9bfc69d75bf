"""docs/options.md is what the options' declarations make of it: a changed option, default,
range, variable or help text changes the page, or this test fails."""

from __future__ import annotations

from pathlib import Path

from batchrun.cli.options_doc import render

PAGE = Path(__file__).parents[3] / "docs" / "options.md"


def test_the_options_page_is_made_from_the_declarations() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), "run: python -m batchrun.cli.options_doc"


def test_the_page_names_each_option_with_its_range_default_and_variable() -> None:
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in render().splitlines() if line.startswith("| `")}
    assert rows["`--concurrency`, `-c`"] == ("| `--concurrency`, `-c` | a whole number from 1 to 10,000 | 64 | "
                                             "`BATCHRUN_CONCURRENCY` | Requests in flight at once. |")
    assert "Default: max(4096, 64 x concurrency)." in rows["`--window`"]
    assert "a duration" in rows["`--batch-deadline`"] and "`online` or `batch`" in rows["`--via`"]
    assert "tab \\| that splits" in rows["`--delimiter`"]  # a | in a cell does not end it
