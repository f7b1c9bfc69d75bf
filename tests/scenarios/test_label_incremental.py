"""``batchrun label`` over an output it already wrote (label/previous.py): only the new or changed
rows are sent, rows gone from the data leave the output, and the same command again is up to
date and exits as that run did. Against the simulator over loopback, counting what it was sent."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from batchrun.cli import main
from tests.batchworld import World, world

SENTIMENT = "positive,negative,neutral"


def write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows(rows)


def rows(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(f"r{i}", f"review number {i}: it was fine") for i in range(start, start + n)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def label(w: World, data: Path, *extra: str) -> tuple[int, str, int]:
    """``batchrun label`` of ``data``: its exit code, its stderr on one line, and the chat requests it sent."""
    template = data.with_name("t.txt")
    template.write_text("Sentiment of: {text}\n", encoding="utf-8")
    before = w.sim.stats.requests
    args = ["label", str(data), "-t", str(template), "--labels", SENTIMENT, "-o", str(data.with_name("out.csv")),
            "--base-url", w.sim.base_url, *extra]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, " ".join(result.stderr.split()), w.sim.stats.requests - before


def test_appending_12_rows_to_300_sends_12_requests(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    write_rows(data, rows(300))
    with world() as w:
        code, err, sent = label(w, data, "--id-field", "id")
        assert code == 0 and sent == 300, err
        first = read_csv(tmp_path / "out.csv")
        write_rows(data, rows(312))
        code, err, sent = label(w, data, "--id-field", "id")
        assert code == 0, err
        assert sent == 12
    out = read_csv(tmp_path / "out.csv")
    assert len(out) == 312 and out[:300] == first  # the kept answers, as they were
    assert all(row["label"] in SENTIMENT.split(",") and not row["_error"] for row in out)
    assert not (tmp_path / "out.csv.batch" / "previous.results.jsonl").exists()  # removed once joined


def test_changed_and_removed_rows_with_and_without_an_id_field(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    for extra in (("--id-field", "id"), ()):
        write_rows(data, rows(20))
        with world() as w:
            code, err, sent = label(w, data, "--restart", *extra)
            assert code == 0 and sent == 20, err
            changed = rows(20)
            changed[3] = ("r3", "a changed review")
            del changed[7]  # removed: gone from the output
            changed.insert(0, ("new", "a review inserted first"))  # moves every line number
            write_rows(data, changed)
            code, err, sent = label(w, data, *extra)
            assert code == 0, err
            assert sent == 2  # the changed row and the new one
        out = read_csv(tmp_path / "out.csv")
        assert [row["id"] for row in out] == [row[0] for row in changed]


def test_the_same_command_again_is_up_to_date_and_exits_as_that_run_did(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    write_rows(data, rows(10))
    with world() as w:
        code, err, sent = label(w, data)
        assert code == 0 and sent == 10, err
        code, err, sent = label(w, data)
        assert code == 0 and sent == 0
        assert "is up to date" in err and "nothing was sent" in err
        # A run with failed rows exits 1, and so does the same command again.
        code, err, sent = label(w, data, "--restart", "--model", "gpt-4o-mini", "--param", "max_tokens=1")
        assert code == 1, err
        code, err, sent = label(w, data, "--model", "gpt-4o-mini", "--param", "max_tokens=1")
        assert code == 1 and sent == 0 and "is up to date" in err


def test_via_batch_plans_only_the_new_rows(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    write_rows(data, rows(30))
    batch = ("--id-field", "id", "--via", "batch", "--detach")  # the simulator's clock moves only as the test says
    with world(seconds_per_request=1.0) as w:
        assert label(w, data, *batch)[0] == 0
        w.clock.now += 100
        code, err, _ = label(w, data, *batch)
        assert code == 0 and "labeled 30 rows" in err, err
        write_rows(data, rows(35))
        assert label(w, data, *batch)[0] == 0
        w.clock.now += 100
        code, err, _ = label(w, data, *batch)
        assert code == 0 and "labeled 35 rows" in err, err
        assert w.sim.stats.batches_created == 2 and w.sim.stats.batch_requests == 35  # 30, then the 5 new
    out = read_csv(tmp_path / "out.csv")
    assert len(out) == 35 and all(row["label"] and not row["_error"] for row in out)


def test_ray_refuses_to_keep_answers_and_the_rows_stay_set_aside(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    write_rows(data, rows(5))
    with world() as w:
        assert label(w, data)[0] == 0
        write_rows(data, rows(6))
        code, err, sent = label(w, data, "--ray")
        assert code == 2 and "--ray cannot keep the answers of an earlier run" in err and sent == 0
        code, err, sent = label(w, data)  # without --ray: the answers set aside are kept
        assert code == 0 and sent == 1, err


def test_a_start_killed_between_setting_aside_the_results_and_the_requests_goes_on(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    write_rows(data, rows(8))
    with world() as w:
        assert label(w, data, "--id-field", "id")[0] == 0
        work = tmp_path / "out.csv.batch"
        (work / "results.jsonl").rename(work / "previous.results.jsonl")  # the first rename only
        write_rows(data, rows(9))
        code, err, sent = label(w, data, "--id-field", "id")
        assert code == 0 and sent == 1, err
    assert len(read_csv(tmp_path / "out.csv")) == 9
