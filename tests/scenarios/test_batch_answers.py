"""What ``--via batch`` keeps of a provider's output and error files: the promises an online
answer keeps — the credentials a provider quotes back are never written, and an answer over the
size cap is ``response_too_large`` — over loopback, against the simulator's Batch API
(tests/batchworld.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from batchrun.bodies import DEFAULT_MAX_RESPONSE_BYTES
from batchrun.config import ApiKey, errors_path_for, report_path_for
from batchrun.html.page import render_run
from batchrun.stats import RunStats
from tests.batchworld import FAST, lines, world
from tests.helpers import files_under, read_jsonl

KEY = "sk-quoted-0123456789abcdefSECRET"
TOKEN = "gateway-token-9876543210zyxwvu"


@pytest.mark.parametrize(("secret", "credentials"), [
    (KEY, {"api_key": ApiKey(KEY)}),
    (TOKEN, {"headers": (f"X-Gateway-Token: {TOKEN}",)}),
])
def test_credentials_a_provider_quotes_back_in_its_files_are_never_written(tmp_path: Path, secret: str,
                                                                           credentials: dict[str, object]) -> None:
    path = lines(tmp_path, 20)
    out = tmp_path / "out.jsonl"
    # Every output body and error message quotes the secret; some answers are failures, and the
    # batch expires before it answers the last lines (the error file).
    with world(quote=secret, rate_failed=0.3, seconds_per_request=1.0, expire_after_s=12.0) as w:
        stats = w.run(path, out, FAST, **credentials)
    assert isinstance(stats, RunStats)
    records = read_jsonl(out)
    errors = [record["error"] or record["batchrun"].get("error") for record in records]
    assert {error["code"] for error in errors if error} == {"batch_expired", "server_error"}
    assert all(record["response"]["body"]["echo"] == " (sent with Authorization: Bearer ***)"
               for record in records if record["response"])  # the answers and the failures' bodies
    assert all(error["message"].endswith("Bearer ***)") for error in errors if error and error["code"] == "batch_expired")
    report = orjson.loads(report_path_for(out).read_bytes())
    assert report["failure_examples"]["batch_expired"][0]["message"].endswith("Bearer ***)")
    page = render_run(report)
    written = [*files_under(tmp_path)]
    assert errors_path_for(out) in written and report_path_for(out) in written
    for where in written:
        assert secret.encode() not in where.read_bytes() and secret[:12].encode() not in where.read_bytes(), where
    assert secret not in page and secret[:12] not in page


def test_an_answer_over_the_cap_is_response_too_large_as_online(tmp_path: Path) -> None:
    path = lines(tmp_path, 5)
    out = tmp_path / "out.jsonl"
    with world(oversize=DEFAULT_MAX_RESPONSE_BYTES) as w:
        stats = w.run(path, out, FAST)
    assert isinstance(stats, RunStats) and stats.exit_code != 0
    records = read_jsonl(out)
    first, *rest = records
    assert first["error"]["code"] == "response_too_large" and first["response"]["status_code"] == 200
    assert "over 67,108,864" in first["error"]["message"]
    assert all(record["error"] is None for record in rest)
    assert max(p.stat().st_size for p in files_under(tmp_path)) < 2**20  # nothing of it kept


MEASURE = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-c", *sys.argv[1:]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
# Reads a 300 MiB output file whose one line has no newline, as `--via batch` reads a download:
# checked as JSONL, then ordered. The line is sparse on disk: zeros past its head.
READ = """
import sys
from pathlib import Path
from batchrun.batchapi import answers, api
from batchrun.batchapi.ledger import Part
from batchrun.scrub import Scrubber
part = Part(number=0, url="/v1/chat/completions", model=None, first_line=0, batch_id="batch_1", status="completed")
directory = Path(sys.argv[1])
with open(answers.output_file(directory, part), "rb") as f:
    api._check_jsonl(f, 200)
answers.order(directory, part, Scrubber([]))
"""


def test_reading_a_huge_line_without_a_newline_holds_no_more_than_the_cap(tmp_path: Path) -> None:
    from batchrun.batchapi import answers
    from batchrun.batchapi.ledger import Part
    from batchrun.batchapi.plan import part_file

    part = Part(number=0, url="/v1/chat/completions", model=None, first_line=0, batch_id="batch_1", status="completed")
    size = 300 * 2**20
    part_file(tmp_path, 0).write_bytes(b'{"custom_id": "0"}\n{"custom_id": "1"}\n')
    with open(answers.output_file(tmp_path, part), "wb") as f:
        f.write(b'{"id": "batch_req_1", "custom_id": "0", "response": {"status_code": 200, "body": {"x": "')
        f.truncate(size)
    # The reader is started by a small process, whose children's peak is then the reader's alone (a
    # child forked from this test's process would count the pages it shared at the fork).
    started = subprocess.run([sys.executable, "-c", MEASURE, READ, str(tmp_path)], capture_output=True, text=True,
                             check=True)
    peak = int(started.stdout) * 1024  # Linux: KiB
    # The process itself, the cap and a chunk: about 150 MB here; reading the line whole took 2.36 GB.
    assert peak < size, f"{peak:,} bytes at peak"
    first, second = read_jsonl(answers.ordered_file(tmp_path, part))
    assert first["error"]["code"] == "response_too_large" and f"{size:,} bytes" in first["error"]["message"]
    assert second["error"]["code"] == "batch_result_missing"
