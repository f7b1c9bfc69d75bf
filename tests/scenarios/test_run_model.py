"""``batchrun run --model``: every request is sent with that model, whatever its line says; a
checkpoint only resumes with the same one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from ..helpers import chat_line, invoke, read_jsonl, write_jsonl
from ..rawserver import RawServer, error_body, http, ok, replying


def test_every_line_is_sent_with_the_model_given(tmp_path: Path) -> None:
    envelope = chat_line(0, temperature=0.25)  # model gpt-4o-mini
    bare_with = {"model": "other", "messages": [{"role": "user", "content": "question 1"}], "seed": 12345678901234}
    bare_without = {"messages": [{"role": "user", "content": "question 2"}]}
    source = write_jsonl(tmp_path / "in.jsonl", [envelope, bare_with, bare_without])
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        code, err = invoke("run", str(source), "--base-url", server.base_url, "--model", "served-model", "-q")
        assert code == 0, err
        bodies = {seen.text: orjson.loads(seen.body) for seen in server.seen}
    assert bodies == {"question 0": {**envelope["body"], "model": "served-model"},  # type: ignore[dict-item]
                      "question 1": {**bare_with, "model": "served-model"},
                      "question 2": {**bare_without, "model": "served-model"}}
    assert [o["custom_id"] for o in read_jsonl(tmp_path / "in.results.jsonl")] == ["req-0", "line-2", "line-3"]


def test_without_model_each_line_keeps_its_own(tmp_path: Path) -> None:
    raw = b'{"model":"own","messages":[{"role":"user","content":"question 0"}],"n":1.0}'
    source = tmp_path / "in.jsonl"
    source.write_bytes(raw + b"\n")
    with RawServer(replying(lambda seen, n: ok(seen))) as server:
        assert invoke("run", str(source), "--base-url", server.base_url, "-q")[0] == 0
        assert [seen.body for seen in server.seen] == [raw]  # sent as read, byte for byte


@pytest.mark.parametrize(("first", "then", "change"), [
    (["--model", "a"], ["--model", "b"], "model 'a' → 'b'"),
    (["--model", "a"], [], "model 'a' → None"),
    ([], ["--model", "b"], "model None → 'b'"),
])
def test_a_checkpoint_resumes_only_with_the_same_model(tmp_path: Path, first: list[str], then: list[str],
                                                      change: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(i) for i in range(3)])
    refused = http(401, error_body("bad key", "invalid_api_key"))
    with RawServer(replying(lambda seen, n: refused)) as server:
        code, err = invoke("run", str(source), "--base-url", server.base_url, *first)
        assert code == 4, err  # stopped on the refused key: the checkpoint stays
        sent = len(server.seen)
        code, err = invoke("run", str(source), "--base-url", server.base_url, *then)
        assert code == 2 and "options changed" in err and change in err, err
        assert len(server.seen) == sent  # nothing was sent by the refused start


@pytest.mark.parametrize("model", ["", "two words", "tab\there"])
def test_a_model_that_cannot_be_a_name_exits_2(tmp_path: Path, model: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    code, err = invoke("run", str(source), "--mock", "--model", model)
    assert code == 2 and "--model" in err
