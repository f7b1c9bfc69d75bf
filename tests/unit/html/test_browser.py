"""The page in a real browser: headless Chromium, offline, renders every chart with no console message."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install -e '.[report]'")

from batchrun.html.page import render_compare, render_run

from .reports import latency_histogram, run_doc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

# Offline: no host name resolves, so the page must draw from what it holds.
_OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--log-level=0", _OFFLINE, *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=True)


def console_lines(stderr: str) -> list[str]:
    """What the page wrote to its console (log, warnings, errors, failed loads, uncaught exceptions)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def open_page(tmp_path: Path, html: str, height: int) -> tuple[str, Path]:
    """The DOM after load, and a screenshot; fails on any console message."""
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    shot = tmp_path / "report.png"
    dump = chromium(page, "--dump-dom")
    taken = chromium(page, f"--screenshot={shot}", f"--window-size=1100,{height}")
    assert console_lines(dump.stderr + taken.stderr) == []
    # everything inline: no reference leaves the page (the SVGs refer to their own #ids)
    assert re.findall(r'(?:src|href)="(?!#)[^"]*"', dump.stdout) == []
    assert shot.stat().st_size > 0
    return dump.stdout, shot


def colours(shot: Path) -> set[tuple[int, ...]]:
    from PIL import Image

    with Image.open(shot) as image:
        return {rgb for _, rgb in image.convert("RGB").getcolors(maxcolors=1 << 24) or []}


def _near(wanted: str, seen: set[tuple[int, ...]]) -> bool:
    rgb = tuple(int(wanted[i:i + 2], 16) for i in (1, 3, 5))
    return any(all(abs(a - b) <= 8 for a, b in zip(rgb, pixel, strict=True)) for pixel in seen)


def test_a_run_page_renders_its_charts_offline_without_console_messages(tmp_path: Path) -> None:
    dom, shot = open_page(tmp_path, render_run(run_doc(), latency_histogram=latency_histogram(), max_cost=1.0), 3000)
    assert len(re.findall(r"<svg\b", dom)) == 6
    # drawn, not only present: the tokens/s line, the latency bars, the p99 mark, the spend line
    seen = colours(shot)
    for colour in ("#2ca02c", "#9ecae1", "#d62728", "#9467bd"):
        assert _near(colour, seen), colour


def test_the_compare_page_renders_its_charts(tmp_path: Path) -> None:
    docs = [run_doc(source=f"night-{i}.jsonl", cost=0.1 * (i + 1)) for i in range(3)]
    dom, shot = open_page(tmp_path, render_compare(docs), 2400)
    assert len(re.findall(r"<svg\b", dom)) == 5
    assert _near("#1f77b4", colours(shot))


def test_a_console_message_is_caught(tmp_path: Path) -> None:
    """The check above can fail: a page that logs is caught."""
    page = tmp_path / "noisy.html"
    page.write_text('<script>console.error("boom")</script>', encoding="utf-8")
    lines = console_lines(chromium(page, "--dump-dom").stderr)
    assert any("boom" in line for line in lines)


PDFTOTEXT = shutil.which("pdftotext")


@pytest.mark.skipif(PDFTOTEXT is None, reason="pdftotext is not installed (apt-get install poppler-utils)")
def test_the_page_prints_each_section_whole_from_its_heading(tmp_path: Path) -> None:
    html = render_run(run_doc(), latency_histogram=latency_histogram(), max_cost=1.0)
    page, pdf = tmp_path / "report.html", tmp_path / "report.pdf"
    page.write_text(html, encoding="utf-8")
    chromium(page, f"--print-to-pdf={pdf}", "--no-pdf-header-footer")
    assert PDFTOTEXT is not None
    text = subprocess.run([PDFTOTEXT, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    pages = [[line.strip() for line in page.splitlines() if line.strip()] for page in text.split("\f")]
    pages = [lines for lines in pages if lines]
    sections = re.findall(r"<h2[^>]*>(.*?)</h2>", html)
    headings = sections + re.findall(r"<h3[^>]*>(.*?)</h3>", html)
    assert len(pages) > 1
    # A page after the first begins a section, so no chart or table is cut in two (printed as the
    # screen shows it, the page breaks fall through charts); and no page ends on a heading.
    assert all(lines[0] in sections for lines in pages[1:]), [lines[0] for lines in pages]
    assert all(lines[-1] not in headings for lines in pages), [lines[-1] for lines in pages]
