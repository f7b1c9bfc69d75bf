"""``--html``: ``batchrun report`` (one file, or several side by side) and ``batchrun run`` write the page."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.simulator import Simulator

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


def test_report_compares_several_runs_on_the_terminal_and_as_json_with_changes(tmp_path: Path) -> None:
    outs = [mock_run(tmp_path, name, lines) for name, lines in (("wed", 30), ("mon", 10), ("tue", 20))]
    result = CliRunner().invoke(main, ["report", *map(str, outs)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0] == "batchrun: 3 runs compared, each change against the first"
    assert rows[1:4] == [f"  {i}. {out}" for i, out in enumerate(outs, 1)]  # a path is never cut
    assert all(len(row) <= 80 for row in rows[4:])
    shown = [(row.split()[0], row.split()[1]) for row in rows[4:] if re.match(r"  (\d\. |change)", row)]
    assert shown == [("1.", "30"), ("2.", "10"), ("change", "-20"), ("3.", "20"), ("change", "-10")]
    result = CliRunner().invoke(main, ["report", *map(str, outs), "--json"], catch_exceptions=False)
    doc = orjson.loads(result.stdout)
    assert doc["schema"] == "batchrun.compare/1"
    assert [run["label"] for run in doc["runs"]] == ["1. wed.results.jsonl", "2. mon.results.jsonl",
                                                     "3. tue.results.jsonl"]
    first, second = doc["runs"][0], doc["runs"][1]
    assert first["change"] is None and second["change"]["lines"] == -20
    assert second["change"]["cost_usd"] == pytest.approx(second["figures"]["cost_usd"] - first["figures"]["cost_usd"])


def test_html_says_where_it_wrote_unless_quiet(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "a.jsonl", [chat_line(i) for i in range(3)])
    page = tmp_path / "a.html"
    for quiet in ([], ["-q"]):
        result = CliRunner().invoke(main, ["run", str(source), "--mock", "--mock-latency-ms", "1", "--restart",
                                           "--html", str(page), *quiet], catch_exceptions=False)
        assert result.exit_code == 0 and page.exists()
        said = f"batchrun: HTML report written to {page}" in result.stderr
        assert said is not bool(quiet), result.stderr
        page.unlink()
    result = CliRunner().invoke(main, ["report", str(tmp_path / "a.results.jsonl"), "--html", str(page)],
                                catch_exceptions=False)
    assert f"batchrun: HTML report written to {page}" in result.stderr and page.exists()
    assert "HTML" not in result.stdout  # the report itself stays clean for a pipe


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


OTHER_UID = 65534  # nobody


def _other_users_link(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.html"
    victim.write_text("theirs")
    link = tmp_path / "page.html"
    link.symlink_to(victim)
    os.lchown(link, OTHER_UID, OTHER_UID)
    return link


@pytest.mark.parametrize("where", ["missing directory", "parent is a file", "another user's symlink"])
def test_run_refuses_an_html_path_it_could_not_write_before_sending(tmp_path: Path, sim: Simulator,
                                                                     where: str) -> None:
    if where == "another user's symlink" and os.getuid() != 0:
        pytest.skip("needs root to make a symlink of another user")
    (tmp_path / "file").write_text("")
    page = {"missing directory": lambda: tmp_path / "nope" / "a.html",
            "parent is a file": lambda: tmp_path / "file" / "a.html",
            "another user's symlink": lambda: _other_users_link(tmp_path)}[where]()
    source = write_jsonl(tmp_path / "a.jsonl", [chat_line(i) for i in range(3)])
    code, printed = invoke("run", str(source), "--base-url", sim.base_url, "--html", str(page))
    assert code == 2, printed
    assert f"batchrun: error: --html {page}: " in printed and "Traceback" not in printed
    assert sim.stats.requests == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.jsonl", "file", *(["page.html", "victim.html"] if where == "another user's symlink" else [])])


def test_report_refuses_an_html_path_it_could_not_write_before_reading(tmp_path: Path) -> None:
    out = mock_run(tmp_path, "a", 2)
    code, printed = invoke("report", str(out), "--html", str(tmp_path / "nope" / "r.html"))
    assert code == 2 and f"--html {tmp_path / 'nope' / 'r.html'}: output directory {tmp_path / 'nope'} does not exist" in printed
    assert "gpt-4o-mini" not in printed  # refused before the table was printed


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a symlink of another user")
def test_report_refuses_another_users_symlink(tmp_path: Path) -> None:
    out = mock_run(tmp_path, "a", 2)
    link = _other_users_link(tmp_path)
    code, printed = invoke("report", str(out), "--html", str(link))
    assert code == 2 and f"--html {link}: a symlink of another user (uid {OTHER_UID}), not followed" in printed
    assert (tmp_path / "victim.html").read_text() == "theirs"


def test_an_own_symlink_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "r.html").symlink_to(Path("pages") / "real.html")
    out = mock_run(tmp_path, "a", 2)
    code, printed = invoke("report", str(out), "--html", str(tmp_path / "r.html"))
    assert code == 0, printed
    assert "<svg" in (tmp_path / "pages" / "real.html").read_text() and (tmp_path / "r.html").is_symlink()
