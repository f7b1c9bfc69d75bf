"""Hostile input: the corpus in ``tests/corpus/``, huge lines made at test time, and
files that cannot be read or written.

Every bad line must get an error record in its place naming ``file:line``, the run must go on
(exit 1), and every good line around it must be answered; a file that cannot be used at all is
exit 2 before anything is sent; a disk that fills up is exit 4 and resumable.
"""

from __future__ import annotations

import errno
import gc
import io
import os
import shutil
import subprocess
import sys
import tracemalloc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest

from batchrun import reader
from batchrun.cli.report import PROBLEMS_SHOWN
from batchrun.disk.checkpoint import Checkpoint
from batchrun.engine import BAD_LINE_WARNINGS
from batchrun.records import Job, LineError
from batchrun.simulator import Simulator

from ..helpers import chat_line, invoke, read_jsonl, without_dac_override, write_jsonl

CORPUS = Path(__file__).parents[1] / "corpus"
MiB = 2**20

# file -> {line number: (error code, custom_id, words the message must hold after "file:line: ")}
BAD_LINES: dict[str, dict[int, tuple[str, str, str]]] = {
    "invalid_json.jsonl": {
        2: ("invalid_request_line", "line-2", "not valid JSON: unexpected character"),
        3: ("invalid_request_line", "line-3", "not valid JSON: unexpected character, expected a string key"),
        4: ("invalid_request_line", "line-4", "not valid JSON: trailing comma is not allowed"),
        5: ("invalid_request_line", "line-5", "not valid JSON: unexpected character"),
        6: ("invalid_request_line", "line-6", "not valid JSON: unexpected content after document"),
        8: ("invalid_request_line", "line-8", "not valid JSON: unexpected character"),
        9: ("invalid_request_line", "line-9", "not valid JSON: unexpected control character in string"),
        10: ("invalid_request_line", "line-10", "not valid JSON: unexpected character, expected a string key"),
    },
    "truncated_last_line.jsonl": {
        3: ("invalid_request_line", "line-3", "not valid JSON: unexpected end of data"),
    },
    "non_utf8.jsonl": {
        2: ("invalid_request_line", "line-2", "not valid JSON: str is not valid UTF-8"),
        3: ("invalid_request_line", "line-3", "not valid JSON: str is not valid UTF-8"),
        4: ("invalid_request_line", "line-4", "not valid JSON: str is not valid UTF-8"),
        5: ("invalid_request_line", "line-5", "not valid JSON: no low surrogate in string"),
        7: ("invalid_request_line", "line-7", "not valid JSON: unexpected character"),
        8: ("invalid_request_line", "line-8", "not valid JSON: UTF-8 byte order mark (BOM) is not supported"),
        9: ("invalid_request_line", "line-9", "not valid JSON: str is not valid UTF-8"),
    },
    "not_objects.jsonl": {
        2: ("invalid_request_line", "line-2", "expected a JSON object, got list"),
        3: ("invalid_request_line", "line-3", "expected a JSON object, got str"),
        4: ("invalid_request_line", "line-4", "expected a JSON object, got int"),
        5: ("invalid_request_line", "line-5", "expected a JSON object, got NoneType"),
        6: ("invalid_request_line", "line-6", "expected a JSON object, got bool"),
        7: ("invalid_request_line", "line-7", "expected a JSON object, got list"),
    },
    "deep_nesting.jsonl": {
        2: ("invalid_request_line", "line-2", "not valid JSON: depth limit exceeded"),
        3: ("invalid_request_line", "line-3", "not valid JSON: depth limit exceeded"),
        4: ("invalid_request_line", "line-4", "not valid JSON: depth limit exceeded"),
    },
    "envelope_types.jsonl": {
        **{n: ("invalid_request_line", f"line-{n}", "custom_id must be a non-empty string") for n in range(2, 9)},
        9: ("invalid_request_line", "method-get-9", "method must be POST, got 'GET'"),
        10: ("invalid_request_line", "method-int-10", "method must be POST, got 1"),
        11: ("invalid_request_line", "method-null-11", "method must be POST, got None"),
        12: ("invalid_request_line", "method-lower-12", "method must be POST, got 'post'"),
        13: ("invalid_request_line", "url-int-13", "url must be a path starting with '/', got 42"),
        14: ("invalid_request_line", "url-relative-14", "url must be a path starting with '/'"),
        15: ("invalid_request_line", "url-null-15", "url must be a path starting with '/', got None"),
        16: ("invalid_request_line", "url-absolute-16", "got 'https://evil.example.com/v1/chat/completions'"),
        17: ("invalid_request_line", "url-list-17", "url must be a path starting with '/'"),
        18: ("invalid_request_line", "body-str-18", "body must be a JSON object"),
        19: ("invalid_request_line", "body-list-19", "body must be a JSON object"),
        20: ("invalid_request_line", "body-null-20", "body must be a JSON object"),
        21: ("invalid_request_line", "body-missing-21", "body is missing"),
        22: ("invalid_request_line", "body-number-22", "body must be a JSON object"),
        23: ("invalid_request_line", "stream-23", "stream=true is not supported in a batch"),
        24: ("invalid_request_line", "line-24", "stream=true is not supported in a batch"),
    },
    "duplicate_ids.jsonl": {
        3: ("duplicate_custom_id", "a", "custom_id 'a' was already used by an earlier line"),
        5: ("duplicate_custom_id", "b", "custom_id 'b' was already used by an earlier line"),
        7: ("duplicate_custom_id", "line-7", "custom_id 'line-7' was already used by an earlier line"),
        8: ("invalid_request_line", "x", "body must be a JSON object"),
        9: ("duplicate_custom_id", "x", "custom_id 'x' was already used by an earlier line"),
    },
    "tolerated.jsonl": {},
    "empty.jsonl": {},
    "blank_lines_only.jsonl": {},
}




def request_lines(path: Path) -> list[tuple[int, bytes]]:
    """(line number, bytes) of the lines that are not blank: one output record each."""
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]


def test_the_corpus_covers_every_file() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.jsonl")) == sorted(BAD_LINES)


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_corpus_file(tmp_path: Path, sim: Simulator, name: str) -> None:
    source = shutil.copy(CORPUS / name, tmp_path / name)
    out = tmp_path / "out.jsonl"
    bad = BAD_LINES[name]
    lines = request_lines(Path(source))

    code, err = invoke("run", str(source), "-o", str(out), "--base-url", sim.base_url)

    assert code == (1 if bad else 0), err
    records = read_jsonl(out)
    assert len(records) == len(lines)  # one output line per request line, none lost, none added
    for (line_no, _), record in zip(lines, records, strict=True):
        if line_no in bad:
            error_code, custom_id, words = bad[line_no]
            assert record["custom_id"] == custom_id and record["response"] is None
            assert record["error"]["code"] == error_code
            assert record["error"]["message"].startswith(f"{source}:{line_no}: ")
            assert words in record["error"]["message"]
            if sorted(bad).index(line_no) < BAD_LINE_WARNINGS:
                assert f"{source}:{line_no}: " in err  # and said on stderr as it happens
        else:  # the good lines around the bad ones are answered
            assert record["error"] is None and record["response"]["status_code"] == 200, record
    assert set(bad) <= {n for n, _ in lines}
    assert sim.stats.requests == len(lines) - len(bad)  # a bad line is never sent
    if len(bad) > BAD_LINE_WARNINGS:  # the rest are counted on stderr
        assert f"… and {len(bad) - BAD_LINE_WARNINGS} more bad input lines: see {out.with_name('out.errors.jsonl')}" in err
    errors = read_jsonl(out.with_name("out.errors.jsonl"))
    assert [e["custom_id"] for e in errors] == [bad[n][1] for n, _ in lines if n in bad]


@pytest.mark.parametrize("name", sorted(n for n, bad in BAD_LINES.items() if bad))
def test_estimate_finds_the_same_bad_lines_before_sending(name: str) -> None:
    path = CORPUS / name
    code, err = invoke("estimate", str(path))
    assert code == 2
    bad = sorted(BAD_LINES[name])
    for line_no in bad[:PROBLEMS_SHOWN]:  # the first ones are printed; the rest, counted
        assert f"batchrun: {path}:{line_no}: " in err
    for line_no in bad[PROBLEMS_SHOWN:]:
        assert f"batchrun: {path}:{line_no}: " not in err
    if len(bad) > PROBLEMS_SHOWN:
        assert f"batchrun: … and {len(bad) - PROBLEMS_SHOWN} more bad lines" in err
    assert f"batchrun: {len(BAD_LINES[name])} of {len(request_lines(path))} lines would not be sent" in err


# -- huge lines --------------------------------------------------------------------------------


def write_huge_line(f: BinaryIO, size: int, newline: bool = True) -> None:
    """A valid request line of ``size`` bytes (a long message), written in pieces."""
    head = b'{"custom_id": "huge", "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
    tail = b'"}]}}'
    f.write(head)
    left = size - len(head) - len(tail)
    piece = b"x" * MiB
    while left > 0:
        f.write(piece[: min(left, MiB)])
        left -= MiB
    f.write(tail + (b"\n" if newline else b""))


@pytest.mark.parametrize("last", [False, True], ids=["middle", "last-without-newline"])
def test_a_50_mib_line_is_an_error_and_its_neighbours_are_answered(tmp_path: Path, sim: Simulator,
                                                                     last: bool) -> None:
    source = tmp_path / "huge.jsonl"
    with source.open("wb") as f:
        f.write(orjson.dumps(chat_line(0)) + b"\n")
        f.write(orjson.dumps(chat_line(1)) + b"\n")
        if not last:
            write_huge_line(f, 50 * MiB)
            f.write(orjson.dumps(chat_line(3)) + b"\n")
        else:
            write_huge_line(f, 50 * MiB, newline=False)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 1
    records = read_jsonl(tmp_path / "out.jsonl")
    assert len(records) == (3 if last else 4)
    huge = records[2]
    assert huge["custom_id"] == "line-3" and huge["error"]["code"] == "invalid_request_line"
    assert huge["error"]["message"] == (f"{source}:3: the line is 50.0 MiB, over the 32 MiB a request may have")
    assert f"{source}:3: the line is 50.0 MiB" in err
    assert [r["error"] for i, r in enumerate(records) if i != 2] == [None] * (len(records) - 1)
    assert sim.stats.requests == len(records) - 1


def test_the_size_limit_is_exact(tmp_path: Path) -> None:
    limit = reader.MAX_LINE_BYTES
    source = tmp_path / "edge.jsonl"
    with source.open("wb") as f:
        write_huge_line(f, limit)  # exactly the limit (the newline not counted): accepted
        write_huge_line(f, limit + 1)  # one byte over
        f.write(orjson.dumps(chat_line(9)) + b"\n")
    items = list(reader.read_jobs(source))
    assert [type(i) for i in items] == [Job, LineError, Job]
    assert isinstance(items[0], Job) and len(items[0].body) < limit and items[0].custom_id == "huge"
    assert isinstance(items[1], LineError) and items[1].line_no == 2 and "32.0 MiB" in items[1].message
    assert items[2].custom_id == "req-9"


def _peak_reading(path: Path) -> int:
    tracemalloc.start()
    try:
        for _ in reader.read_jobs(path):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_line_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    """The memory a huge line costs does not grow with the line: 50 MiB and 120 MiB cost the same.

    (The bound is about twice `MAX_LINE_BYTES`: ``readline(limit)`` joins its pieces at the end.)
    """
    peaks = []
    for size in (50 * MiB, 120 * MiB):
        path = tmp_path / f"line-{size}.jsonl"
        with path.open("wb") as f:
            write_huge_line(f, size)
        peaks.append(_peak_reading(path))
        path.unlink()
    assert abs(peaks[1] - peaks[0]) < MiB
    assert peaks[1] < 2 * reader.MAX_LINE_BYTES + 4 * MiB < 120 * MiB


def test_a_body_nested_past_the_encoders_limit_is_a_line_error(tmp_path: Path) -> None:
    nested = b"[" * 300 + b"]" * 300
    source = tmp_path / "deep.jsonl"
    source.write_bytes(orjson.dumps(chat_line(0)) + b"\n"
                       + b'{"custom_id": "deep", "body": {"model": "gpt-4o-mini", "messages": ' + nested + b"}}\n")
    items = list(reader.read_jobs(source))
    assert isinstance(items[1], LineError) and f"{source}:2:" in items[1].message


# -- files that cannot be used -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp, "is a directory, not a JSONL file"),
        (lambda tmp: tmp / "missing.jsonl", "missing.jsonl: no such file"),
    ],
    ids=["directory", "missing"],
)
def test_an_input_that_is_not_a_file_is_exit_2_before_sending(tmp_path: Path, sim: Simulator, make: Any,
                                                               message: str) -> None:
    source = make(tmp_path)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"batchrun: error: {source}" in err and message in err
    assert sim.stats.requests == 0 and not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "out.jsonl.checkpoint").exists()


def test_an_unreadable_input_is_exit_2_permission_denied(tmp_path: Path, sim: Simulator,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """As the tests run as root, where mode 000 does not stop reading, the open is made to fail."""
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    real_open = Path.open

    def open_(self: Path, *args: Any, **kw: Any) -> Any:
        if self == source:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_open(self, *args, **kw)

    monkeypatch.setattr(Path, "open", open_)
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{source}: permission denied" in err
    assert sim.stats.requests == 0


@pytest.mark.parametrize("what", ["input", "output-directory"])
def test_real_permissions_are_exit_2(tmp_path: Path, sim: Simulator, what: str) -> None:
    """A real check: the process runs without CAP_DAC_OVERRIDE (or as a normal user)."""
    prefix = without_dac_override()
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    folder = tmp_path / "results"
    folder.mkdir()
    if what == "input":
        source.chmod(0)
    else:
        folder.chmod(0o555)
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "batchrun", "run", str(source), "-o", str(folder / "out.jsonl"),
         "--base-url", sim.base_url],
        capture_output=True, text=True, timeout=60,
    )
    source.chmod(0o644)
    folder.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    if what == "input":  # click's INPUT check answers first; the library says "permission denied"
        assert f"'{source}' is not readable" in proc.stderr or f"{source}: permission denied" in proc.stderr
    else:
        assert f"{folder / 'out.jsonl.checkpoint'}: cannot create: Permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sim.stats.requests == 0


def test_an_output_in_a_missing_directory_is_exit_2(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    code, err = invoke("run", str(source), "-o", str(tmp_path / "nope" / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{tmp_path / 'nope'}: output directory does not exist" in err
    assert sim.stats.requests == 0


def test_an_output_path_that_is_a_directory_is_exit_2_before_sending(tmp_path: Path, sim: Simulator) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    (tmp_path / "out.jsonl").mkdir()
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and "is a directory" in err
    code, err = invoke("run", str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url, "--restart")
    assert code == 2 and sim.stats.requests == 0


# -- a full disk -------------------------------------------------------------------------------


class FullDisk:
    """A disk with ``free`` bytes left, shared by the files a checkpoint opens for appending.

    The files are real buffered files over a raw file whose writes stop at ``free`` bytes (a
    partial write, then ENOSPC), so a full disk shows itself where it does for real: when a
    buffer is flushed, leaving a torn tail.
    """

    def __init__(self, free: int) -> None:
        self.free = free
        self.refused = 0

    def open_files(self, checkpoint: Checkpoint) -> tuple[BinaryIO, BinaryIO, BinaryIO]:
        return tuple(io.BufferedWriter(_Raw(path, self)) for path in  # type: ignore[return-value]
                     (checkpoint.output, checkpoint.errors, checkpoint.journal))


class _Raw(io.RawIOBase):
    def __init__(self, path: Path, disk: FullDisk) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._disk = disk
        self.name = str(path)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._disk.free <= 0:
            self._disk.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(self._fd, bytes(data[: self._disk.free]))
        self._disk.free -= written
        return written

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def collect_leaked_files() -> int:
    """Collect what a failed start left unclosed; how many (there must be none).

    A file left open with a buffer it could not flush would write it when collected — after
    space is back, into the checkpoint a new start is using.
    """
    leaked: list[object] = []
    hook = sys.unraisablehook
    sys.unraisablehook = leaked.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
    finally:
        sys.unraisablehook = hook
    return len(leaked)


def comparable(path: Path) -> list[dict[str, Any]]:
    """Output lines without what is each run's own: the measurements and the ids."""
    return [{k: v for k, v in r.items() if k not in ("batchrun", "id")} for r in read_jsonl(path)]


def mixed_rows(n: int) -> list[Any]:
    rows = [chat_line(i) for i in range(n)]
    for i in range(0, n, 37):
        rows[i]["body"]["messages"] = []  # type: ignore[index]
    return rows


def test_a_full_disk_stops_the_run_and_it_resumes_once_space_is_back(
        tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows(300))
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url, "-c", "8"]

    disk = FullDisk(free=150_000)
    monkeypatch.setattr(Checkpoint, "open_files", lambda checkpoint: disk.open_files(checkpoint))
    code, err = invoke(*args)
    assert code == 4, err
    assert "I/O error" in err and "No space left on device" in err and "run the same command again" in err
    assert disk.refused >= 1 and not out.exists()
    assert (tmp_path / "out.jsonl.checkpoint" / "journal").exists()  # kept
    sent_before = sim.stats.requests

    monkeypatch.undo()  # space is back
    code, err = invoke(*args)
    assert code == 1, err
    assert "resumed:" in err
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(300)]
    # Only the lines whose results had not reached the disk were sent again.
    assert 300 <= sim.stats.requests <= 300 + sent_before

    reference = tmp_path / "reference.jsonl"
    assert invoke("run", str(source), "-o", str(reference), "--base-url", sim.base_url)[0] == 1
    assert comparable(out) == comparable(reference)


def test_a_failed_start_leaves_no_file_open(tmp_path: Path, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", mixed_rows(300))
    out = tmp_path / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url, "-c", "8"]
    disk = FullDisk(free=150_000)
    monkeypatch.setattr(Checkpoint, "open_files", lambda checkpoint: disk.open_files(checkpoint))
    assert invoke(*args)[0] == 4
    checkpoint = tmp_path / "out.jsonl.checkpoint"
    sizes = {p.name: p.stat().st_size for p in checkpoint.iterdir()}
    disk.free = 10**9  # space is back while the failed start's files are still around
    leaked = collect_leaked_files()
    assert {p.name: p.stat().st_size for p in checkpoint.iterdir()} == sizes  # nothing written behind our back
    assert leaked == 0
    monkeypatch.undo()
    assert invoke(*args)[0] == 1
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(300)]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 192 KiB tmpfs, when this process may mount one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_tmpfs_stops_the_run_and_it_resumes_once_space_is_back(
        tmp_path: Path, sim: Simulator, small_tmpfs: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(400)])
    out = small_tmpfs / "out.jsonl"
    args = ["run", str(source), "-o", str(out), "--base-url", sim.base_url, "-c", "8"]
    code, err = invoke(*args)
    assert code == 4, err
    assert "No space left on device" in err and not out.exists()
    assert not list(small_tmpfs.rglob("*.tmp"))  # a report that could not be written leaves nothing

    subprocess.run(["mount", "-o", "remount,size=8m", str(small_tmpfs)], check=True)
    code, err = invoke(*args)
    assert code == 0, err
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"req-{i}" for i in range(400)]
    assert not (small_tmpfs / "out.jsonl.checkpoint").exists()


LAX_TRUE_AND_PATH_PARAMETERS = [
    {"custom_id": "s-str", "body": {"model": "m", "stream": "true"}},
    {"custom_id": "s-int", "body": {"model": "m", "stream": 1}},
    {"custom_id": "s-yes", "body": {"model": "m", "stream": "yes"}},
    {"custom_id": "s-on", "body": {"model": "m", "stream": "on"}},
    {"custom_id": "s-cap", "body": {"model": "m", "stream": "True"}},
    {"custom_id": "p-dots", "url": "/v1/..;/admin", "body": {"model": "m"}},
]


def test_lax_stream_values_and_path_parameters_are_never_sent(tmp_path: Path, sim: Simulator) -> None:
    """A server that reads booleans leniently streams for ``"true"``, ``1``, ``"yes"``…; one that
    strips ``;`` parameters before resolving dot segments reads ``/v1/..;/admin`` as ``/admin``."""
    alone = write_jsonl(tmp_path / "bad.jsonl", LAX_TRUE_AND_PATH_PARAMETERS)
    code, err = invoke("run", str(alone), "-o", str(tmp_path / "bad.out.jsonl"), "--base-url", sim.base_url)
    assert code == 2 and f"{alone}:1: stream=\"true\" is not supported" in err and "Traceback" not in err
    assert sim.stats.requests == 0 and not (tmp_path / "bad.out.jsonl").exists()

    mixed = write_jsonl(tmp_path / "mixed.jsonl", [chat_line(0), *LAX_TRUE_AND_PATH_PARAMETERS, chat_line(1)])
    code, err = invoke("run", str(mixed), "-o", str(tmp_path / "out.jsonl"), "--base-url", sim.base_url, "-q")
    assert code == 1 and "Traceback" not in err
    assert sim.stats.requests == 2
    records = read_jsonl(tmp_path / "out.jsonl")
    refused = {r["custom_id"]: r["error"] for r in records[1:-1]}
    assert all(e["code"] == "invalid_request_line" for e in refused.values())
    assert {cid: e["message"].split(": ", 1)[0] for cid, e in refused.items()} == {
        r["custom_id"]: f"{mixed}:{n}" for n, r in enumerate(LAX_TRUE_AND_PATH_PARAMETERS, start=2)}
    assert "';'" in refused["p-dots"]["message"]
