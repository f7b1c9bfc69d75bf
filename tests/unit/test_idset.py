"""The compact set of seen ids alone: new or seen, across the table's growth."""

from __future__ import annotations

import pytest

from batchrun.idset import IdSet


def test_idset_detects_repeats_across_growth() -> None:
    ids = IdSet(capacity=4)
    keys = [f"id-{i}" for i in range(10_000)]
    assert all(ids.add(k) for k in keys)
    assert len(ids) == 10_000
    assert not any(ids.add(k) for k in keys[::97])
    assert ids.add("fresh")


def test_a_repeat_is_not_counted_and_the_empty_string_is_an_id_like_any_other() -> None:
    ids = IdSet(capacity=1)
    assert ids.add("") and not ids.add("")
    assert ids.add("a") and not ids.add("a")
    assert len(ids) == 2


def test_a_key_whose_hash_is_zero_is_remembered_though_zero_marks_an_empty_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = IdSet(capacity=4)
    monkeypatch.setattr("builtins.hash", lambda key: 0 if key == "zero" else len(key))
    assert ids.add("zero")
    assert not ids.add("zero")
    assert len(ids) == 1


def test_membership_and_update_see_every_id_added_and_no_other() -> None:
    first, second = IdSet(capacity=2), IdSet(capacity=2)
    for i in range(3000):
        (first if i % 2 else second).add(f"id-{i}")
    assert "id-1" in first and "id-0" not in first and "" not in first
    first.update(second)  # grows past its capacity as it goes
    assert len(first) == 3000 and all(f"id-{i}" in first for i in range(3000))
    assert "id-3000" not in first and not first.add("id-2999")


def test_adding_all_at_once_is_adding_one_by_one_across_growth_and_repeats() -> None:
    keys = [f"id-{i % 7000}" for i in range(10_000)] + ["", "zero"]
    one_by_one, at_once = IdSet(capacity=4), IdSet(capacity=4)
    for key in keys:
        one_by_one.add(key)
    at_once.add_all(keys)
    assert len(at_once) == len(one_by_one) == 7002
    assert all(key in at_once for key in keys) and "id-7000" not in at_once
    assert not at_once.add("id-6999") and at_once.add("fresh")
