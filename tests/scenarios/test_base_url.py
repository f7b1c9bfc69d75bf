"""Where requests go: the base URL joined to the envelope's path as the openai SDK joins them, a
base URL's query kept on every request, and a malformed base URL refused before anything is sent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from click.testing import CliRunner

from batchrun import ApiKey, RetryPolicy, RunConfig, run_batch
from batchrun.cli import main
from batchrun.client import join_url
from batchrun.errors import ConfigError

from ..helpers import chat_line, read_jsonl, write_jsonl
from ..rawserver import RawServer, Seen, error_body, http, ok

FAST = RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_max=0.005)

# (base URL, envelope url, where the request goes)
CASES = [
    ("https://api.openai.com/v1", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions"),
    ("https://host/v1/", "/v1/embeddings", "https://host/v1/embeddings"),
    ("https://generativelanguage.googleapis.com/v1beta/openai/", "/v1/chat/completions",
     "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"),
    ("http://127.0.0.1:4010", "/v1/chat/completions", "http://127.0.0.1:4010/chat/completions"),
    ("http://127.0.0.1:4010/", "/v1/responses", "http://127.0.0.1:4010/responses"),
    ("http://localhost:11434/v1", "/v1/chat/completions", "http://localhost:11434/v1/chat/completions"),  # Ollama
    ("http://localhost:8000/v1", "/v1/completions", "http://localhost:8000/v1/completions"),  # vLLM
    ("http://localhost:8080/v1", "/v1/embeddings", "http://localhost:8080/v1/embeddings"),  # llama.cpp
    ("http://gateway.example/team//", "/v1/chat/completions", "http://gateway.example/team//chat/completions"),
    # An envelope path without the /v1 root is below the base URL as it is.
    ("https://host/v1", "/chat/completions", "https://host/v1/chat/completions"),
    ("https://host/v1", "/v2/rerank", "https://host/v1/v2/rerank"),
    ("https://host/v1", "/v1beta/models", "https://host/v1/v1beta/models"),
    # The base URL's query goes on every request; the envelope's own parameters win.
    ("https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21", "/v1/chat/completions",
     "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"),
    ("https://x.openai.azure.com/openai/v1/?api-version=preview", "/v1/responses",
     "https://x.openai.azure.com/openai/v1/responses?api-version=preview"),
    ("https://x.example/openai?api-version=1&tenant=t", "/v1/chat/completions?api-version=2&trace=on",
     "https://x.example/openai/chat/completions?tenant=t&api-version=2&trace=on"),
    ("http://127.0.0.1:4010?key=k", "/v1/chat/completions", "http://127.0.0.1:4010/chat/completions?key=k"),
]


@pytest.mark.parametrize(("base", "path", "expected"), CASES)
def test_the_request_url_is_the_base_url_and_the_path_below_v1(base: str, path: str, expected: str) -> None:
    assert join_url(base, path) == expected


@pytest.mark.parametrize(("base", "path", "expected"), CASES)
def test_the_request_url_is_the_one_the_openai_sdk_builds(base: str, path: str, expected: str) -> None:
    """The SDK is given what it takes: the endpoint's path without the /v1 root, and a base URL's
    query as ``default_query`` (as its ``AzureOpenAI`` passes ``api-version``: a query left in its
    ``base_url`` ends up in front of the path)."""
    openai = pytest.importorskip("openai")
    from openai._models import FinalRequestOptions

    base_url, _, base_query = base.partition("?")
    endpoint, _, query = path.partition("?")
    client = openai.OpenAI(base_url=base_url, api_key="x", default_query=dict(parse_qsl(base_query)))
    request = client._build_request(FinalRequestOptions.construct(
        method="post", url=endpoint.removeprefix("/v1") if endpoint.startswith("/v1/") else endpoint,
        params=dict(parse_qsl(query)), json_data={}))
    ours, theirs = urlsplit(join_url(base, path)), urlsplit(str(request.url))
    assert (ours.scheme, ours.hostname, ours.port, ours.path) == (theirs.scheme, theirs.hostname, theirs.port, theirs.path)
    assert sorted(parse_qsl(ours.query)) == sorted(parse_qsl(theirs.query))  # the order of parameters means nothing


def test_the_default_base_url_is_openais() -> None:
    assert RunConfig(Path("in.jsonl"), api_key=ApiKey("sk-test")).base_url == "https://api.openai.com/v1"


@pytest.mark.parametrize(("base", "message"), [
    ("http://127.0.0.1:{port}/v1#part", "#fragment"),
    ("http://127.0.0.1:{port}/v1 ", "which a URL cannot hold"),
    ("http://127.0.0.1:{port}/v1\n", "which a URL cannot hold"),
    ("http://127.0.0.1:{port}/v1\t", "which a URL cannot hold"),
    ("http://127.0.0.1:{port}/d\u00e9ploiement", "which a URL cannot hold"),
    ("http://127.0.0.1:{port}/v1/chat/completions", "names an endpoint"),
    ("http://127.0.0.1:{port}/v1/embeddings/", "names an endpoint"),
    ("ftp://127.0.0.1:{port}/v1", "must be an http(s) URL"),
    ("http:///v1", "has no host"),
    ("http://127.0.0.1:{port}0000/v1", "port"),
])
def test_a_malformed_base_url_is_refused_before_anything_is_sent(tmp_path: Path, base: str, message: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(0)])
    with RawServer(answer_at("/")) as server:
        url = base.format(port=server.port)
        with pytest.raises(ConfigError, match="--base-url"):
            RunConfig(source, base_url=url)
        result = CliRunner().invoke(main, ["run", str(source), "--base-url", url], catch_exceptions=False)
        assert result.exit_code == 2 and message in result.stderr and "--base-url" in result.stderr
        assert server.seen == []


def test_an_endpoint_named_completions_is_a_base_url_an_azure_deployment_may_have() -> None:
    config = RunConfig(Path("in.jsonl"), base_url="http://127.0.0.1:1/openai/deployments/completions")
    assert join_url(config.base_url, "/v1/chat/completions").endswith("/deployments/completions/chat/completions")


def answer_at(route: str):  # type: ignore[no-untyped-def]
    """A handler answering requests whose path (without the query) is ``route``, 404 to any other."""
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.path.partition("?")[0] == route:
            writer.write(ok(seen))
        else:
            writer.write(http(404, error_body(f"Invalid URL (POST {seen.path})")))
        return True

    return handler


@pytest.mark.parametrize(("suffix", "path", "received"), [
    ("", "/v1/chat/completions", "/chat/completions"),
    ("/openai/deployments/d?api-version=2024-10-21", "/v1/chat/completions",
     "/openai/deployments/d/chat/completions?api-version=2024-10-21"),
    ("/openai/deployments/d?api-version=2024-10-21", "/v1/chat/completions?trace=1",
     "/openai/deployments/d/chat/completions?api-version=2024-10-21&trace=1"),
], ids=["no-v1", "azure-query", "queries-merged"])
async def test_the_server_receives_the_joined_path_and_query(tmp_path: Path, suffix: str, path: str,
                                                             received: str) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{**chat_line(i), "url": path} for i in range(3)])
    with RawServer(answer_at(received.partition("?")[0])) as server, anyio.fail_after(30):
        stats = await run_batch(RunConfig(source, base_url=f"http://127.0.0.1:{server.port}{suffix}", retry=FAST))
        assert sorted((seen.method, seen.path) for seen in server.seen) == [("POST", received)] * 3
    assert stats.exit_code == 0
    assert [o["response"]["status_code"] for o in read_jsonl(tmp_path / "in.results.jsonl")] == [200] * 3


def test_label_reaches_a_base_url_without_v1(tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    data.write_text("id,text\n1,good\n2,bad\n", encoding="utf-8")
    template = tmp_path / "t.txt"
    template.write_text("Review: {text}", encoding="utf-8")
    with RawServer(answer_at("/chat/completions")) as server:
        result = CliRunner().invoke(main, ["label", str(data), "-t", str(template), "-q", "--max-attempts", "1",
                                           "--base-url", f"http://127.0.0.1:{server.port}"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert [seen.path for seen in server.seen] == ["/chat/completions"] * 2
    assert (tmp_path / "reviews.labeled.csv").read_text(encoding="utf-8").splitlines()[1:] == [
        "1,good,REVIEW: GOOD,,", "2,bad,REVIEW: BAD,,"]
