"""`batchrun label` on the command line: the samples, --dry-run, usage errors, kill -9 and resume."""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.simulator import SimulatorConfig, run_in_thread

from ..helpers import read_jsonl, without_dac_override

SAMPLES = Path(__file__).parents[2] / "samples"
SENTIMENT = "positive,negative,neutral"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def copy_samples(folder: Path, *names: str) -> None:
    for name in names:
        shutil.copy(SAMPLES / name, folder / name)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_the_review_sample_on_the_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_samples(tmp_path, "reviews.csv", "sentiment.txt")
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("label", "reviews.csv", "-t", "sentiment.txt", "--labels", SENTIMENT, "--mock",
                          "--mock-latency-ms", "1")
    assert code == 0, err
    assert "labeled 30 rows into reviews.labeled.csv: 30 answered, 0 with an _error" in err
    data, out = read_csv(tmp_path / "reviews.csv"), read_csv(tmp_path / "reviews.labeled.csv")
    assert out[0] == [*data[0], "label", "_error", "_raw"]
    assert [row[:4] for row in out] == data  # quoting, unicode and the embedded newlines survive
    assert {row[4] for row in out[1:]} == set(SENTIMENT.split(","))

    code, _, err = invoke("label", "reviews.csv", "-t", "sentiment.txt", "--labels", SENTIMENT, "--mock")
    assert code == 0 and "reviews.labeled.csv is up to date" in err
    code, _, err = invoke("label", "reviews.csv", "-t", "sentiment.txt", "--labels", SENTIMENT, "--mock",
                          "--retry-failed")
    # nothing had failed: nothing was sent again
    assert code == 0 and "resumed: of the 30 lines above, 30 were finished by earlier starts, 0 by this one" in " ".join(
        err.split())


def test_html_writes_the_runs_page_and_a_path_it_cannot_write_is_refused_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install 'batchrun-llm[report]'")
    copy_samples(tmp_path, "reviews.csv", "sentiment.txt")
    monkeypatch.chdir(tmp_path)
    for page, message in (("missing/page.html", "output directory missing does not exist"),
                          (".", "is a directory")):
        code, _, err = invoke("label", "reviews.csv", "-t", "sentiment.txt", "--labels", SENTIMENT, "--mock",
                              "--html", page)
        assert code == 2 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv", "sentiment.txt"]  # nothing ran
    code, _, err = invoke("label", "reviews.csv", "-t", "sentiment.txt", "--labels", SENTIMENT, "--mock",
                          "--mock-latency-ms", "1", "--html", "page.html", "-q")
    assert code == 0, err
    page = (tmp_path / "page.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "gpt-4o-mini" in page


def test_the_invoice_sample_extracts_schema_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_samples(tmp_path, "invoices.jsonl", "invoice.txt", "invoice_schema.json")
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("label", "invoices.jsonl", "-t", "invoice.txt", "--json-schema", "invoice_schema.json",
                          "--id-field", "id", "--mock", "--mock-latency-ms", "1", "-o", "invoices.csv")
    assert code == 0, err
    out = read_csv(tmp_path / "invoices.csv")
    assert out[0] == ["id", "text", "vendor", "invoice_number", "total", "currency", "paid", "_error", "_raw"]
    assert [row[0] for row in out[1:]] == [f"inv-{n}" for n in range(1001, 1007)]
    assert all(row[5] in ("USD", "EUR", "GBP", "JPY", "other") and row[6] in ("true", "false") for row in out[1:])
    requests = read_jsonl(tmp_path / "invoices.csv.batch/requests.jsonl")
    assert [r["custom_id"] for r in requests] == [f"inv-{n}" for n in range(1001, 1007)]


def test_dry_run_shows_requests_and_the_estimate_and_sends_nothing(tmp_path: Path) -> None:
    copy_samples(tmp_path, "reviews.csv", "sentiment.txt")
    code, out, err = invoke("label", str(tmp_path / "reviews.csv"), "-t", str(tmp_path / "sentiment.txt"),
                            "--labels", SENTIMENT, "--param", "temperature=0", "--dry-run")
    assert code == 0, err
    assert out.startswith("--- custom_id line-2 (row 1, line 2) ---\n[system]\nYou annotate customer reviews")
    assert "Answer with exactly one of: positive, negative, neutral\n[user]\nProduct: Aeropress Go" in out
    assert '"temperature":0' in out and out.count("--- custom_id") == 3
    # One-word answers get a small output cap by default, with room for a reasoning model to think.
    assert '"max_completion_tokens":4116' in out and "max_completion_tokens 4,116 by default" in out
    assert "30 to send" in out and "gpt-4o-mini" in out  # the estimate of every row
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reviews.csv", "sentiment.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labels", "a,b", "--json-schema", "{dir}/s.json"], "--labels and --json-schema exclude each other"),
        (["--param", "model=gpt-4o"], "--param model cannot be given: it is set by --model"),
        (["--labels", "a,b", "--param", 'response_format={{"type": "text"}}'], "which set it"),
        (["--param", "temperature"], "expected NAME=VALUE"),
        (["--labels", "a"], "--labels needs at least two labels"),
        (["--mock", "--restart", "--retry-failed"], "exclude each other"),
        (["--mock", "-o", "{dir}/d.csv"], "is the data file"),
        (["--mock", "--system", "S {{title}}"], "the template uses {title}, which is not a column"),
        (["--base-url", "https://api.example.com/v1"], "no API key"),
        (["--mock", "--shards", "2"], "--shards only applies with --ray"),
        (["--mock", "--ray", "--via", "batch"], "--ray runs online: it cannot be combined with --via batch"),
        (["--mock", "--detach"], "--detach only applies with --via batch"),
    ],
)
def test_usage_errors_exit_2_before_anything_is_sent(tmp_path: Path, args: list[str], message: str) -> None:
    data = tmp_path / "d.csv"
    data.write_text("text\nhello\n")
    (tmp_path / "t.txt").write_text("Label {text}\n")
    argv = ["label", str(data), "-t", str(tmp_path / "t.txt"), *(a.format(dir=tmp_path) for a in args)]
    code, _, err = invoke(*argv)
    assert code == 2 and message in err, err
    assert not (tmp_path / "d.labeled.csv").exists()


def test_missing_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("{text}")
    code, _, err = invoke("label", str(tmp_path / "none.csv"), "-t", str(tmp_path / "t.txt"), "--mock")
    assert code == 2 and "none.csv: no such file" in err
    code, _, err = invoke("label", str(tmp_path / "d.xlsx"), "-t", str(tmp_path / "t.txt"), "--mock")
    assert code == 2 and "cannot tell the data format" in err
    code, _, err = invoke("label", str(tmp_path / "d.csv"), "-t", str(tmp_path / "none.txt"), "--mock")
    assert code == 2 and "no such template file" in err


@pytest.mark.parametrize("where", ["read-only directory", "under a file"])
def test_an_output_that_cannot_be_created_is_exit_2_before_anything_is_sent(tmp_path: Path, where: str) -> None:
    """As `run` does it. A real read-only directory needs a process without CAP_DAC_OVERRIDE
    (root ignores the mode); a directory that is a file stops root too."""
    data = tmp_path / "d.csv"
    data.write_text("text\nhello\n")
    (tmp_path / "t.txt").write_text("Label {text}\n")
    folder = tmp_path / "out"
    if where == "under a file":
        prefix, reason = [], "Not a directory"
        folder.write_text("")
    else:
        prefix, reason = without_dac_override(), "Permission denied"
        folder.mkdir(mode=0o555)
    with run_in_thread(SimulatorConfig(latency_ms=1)) as sim:
        proc = subprocess.run([*prefix, sys.executable, "-m", "batchrun", "label", str(data), "-t", str(tmp_path / "t.txt"),
                               "-o", str(folder / "out.csv"), "--base-url", sim.base_url],
                              capture_output=True, text=True, timeout=60)
        assert sim.stats.requests == 0
    assert proc.returncode == 2, proc.stderr
    assert f"{folder / 'out.csv.batch'}: cannot create: {reason}" in proc.stderr and "Traceback" not in proc.stderr


def start(data: Path, template: Path, out: Path, base_url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "label", str(data), "-t", str(template), "--labels", SENTIMENT,
         "-o", str(out), "--base-url", base_url, "-c", "4", "--progress-interval", "0.05"],
        stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    assert proc.stderr is not None
    with proc.stderr:
        rest = proc.stderr.read()
    return proc.wait(timeout=30), rest


def test_kill_9_then_the_same_command_gives_the_same_file(tmp_path: Path) -> None:
    rows = 300
    data = tmp_path / "d.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([str(i), f"review {i}, \"quoted\"\nand é"] for i in range(rows))
    template = tmp_path / "t.txt"
    template.write_text("Review: {text}\n")
    out = tmp_path / "out.csv"
    rng = random.Random(20261126)
    with run_in_thread(SimulatorConfig(latency_ms=10, jitter_ms=10, seed=2)) as sim:
        for _ in range(2):
            proc = start(data, template, out, sim.base_url)
            assert proc.stderr is not None
            for line in proc.stderr:
                if "progress:" in line:
                    break
            time.sleep(rng.uniform(0.0, 0.2))
            proc.kill()
            finish(proc)
            assert not out.exists()
        code, err = finish(start(data, template, out, sim.base_url))
        assert code == 0, err
        assert "resumed:" in err
        sent = sim.stats.requests
    assert rows <= sent <= rows + 2 * 4  # only requests in flight at a kill were sent twice

    reference = tmp_path / "reference.csv"
    with run_in_thread(SimulatorConfig(latency_ms=1)) as sim:
        code, err = finish(start(data, template, reference, sim.base_url))
        assert code == 0, err
    assert out.read_bytes() == reference.read_bytes()
    assert len(read_csv(out)) == rows + 1
