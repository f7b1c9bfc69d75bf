"""The Batch API's ledger alone: a part taking in the provider's Batch object, the ledger saved
and read back whole, an older ledger without the newer fields, and one it cannot read."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from batchrun.batchapi.ledger import Ledger, Part, remove_dir
from batchrun.errors import ConfigError


def part(number: int = 0) -> Part:
    return Part(number=number, url="/v1/chat/completions", model="m", first_line=1, lines=2, size=100)


def test_a_part_takes_in_the_batch_the_provider_returned_and_says_whether_anything_changed() -> None:
    p = part()
    batch = {"status": "in_progress", "request_counts": {"total": 2, "completed": 1, "failed": "x"},
             "output_file_id": "", "error_file_id": None}
    assert p.update(batch)
    assert (p.status, p.counts, p.output_file_id, p.ended) == ("in_progress", {"total": 2, "completed": 1}, None, False)
    assert not p.update(batch)
    assert p.update({"status": "completed", "output_file_id": "file_out"})
    assert (p.status, p.output_file_id, p.ended, p.counts) == ("completed", "file_out", True, {"total": 2, "completed": 1})


def test_a_failed_batch_keeps_the_providers_first_reason_and_how_many_more() -> None:
    p = part()
    p.update({"status": "failed", "errors": {"data": [{"message": "bad line 1"}, {"code": "too_large"}]}})
    assert (p.ended, p.failure) == (True, "bad line 1 (and 1 more errors)")
    q = part()
    q.update({"status": "failed", "errors": None})
    assert q.failure == "the provider failed the batch without saying why"


def test_a_status_that_is_not_a_string_keeps_the_last_known_one() -> None:
    p = part()
    p.update({"status": "validating"})
    assert not p.update({"status": 7})
    assert p.status == "validating"


def test_a_saved_ledger_reads_back_whole_and_private(tmp_path: Path) -> None:
    first, second = part(0), part(1)
    first.update({"status": "completed", "output_file_id": "file_o"})
    first.file_id, first.batch_id, first.collected, first.worst_usd = "file_1", "batch_1", True, 0.25
    second.batch_id = "batch_2"
    ledger = Ledger(tmp_path, "run1", 1234.5, {"input": {"size": 3}}, [first, second], retry_failed=True)
    ledger.save()
    assert Ledger.path(tmp_path).stat().st_mode & 0o777 == 0o600
    loaded = Ledger.load(tmp_path)
    assert loaded is not None
    assert (loaded.run, loaded.created, loaded.identity, loaded.retry_failed) == ("run1", 1234.5, {"input": {"size": 3}}, True)
    assert loaded.parts == [first, second]
    assert loaded.in_flight == [second]  # created and not ended


def test_nothing_planned_is_no_ledger(tmp_path: Path) -> None:
    assert Ledger.load(tmp_path) is None


def test_a_ledger_written_before_the_newer_part_fields_loads_with_their_defaults(tmp_path: Path) -> None:
    old = dataclasses.asdict(part())
    for newer in ("first_index", "worst_usd"):
        del old[newer]
    Ledger.path(tmp_path).write_bytes(orjson.dumps({"format": 1, "run": "r", "created": 1, "identity": {},
                                                    "parts": [old]}))
    loaded = Ledger.load(tmp_path)
    assert loaded is not None and not loaded.retry_failed
    assert (loaded.parts[0].first_index, loaded.parts[0].worst_usd, loaded.parts[0].lines) == (0, None, 2)


def test_a_ledger_of_another_format_is_refused_naming_it(tmp_path: Path) -> None:
    Ledger.path(tmp_path).write_bytes(orjson.dumps({"format": 2, "run": "r", "created": 1, "identity": {}, "parts": []}))
    with pytest.raises(ConfigError, match=r"ledger\.json: written by another version of batchrun \(format 2\)"):
        Ledger.load(tmp_path)


@pytest.mark.parametrize("text", [b"{not json", b'{"format": 1}', b'{"format": 1, "run": "r", "created": 1, '
                                                                   b'"identity": {}, "parts": [{"unknown": 1}]}'])
def test_an_unreadable_ledger_is_refused_with_a_warning_that_its_batches_may_be_at_the_provider(
        tmp_path: Path, text: bytes) -> None:
    Ledger.path(tmp_path).write_bytes(text)
    with pytest.raises(ConfigError, match=r"cannot be read .*its batches may still be at the provider"):
        Ledger.load(tmp_path)


def test_removing_empties_the_directory_or_keeps_the_one_file_named(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("ledger.json", "part-0000.jsonl", "lock"):
        (kept / name).write_text("x")
    remove_dir(kept, keep="lock")
    assert [path.name for path in kept.iterdir()] == ["lock"]
    gone = tmp_path / "gone"
    gone.mkdir()
    Ledger(gone, "r", 0.0, {}, [part()]).save()
    Ledger(gone, "r", 0.0, {}, []).remove()
    assert not gone.exists()
