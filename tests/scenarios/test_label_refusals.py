"""`batchrun label` refusing what it cannot do — before anything is sent, with a message naming
the file and no traceback — and leaving nothing behind when it does; a failure to write the
output after the answers came keeps them, and the same command writes it."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchrun.cli import main
from batchrun.simulator import Simulator

from ..helpers import without_dac_override

SAMPLES = Path(__file__).parents[2] / "samples"
OTHER_UID = 65534  # nobody
LABELS = "positive,negative,neutral"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for name in ("reviews.csv", "sentiment.txt"):
        shutil.copy(SAMPLES / name, tmp_path / name)
    return tmp_path / "reviews.csv"


def label(data: Path, *args: str, template: str = "sentiment.txt") -> tuple[int, str]:
    """``batchrun label`` of ``data``: its exit code, and what it printed (stdout, then stderr)."""
    result = CliRunner().invoke(main, ["label", str(data), "-t", str(data.with_name(template)), "--labels", LABELS,
                                       *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a symlink of another user")
@pytest.mark.parametrize("dangling", [True, False])
def test_an_output_symlink_of_another_user_is_refused_before_anything_is_sent(
        tmp_path: Path, data: Path, sim: Simulator, dangling: bool) -> None:
    victim = tmp_path / "victim.csv"
    if not dangling:
        victim.write_text("the victim's own file\n")
    link = tmp_path / "out.csv"
    link.symlink_to(victim)
    os.lchown(link, OTHER_UID, OTHER_UID)
    restart = () if dangling else ("--restart",)
    code, err = label(data, "-o", str(link), "--base-url", sim.base_url, *restart)
    assert code == 2 and f"the output {link}: a symlink of another user (uid {OTHER_UID}), not followed" in err, err
    assert sim.stats.requests == 0
    assert not (tmp_path / "out.csv.batch").exists()
    assert dangling or victim.read_text() == "the victim's own file\n"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a symlink of another user")
def test_an_html_page_at_another_users_symlink_is_refused_before_anything_is_sent(
        tmp_path: Path, data: Path, sim: Simulator) -> None:
    pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install 'batchrun[report]'")
    link = tmp_path / "page.html"
    link.symlink_to(tmp_path / "victim.html")
    os.lchown(link, OTHER_UID, OTHER_UID)
    code, err = label(data, "--base-url", sim.base_url, "--html", str(link))
    assert code == 2 and "a symlink of another user" in err, err
    assert sim.stats.requests == 0 and not (tmp_path / "reviews.labeled.csv.batch").exists()


def test_a_refused_start_leaves_no_work_folder(tmp_path: Path, data: Path, sim: Simulator) -> None:
    data.with_name("bad.txt").write_text("{no_such_column}\n")
    code, err = label(data, "--base-url", sim.base_url, template="bad.txt")
    assert code == 2 and "reviews.csv:1 (the header): the template uses {no_such_column}" in err
    broken = tmp_path / "broken.csv"
    broken.write_bytes(data.read_bytes() + b'r99,x,5,"never closed\n')
    code, err = label(broken, "--base-url", sim.base_url)
    assert code == 2 and f"{broken}:" in err and "not valid CSV" in err, err
    assert sim.stats.requests == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.txt", "broken.csv", "reviews.csv",
                                                                 "sentiment.txt"]


def test_a_csv_with_cr_line_ends_is_labeled(tmp_path: Path, data: Path, sim: Simulator) -> None:
    with data.open(newline="", encoding="utf-8") as f:
        rows = [[cell.replace("\n", " ") for cell in row] for row in csv.reader(f)]  # no line breaks in cells
    for name, end in (("reviews.csv", "\n"), ("crlf.csv", "\r\n"), ("mac.csv", "\r")):
        with (tmp_path / name).open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator=end).writerows(rows)
    crlf, classic_mac = tmp_path / "crlf.csv", tmp_path / "mac.csv"
    code, out = label(classic_mac, "--dry-run")
    assert code == 0 and "--- custom_id line-2 (row 1, line 2) ---" in out
    for source in (crlf, classic_mac):
        code, err = label(source, "--base-url", sim.base_url)
        assert code == 0 and "30 answered" in err, err
        assert os.listdir(tmp_path / f"{source.stem}.labeled.csv.batch")  # the run's, kept for --retry-failed
    # Rows, line numbers (the default custom_ids) and the answers are those of the LF file.
    assert (tmp_path / "mac.labeled.csv").read_bytes() == (tmp_path / "crlf.labeled.csv").read_bytes()
    assert label(data, "--base-url", sim.base_url)[0] == 0
    assert (tmp_path / "mac.labeled.csv").read_bytes() == (tmp_path / "reviews.labeled.csv").read_bytes()


def test_an_input_bom_is_kept_in_a_csv_output(tmp_path: Path, data: Path, sim: Simulator) -> None:
    data.write_bytes(b"\xef\xbb\xbf" + data.read_bytes())
    assert label(data, "--base-url", sim.base_url)[0] == 0
    assert label(data, "--base-url", sim.base_url, "-o", str(tmp_path / "out.jsonl"))[0] == 0
    assert (tmp_path / "reviews.labeled.csv").read_bytes().startswith(b"\xef\xbb\xbfreview_id,")
    assert (tmp_path / "out.jsonl").read_bytes().startswith(b'{"review_id"')  # JSON has no BOM
    data.write_bytes(data.read_bytes()[3:])
    assert label(data, "--base-url", sim.base_url, "-o", str(tmp_path / "plain.csv"))[0] == 0
    assert (tmp_path / "plain.csv").read_bytes().startswith(b"review_id,")


def test_an_output_folder_that_cannot_be_written_stops_cleanly_and_the_same_command_writes_it(
        tmp_path: Path, data: Path, sim: Simulator) -> None:
    prefix = without_dac_override()  # root would write in a read-only folder all the same
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "labeled.csv.batch").mkdir(mode=0o700)  # the run's own folder is there and writable …
    folder.chmod(0o555)  # … the output's is not (as if made read-only mid-run)
    command = [*prefix, sys.executable, "-m", "batchrun", "label", str(data), "-t", str(data.with_name("sentiment.txt")),
               "--labels", LABELS, "-o", str(folder / "labeled.csv"), "--base-url", sim.base_url, "-q"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr and "could not write the output" in done.stderr
    assert "Permission denied" in done.stderr and "run the same command again" in done.stderr
    assert not (folder / "labeled.csv").exists()
    sent = sim.stats.requests
    assert sent == 30
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sim.stats.requests == sent and len((folder / "labeled.csv").read_text().splitlines()) > 30
