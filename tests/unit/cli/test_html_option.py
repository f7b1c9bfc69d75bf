"""``--html``: ``batchrun report`` (one file, or several side by side) and ``batchrun run`` write the page."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchrun.cli import main

from ...helpers import chat_line, write_jsonl

pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install -e '.[report]'")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def mock_run(tmp_path: Path, name: str, lines: int, *extra: str) -> Path:
    source = write_jsonl(tmp_path / f"{name}.jsonl", [chat_line(i) for i in range(lines)])
    out = tmp_path / f"{name}.results.jsonl"
    code, printed = invoke("run", str(source), "--mock", "--mock-latency-ms", "1", "-o", str(out), "-q", *extra)
    assert code == 0, printed
    return out


def test_run_writes_the_page_from_its_report(tmp_path: Path) -> None:
    mock_run(tmp_path, "a", 20, "--html", str(tmp_path / "a.html"), "--max-cost", "5")
    page = (tmp_path / "a.html").read_text()
    assert "a.jsonl" in page and "(the built-in simulator)" in page and "$5.0000" in page
    assert "complete (exit 0)" in page
    assert len(re.findall(r"<svg\b", page)) >= 2  # at least the latency distribution and tokens per model


def test_report_writes_the_page_and_still_prints_the_table(tmp_path: Path) -> None:
    out = mock_run(tmp_path, "a", 20)
    code, printed = invoke("report", str(out), "--html", str(tmp_path / "r.html"))
    assert code == 0, printed
    assert "gpt-4o-mini" in printed
    page = (tmp_path / "r.html").read_text()
    assert '<section id="latency">' in page and "gpt-4o-mini" in page


def test_report_of_a_runs_output_shows_the_runs_facts_and_cap_from_the_report_beside_it(tmp_path: Path) -> None:
    out = mock_run(tmp_path, "a", 20, "--max-cost", "5")
    code, printed = invoke("report", str(out), "--html", str(tmp_path / "r.html"))
    assert code == 0, printed
    page = (tmp_path / "r.html").read_text()
    assert "(the built-in simulator)" in page and "complete (exit 0)" in page and "$5.0000" in page
    # The same lines without the run's report (copied elsewhere): only what the lines say.
    copy = tmp_path / "copy" / "a.results.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(out.read_bytes())
    code, printed = invoke("report", str(copy), "--html", str(tmp_path / "c.html"))
    assert code == 0, printed
    bare = (tmp_path / "c.html").read_text()
    assert "(the built-in simulator)" not in bare and "$5.0000" not in bare


def test_report_compares_several_runs_in_the_given_order(tmp_path: Path) -> None:
    outs = [mock_run(tmp_path, name, lines) for name, lines in (("wed", 30), ("mon", 10), ("tue", 20))]
    code, printed = invoke("report", *map(str, outs), "--html", str(tmp_path / "trend.html"))
    assert code == 0, printed
    table = (tmp_path / "trend.html").read_text().split('<section id="runs">', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r"<tr><td class=\"text\"><code>\d\. (\w+)\.results\.jsonl</code></td><td>(\d+)</td>", table)
    assert rows == [("wed", "30"), ("mon", "10"), ("tue", "20")]


def test_several_files_need_html(tmp_path: Path) -> None:
    out = mock_run(tmp_path, "a", 2)
    code, printed = invoke("report", str(out), str(out))
    assert code == 2
    assert "--html" in printed


def test_without_the_extra_the_error_names_it_before_anything_runs(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    source = write_jsonl(tmp_path / "a.jsonl", [chat_line(0)])
    code, printed = invoke("run", str(source), "--mock", "--html", str(tmp_path / "a.html"))
    assert code == 2
    assert "pip install 'batchrun-llm[report]'" in printed
    assert not (tmp_path / "a.results.jsonl").exists()
    code, printed = invoke("report", str(source), "--html", str(tmp_path / "a.html"))
    assert code == 2 and "batchrun-llm[report]" in printed
