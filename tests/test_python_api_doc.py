"""docs/python-api.md's snippets run as they are: each ```python block, in order, in a folder
holding the sample files they name, with no key in the environment (they run with mock=True)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python-api.md"
_PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list[str]:
    return _PYTHON.findall(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_its_snippets() -> None:
    assert len(snippets()) == 3


def test_the_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(ROOT / "samples" / "chat.jsonl", tmp_path / "requests.jsonl")
    for name in ("reviews.csv", "sentiment.txt"):
        shutil.copy(ROOT / "samples" / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(variable, raising=False)
    for number, code in enumerate(snippets()):
        exec(compile(code, f"{PAGE}:snippet {number + 1}", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("200 0 ")  # the estimate: 200 requests, no problem line
    assert printed[1].startswith("0 200 0 ")  # the run: exit 0, 200 succeeded, none failed
    assert printed[3].startswith(f"0 {Path('reviews.labeled.csv')} ")  # the labels, exit 0
    assert printed[4] == "0 0"  # the async forms, again with restart=True
    assert len(orjson.loads(b"[" + b",".join((tmp_path / "results.jsonl").read_bytes().splitlines()) + b"]")) == 200
    assert (tmp_path / "reviews.labeled.csv").read_text(encoding="utf-8").startswith("review_id,product,rating,text,label,")
