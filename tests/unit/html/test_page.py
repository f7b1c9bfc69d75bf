"""The HTML report's page: sections, escaping of user data, the null-timeline note, run order."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install -e '.[report]'")
pytest.importorskip("jinja2", reason="the report extra is not installed: pip install -e '.[report]'")

from batchrun.html.page import endpoint, render_compare, render_run

from .reports import latency_histogram, run_doc

SECTIONS = ("facts", "throughput", "latency", "models", "outcomes")


def _svgs(html: str) -> int:
    return len(re.findall(r"<svg\b", html))


def test_a_run_page_has_every_section_and_chart() -> None:
    doc = run_doc()
    doc["pacing"] = {"concurrency": 32, "limits_per_minute": {"requests": 500.0}}
    html = render_run(doc, latency_histogram=latency_histogram(), max_cost=1.0)
    assert "at most 32 in flight; 500 requests/min" in html
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    # throughput, in flight, latency distribution, latency over time, tokens per model, spend
    assert _svgs(html) == 6
    assert "no-timeline" not in html
    assert "--max-cost $1.00" in html
    assert "req-9" in html and "Rate limit reached" in html
    assert "<script" not in html  # the page needs no script to show its charts


def _in_flight_chart(html: str) -> str:
    return html.split("<h3>In flight and waiting</h3>", 1)[1].split("</svg>", 1)[0]


def test_the_in_flight_chart_shows_the_runs_limit_only_when_the_run_recorded_one() -> None:
    doc = run_doc()
    doc["pacing"] = {"concurrency": 32, "limits_per_minute": {}}
    chart = _in_flight_chart(render_run(doc))
    assert "in flight" in chart and "waited (s)" in chart and "in-flight limit 32" in chart
    # A plain output file (``batchrun report``) has no pacing block: the same chart, no limit line.
    plain = render_run(run_doc())
    assert "waited (s)" in _in_flight_chart(plain) and "in-flight limit" not in plain
    # A report written before buckets kept these has no such chart (not a chart of zeros).
    old = run_doc()
    for bucket in old["timeline"]["buckets"]:
        del bucket["in_flight"], bucket["waited_s"]
    assert "In flight and waiting" not in render_run(old)


def test_user_data_is_escaped() -> None:
    doc = run_doc()
    evil = "<script>alert(1)</script>"
    doc["failure_examples"]["server_error"] = [{"custom_id": evil, "message": f"bad {evil}"}]
    doc["models"][evil] = doc["models"].pop("o4-mini")
    doc["input"]["path"] = evil
    html = render_run(doc, latency_histogram=latency_histogram())
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "upstream <b>" not in html


def test_the_endpoint_is_shown_without_key_or_userinfo() -> None:
    html = render_run(run_doc())
    assert "https://llm.example:8443/v1" in html
    assert "sk-secret" not in html and "sk-query" not in html and "user:" not in html
    assert endpoint("(the built-in simulator)") == "(the built-in simulator)"


def test_without_a_timeline_the_time_plots_are_left_out_with_a_note() -> None:
    html = render_run(run_doc(with_timeline=False), latency_histogram=latency_histogram())
    assert 'id="no-timeline"' in html
    assert '<section id="throughput">' not in html
    assert _svgs(html) == 2  # the latency distribution and tokens per model remain


def test_runs_compared_keep_the_given_order() -> None:
    docs = [run_doc(source=f"{night}.results.jsonl", cost=cost) for night, cost in
            (("wed", 0.3), ("mon", 0.1), ("tue", 0.2))]
    html = render_compare(docs)
    table = html.split('<section id="runs">', 1)[1].split("</section>", 1)[0]
    assert [table.index(name) for name in ("1. wed", "2. mon", "3. tue")] == sorted(
        table.index(name) for name in ("1. wed", "2. mon", "3. tue"))
    assert table.index("$0.3000") < table.index("$0.1000") < table.index("$0.2000")
    for section in ("cost", "tokens", "latency", "failures", "duration"):
        assert f'<section id="{section}">' in html
    assert _svgs(html) == 5
    # the charts' axes name the runs in the same order
    ticks = [m for m in re.findall(r"\d\. (?:wed|mon|tue)", html.split('<section id="cost">', 1)[1])][:3]
    assert ticks == ["1. wed", "2. mon", "3. tue"]


def test_a_file_without_wall_time_is_compared_by_its_timeline() -> None:
    """``batchrun report`` of a file knows no wall time: its duration is its timeline's span."""
    timed, untimed = run_doc(wall=42.0), run_doc(with_timeline=True)
    untimed["wall_time_s"] = None  # the fixture's timeline spans 60 s
    bare = run_doc(with_timeline=False)
    bare["wall_time_s"] = None
    table = render_compare([timed, untimed, bare]).split('<section id="runs">', 1)[1].split("</section>", 1)[0]
    assert re.findall(r"<td>([^<]*)</td></tr>", table) == ["42 s", "60 s", "—"]


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", "", html).split())


def test_answers_cut_by_the_output_cap_are_shown_with_examples_and_what_to_do() -> None:
    """Every line succeeded, but 369 of 2,000 answers were cut: the page must not say all is well."""
    doc = {**run_doc(failed=0), "lines": 2000, "hit_output_cap": 369,
           "output_cap_examples": ["row-17", "row-<42>", "row-99"]}
    doc["requests"] = {"succeeded": 2000, "failed": 0, "by_error_code": {}, "by_status": {}}
    html = render_run(doc)
    text = _text(html)
    assert "Every line succeeded." not in text
    assert "Every line succeeded, but not every answer is whole:" in text
    assert ("369 of 2,000 answers stopped at the output cap (cut short, or empty), such as row-17, row-&lt;42&gt;, "
            "row-99: raise max_tokens / max_completion_tokens in the requests (batchrun label: --param "
            "max_tokens=N)") in text
    assert '<a href="#output-cap">369 cut by the output cap</a>' in html  # in the run's facts too
    whole = render_run({**doc, "hit_output_cap": 0, "output_cap_examples": []})
    assert "Every line succeeded." in _text(whole) and "output-cap" not in whole


def test_time_per_line_is_a_mean_not_a_sum() -> None:
    doc = {**run_doc(), "time_s": {"on_the_wire": 1200 * 0.08, "waiting": 1200 * 66.65}}
    html = render_run(doc)
    assert ("<th>time per line</th><td class=\"text\">on average 66,650 ms waiting to be sent (pacing, backoff), "
            "80 ms on the wire</td>") in html
