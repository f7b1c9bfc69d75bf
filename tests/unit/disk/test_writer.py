"""`OrderedWriter`: results arrive in any order and leave in input order; each is in the kernel
(the ordered output or the journal) when `write_pending` returns, all queued ones in one write per
file; the errors file follows the output."""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.accounting.report import Report
from batchrun.disk import journal, writer
from batchrun.disk.writer import OrderedWriter
from batchrun.records import Result

from ...helpers import read_jsonl

RUN_ID = "0123456789abcdef"


def ok(index: int) -> Result:
    return Result(index, f"req-{index}", 200, f"r{index}", {"model": "m", "choices": [], "n": index}, None, attempts=1)


def failed(index: int) -> Result:
    return Result(index, f"req-{index}", 400, f"r{index}", {"error": {"code": "bad"}}, {"code": "bad", "message": "no"})


def lost(index: int) -> Result:
    return Result(index, f"req-{index}", None, None, None, {"code": "request_timeout", "message": "timed out"})


class Files:
    """The three files of a checkpoint, opened as the engine opens them (buffered, appending)."""

    def __init__(self, folder: Path) -> None:
        self.out, self.errors, self.journal = folder / "output.jsonl", folder / "errors.jsonl", folder / "journal"
        self.opened: list[BinaryIO] = [open(path, "ab") for path in (self.out, self.errors, self.journal)]  # noqa: SIM115

    def writer(self, **kw: Any) -> OrderedWriter:
        out, errors, log = self.opened
        return OrderedWriter(out, errors, log, run_id=RUN_ID, **kw)

    def ids(self, path: Path) -> list[str]:
        return [orjson.loads(line)["custom_id"] for line in path.read_bytes().splitlines()]

    def journaled(self) -> list[int]:
        with self.journal.open("rb") as f:
            return [entry.index for entry in journal.scan(f)]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def test_results_leave_in_input_order_whatever_order_they_arrive_in(files: Files) -> None:
    w = files.writer()
    assert [r.index for r in w.add(ok(2))] == []
    assert [r.index for r in w.add(ok(1))] == []
    assert w.buffered == 2 and w.buffered_bytes > 0
    assert [r.index for r in w.add(ok(0))] == [0, 1, 2]  # the gap filled: all three, in order
    assert [r.index for r in w.add(ok(3))] == [3]
    w.close(sync=False)
    assert files.ids(files.out) == ["req-0", "req-1", "req-2", "req-3"]
    assert w.next_index == 4 and w.buffered == 0 and w.buffered_bytes == 0 and w.last_custom_id == "req-3"


def test_every_answer_is_in_the_kernel_when_write_pending_returns(files: Files) -> None:
    """Read back through another descriptor, with nothing flushed: a kill -9 now loses none."""
    w = files.writer()
    w.add(ok(1))  # waits for line 0: into the journal
    assert w.pending and files.journaled() == []
    w.write_pending()
    assert not w.pending and files.journaled() == [1]
    assert files.out.read_bytes() == b""
    w.add(ok(0))  # in order: into the output, with line 1; not journaled again
    w.write_pending()
    assert files.ids(files.out) == ["req-0", "req-1"]
    assert files.journaled() == [1]
    w.close(sync=False)


def test_the_answers_queued_together_share_one_write_per_file(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = writer._write_all
    monkeypatch.setattr(writer, "_write_all", lambda raw, data: (calls.append(data.count(b"\n")), real(raw, data)))
    w = files.writer()
    for index in (3, 1, 0, 2, 4):
        w.add(ok(index))
    w.write_pending()
    assert calls == [2, 5]  # the journal's two lines (3 and 1), then the output's five
    assert files.ids(files.out) == [f"req-{i}" for i in range(5)]
    w.close(sync=False)


def test_a_failed_write_fails_the_close_too(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines it dropped are counted as written: closing as if all were well would let the run
    publish a torn output."""
    w = files.writer()
    w.add(ok(0))

    def full(raw: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "_write_all", full)
    with pytest.raises(OSError):
        w.write_pending()
    monkeypatch.undo()
    with pytest.raises(OSError, match="No space"):
        w.close(sync=False)


def test_a_line_in_order_is_written_once_and_not_journaled(files: Files) -> None:
    w = files.writer()
    for i in range(5):
        w.add(ok(i))
    w.close(sync=False)
    assert files.journal.read_bytes() == b""  # at concurrency 1 the journal stays empty
    assert files.ids(files.out) == [f"req-{i}" for i in range(5)]


def test_the_journal_records_the_lines_as_the_output_will_have_them(files: Files) -> None:
    w = files.writer()
    w.add(failed(1))
    w.add(ok(0))
    w.close(sync=False)
    with files.journal.open("rb") as f:
        (entry,) = journal.scan(f)
    assert (entry.index, entry.ok) == (1, False)
    assert entry.line == files.out.read_bytes().splitlines(keepends=True)[1]


def test_every_failure_goes_to_the_errors_file_in_order(files: Files) -> None:
    w = files.writer()
    for result in (failed(3), ok(2), lost(1), ok(0), ok(4)):
        w.add(result)
    assert files.errors.read_bytes() == b""  # buffered: a resume rebuilds it from the output
    w.flush()
    assert files.ids(files.errors) == ["req-1", "req-3"]
    out_bytes, errors_bytes = files.out.stat().st_size, files.errors.stat().st_size
    assert w.sizes == (out_bytes, errors_bytes)
    w.close(sync=True)


def test_a_resumed_writer_goes_on_from_its_sizes_and_index(files: Files) -> None:
    first = files.writer()
    first.add(ok(0))
    first.add(failed(1))
    first.close(sync=True)
    sizes = first.sizes
    files = Files(files.out.parent)
    second = files.writer(next_index=2, sizes=sizes, last_custom_id="req-1")
    assert second.add(ok(3)) == [] and second.add(ok(2)) != []
    second.close(sync=False)
    assert second.sizes == (files.out.stat().st_size, files.errors.stat().st_size)
    assert files.ids(files.out) == ["req-0", "req-1", "req-2", "req-3"]


def test_a_carried_over_line_waiting_for_its_turn_is_not_journaled_again(files: Files) -> None:
    line = ok(1).encode(RUN_ID)
    carried = Result.from_line(1, line)
    assert carried.carried_over
    w = files.writer()
    w.add(carried)
    assert files.journaled() == []  # it is in the journal (or previous.jsonl) already
    w.add(ok(0))
    w.close(sync=False)
    assert files.out.read_bytes().splitlines(keepends=True)[1] == line


def test_a_waiting_result_keeps_its_line_and_lets_its_parsed_body_go(files: Files) -> None:
    w = files.writer()
    waiting = ok(1)
    w.add(waiting)
    assert waiting.body is None and waiting.line is not None
    assert w.buffered_bytes == len(waiting.line)
    w.close(sync=False)


def test_a_long_run_of_waiting_lines_is_written_in_pieces_with_the_same_bytes(
        files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer, "_PIECE", 300)  # a few lines a piece
    calls: list[int] = []
    w = files.writer()
    raw_write = w._out_raw.write

    def counting(data: Any) -> int | None:
        calls.append(len(data))
        return raw_write(data)

    monkeypatch.setattr(w._out_raw, "write", counting)
    for i in range(50, 0, -1):
        w.add(ok(i))
    w.add(ok(0))
    w.close(sync=False)
    assert files.ids(files.out) == [f"req-{i}" for i in range(51)]
    assert 1 < len(calls) < 51 and sum(calls) == files.out.stat().st_size


def test_a_short_write_is_written_on_until_all_of_it_is() -> None:
    class Trickling(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            self.data += bytes(b[:3])  # a pipe or a signal can cut a write short
            return min(3, len(b))

    raw = Trickling()
    writer._write_all(raw, b"0123456789")
    assert bytes(raw.data) == b"0123456789"


def test_close_closes_every_file_and_raises_the_first_failure(files: Files) -> None:
    class Full(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    out, unused, log = files.opened
    unused.close()
    errors = io.BufferedWriter(Full())
    w = OrderedWriter(out, errors, log, run_id=RUN_ID)
    w.add(failed(0))  # buffered in the errors file
    with pytest.raises(OSError, match="No space left"):
        w.close(sync=True)
    assert out.closed and errors.closed and log.closed
    assert files.ids(files.out) == ["req-0"]


def test_a_file_without_a_raw_one_beneath_is_refused(files: Files) -> None:
    out, errors, log = files.opened
    with pytest.raises(TypeError, match="not a buffered file"):
        OrderedWriter(io.BytesIO(), errors, log, run_id=RUN_ID)  # type: ignore[arg-type]
    for f in (out, errors, log):
        f.close()


def test_a_waiting_result_keeps_its_encoded_line_not_its_body(tmp_path: Path) -> None:
    files = [(tmp_path / name).open("ab") for name in ("o.jsonl", "e.jsonl", "journal")]
    writer = OrderedWriter(*files, run_id="run")
    body = {"model": "gpt-4o-2024-08-06", "choices": [], "pad": "x" * 10_000,
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}
    late = Result(1, "c1", 200, None, body, None, model="gpt-4o")
    full = Report()
    full.add_result(Result(1, "c1", 200, None, body, None, model="gpt-4o"))
    assert writer.add(late) == [] and late.body is None
    assert writer.buffered_bytes == len(late.encode("run")) > 10_000
    assert [r.index for r in writer.add(_result(0))] == [0, 1] and writer.buffered_bytes == 0
    shed = Report()
    shed.add_result(late)
    assert shed.state() == full.state()  # counted as the whole result would be: billed model, usage
    writer.close(sync=False)
    assert read_jsonl(tmp_path / "o.jsonl")[1]["response"]["body"] == body


def _result(index: int) -> Result:
    return Result(index, f"c{index}", 200, None, {"i": index}, None)


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(40)))
def test_writer_restores_input_order_from_any_completion_order(tmp_path_factory: pytest.TempPathFactory,
                                                               order: list[int]) -> None:
    folder = tmp_path_factory.mktemp("w")
    files = [(folder / name).open("ab") for name in ("o.jsonl", "e.jsonl", "journal")]
    writer = OrderedWriter(*files, run_id="run")
    written: list[int] = []
    early: list[int] = []  # finished before an earlier line: the ordered output cannot hold them yet
    for i in order:
        if i != writer.next_index:
            early.append(i)
        written += [r.index for r in writer.add(_result(i))]
        assert written == list(range(len(written)))  # only a contiguous prefix is ever written
        assert writer.buffered == i_seen(order, i) - len(written)
    writer.close(sync=False)
    assert [o["custom_id"] for o in read_jsonl(folder / "o.jsonl")] == [f"c{i}" for i in range(40)]
    with (folder / "journal").open("rb") as f:
        assert [entry.index for entry in journal.scan(f)] == early  # only those, in completion order


def i_seen(order: list[int], upto: int) -> int:
    return order.index(upto) + 1
