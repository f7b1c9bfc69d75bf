"""``batchrun cache stats|prune|clear``: what the cache holds, and keeping it bounded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from batchrun.cache.store import Store, cache_file
from batchrun.cli import main


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["cache", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def filled(directory: Path, count: int) -> None:
    cache = Store(directory)
    for i in range(count):
        cache.put(b"k%d" % i, b"[200,null,{}]")
    cache.close()


def test_stats_prune_and_clear(tmp_path: Path) -> None:
    directory = tmp_path / "c"
    filled(directory, 30)
    db = sqlite3.connect(cache_file(directory))
    db.execute("UPDATE answers SET stored_at = stored_at - 31 * 86400 WHERE key IN (?, ?)", (b"k1", b"k2"))
    db.commit()
    db.close()
    code, out, _ = invoke("stats", str(directory))
    assert code == 0 and "answers    30 (390 bytes;" in out and "stored     from " in out
    code, out, _ = invoke("prune", "--older-than", "30d", str(directory))
    assert code == 0 and out == "removed 2 answers stored more than 30 days ago\n"
    code, out, _ = invoke("clear", str(directory))
    assert code == 0 and out == "removed 28 answers\n"
    assert "answers    0 (0 bytes;" in invoke("stats", str(directory))[1]


def test_the_default_folder_and_a_missing_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code, _, err = invoke("stats")
    assert code == 2 and f"{tmp_path / 'batchrun'} holds no response cache" in err
    filled(tmp_path / "batchrun", 3)
    assert "answers    3 " in invoke("stats")[1]
    code, _, err = invoke("prune", "--older-than", "soon")
    assert code == 2 and "is not a duration" in err
