"""The simulator's Batch API over loopback: upload, create, poll, cancel, expire, collect.

Time is a fake clock handed to the simulator: a test moves it and polls, and never waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest

from batchrun.simulator import Batches, Faults, SimulatorConfig, run_in_thread

from ...helpers import SimClock

CHAT = "/v1/chat/completions"



@contextmanager
def simulator(clock: SimClock, seed: int = 0, **batches: Any) -> Iterator[tuple[httpx.Client, Any]]:
    config = SimulatorConfig(seed=seed, batches=Batches(**batches))
    with run_in_thread(config, clock=clock) as sim, httpx.Client(base_url=sim.base_url, timeout=5) as client:
        yield client, sim


def request_line(i: int, url: str = CHAT, custom_id: str | None = None) -> dict[str, Any]:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Question number {i}"}]}
    return {"custom_id": custom_id or f"line-{i}", "method": "POST", "url": url, "body": body}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def upload(client: httpx.Client, content: bytes, purpose: str = "batch") -> httpx.Response:
    return client.post("/files", data={"purpose": purpose}, files={"file": ("input.jsonl", content)})


def submit(client: httpx.Client, lines: list[dict[str, Any]], endpoint: str = CHAT) -> dict[str, Any]:
    file = upload(client, jsonl(lines))
    assert file.status_code == 200, file.text
    created = client.post("/batches", json={"input_file_id": file.json()["id"], "endpoint": endpoint,
                                            "completion_window": "24h", "metadata": {"run": "nightly"}})
    assert created.status_code == 200, created.text
    batch: dict[str, Any] = created.json()
    return batch


def get(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def records(client: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    response = client.get(f"/files/{file_id}/content")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jsonl"
    return [orjson.loads(line) for line in response.content.splitlines()]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_upload_create_poll_and_collect_answers_every_line_as_online() -> None:
    clock = SimClock()
    lines = [request_line(i) for i in range(5)]
    with simulator(clock, validating_s=1, seconds_per_request=1, finalizing_s=1) as (client, sim):
        batch = submit(client, lines)
        assert batch["status"] == "validating" and batch["id"].startswith("batch_")
        assert batch["request_counts"] == {"total": 5, "completed": 0, "failed": 0}
        assert batch["metadata"] == {"run": "nightly"} and batch["expires_at"] == batch["created_at"] + 86_400
        clock.now += 1
        assert get(client, batch["id"])["status"] == "in_progress"
        clock.now += 2
        polled = get(client, batch["id"])
        assert polled["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
        assert polled["output_file_id"] is None
        clock.now += 3
        assert get(client, batch["id"])["status"] == "finalizing"
        clock.now += 1
        done = get(client, batch["id"])
        assert done["status"] == "completed"
        assert done["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
        assert done["error_file_id"] is None
        assert [done[k] - done["created_at"] for k in ("in_progress_at", "finalizing_at", "completed_at")] == [1, 6, 7]
        output = records(client, done["output_file_id"])
        assert sorted(r["custom_id"] for r in output) == sorted(line["custom_id"] for line in lines)
        for record in output:
            line = lines[int(record["custom_id"].split("-")[1])]
            online = client.post("/chat/completions", json=line["body"])
            assert record["id"].startswith("batch_req_") and record["error"] is None
            assert record["response"]["status_code"] == 200
            assert record["response"]["body"] == online.json()  # the same answer, usage included
            assert record["response"]["request_id"] == online.headers["x-request-id"]
        output_file = client.get(f"/files/{done['output_file_id']}").json()
        assert output_file["purpose"] == "batch_output" and output_file["object"] == "file"
        assert sim.stats.to_dict()["batches_created"] == 1 and sim.stats.files_uploaded == 1


def test_uploads_that_are_not_batch_files_get_400s() -> None:
    with simulator(SimClock()) as (client, sim):
        assert error_of(upload(client, jsonl([request_line(0)]), purpose="fine-tune"), 400)["param"] == "purpose"
        assert error_of(upload(client, b'{"custom_id": "a"}\n'), 400)["code"] == "invalid_request_line"
        assert error_of(upload(client, b"not json\n"), 400)["code"] == "invalid_json_line"
        assert error_of(upload(client, b"\n"), 400)["code"] == "empty_file"
        missing = client.post("/files", data={"purpose": "batch"}, files={"other": ("x", b"y")})
        assert error_of(missing, 400)["param"] == "file"
        assert error_of(client.post("/files", json={"purpose": "batch"}), 400)["type"] == "invalid_request_error"
        assert error_of(client.get("/files/file-nope"), 404)["param"] == "id"
        assert error_of(client.get("/files/file-nope/content"), 404)["param"] == "id"
        assert sim.stats.files_uploaded == 0


def test_creating_a_batch_checks_its_parameters() -> None:
    with simulator(SimClock()) as (client, sim):
        file_id = upload(client, jsonl([request_line(0)])).json()["id"]
        good = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
        assert error_of(client.post("/batches", json={**good, "input_file_id": "file-nope"}), 404)["param"] == (
            "input_file_id")
        assert error_of(client.post("/batches", json={**good, "endpoint": "/v1/images"}), 400)["param"] == "endpoint"
        assert error_of(client.post("/batches", json={**good, "completion_window": "1h"}), 400)["code"] == (
            "invalid_value")
        assert error_of(client.post("/batches", json={**good, "metadata": {"n": 1}}), 400)["param"] == "metadata"
        assert error_of(client.post("/batches", json={"endpoint": CHAT}), 400)["param"] == "input_file_id"
        assert error_of(client.get("/batches/batch_nope"), 404)["param"] == "batch_id"
        assert error_of(client.post("/batches/batch_nope/cancel"), 404)["param"] == "batch_id"
        assert error_of(client.get("/batches/batch_nope/cancel"), 404)["message"].startswith("Invalid URL")
        assert sim.stats.batches_created == 0


@pytest.mark.parametrize(("lines", "limits", "code", "line"), [
    ([request_line(0), request_line(1, url="/v1/embeddings")], {}, "mismatched_endpoint", 2),
    ([request_line(0, custom_id="a"), request_line(1, custom_id="a")], {}, "duplicate_custom_id", 2),
    ([request_line(i) for i in range(4)], {"max_requests": 3}, "too_many_requests", None),
    ([request_line(i) for i in range(4)], {"max_bytes": 300}, "file_too_large", None),
], ids=["endpoint", "custom_id", "count", "size"])
def test_a_batch_whose_file_breaks_the_rules_fails_after_validation(
    lines: list[dict[str, Any]], limits: dict[str, Any], code: str, line: int | None
) -> None:
    clock = SimClock()
    with simulator(clock, validating_s=1, **limits) as (client, _):
        batch = submit(client, lines)
        assert batch["status"] == "validating"
        clock.now += 1
        failed = get(client, batch["id"])
    assert failed["status"] == "failed" and failed["failed_at"] == failed["created_at"] + 1
    assert failed["in_progress_at"] is None and failed["output_file_id"] is None and failed["error_file_id"] is None
    assert failed["errors"]["object"] == "list"
    assert [(e["code"], e["line"]) for e in failed["errors"]["data"]] == [(code, line)]


def test_the_list_is_newest_first_and_pages_with_after() -> None:
    with simulator(SimClock()) as (client, _):
        created = [submit(client, [request_line(i)])["id"] for i in range(5)]
        seen: list[str] = []
        pages = []
        after: str | None = None
        for _ in range(5):  # bounded: a cursor that is ignored must fail the test, not hang it
            params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
            page = client.get("/batches", params=params).json()
            assert page["object"] == "list"
            ids = [b["id"] for b in page["data"]]
            assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])
            seen += ids
            pages.append(page["has_more"])
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == created[::-1]
        assert pages == [True, True, False]
        assert len(client.get("/batches").json()["data"]) == 5  # default limit 20
        assert error_of(client.get("/batches", params={"limit": 0}), 400)["param"] == "limit"


def test_cancel_mid_way_keeps_the_answers_so_far_and_reports_the_rest() -> None:
    clock = SimClock()
    with simulator(clock, validating_s=1, seconds_per_request=1, cancelling_s=2) as (client, sim):
        batch = submit(client, [request_line(i) for i in range(10)])
        clock.now += 5  # 4 lines answered
        cancelling = client.post(f"/batches/{batch['id']}/cancel").json()
        assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] == batch["created_at"] + 5
        clock.now += 1
        assert get(client, batch["id"])["status"] == "cancelling"
        clock.now += 1
        cancelled = get(client, batch["id"])
        assert client.post(f"/batches/{batch['id']}/cancel").json()["status"] == "cancelled"  # idempotent
        output = records(client, cancelled["output_file_id"])
        errors = records(client, cancelled["error_file_id"])
        assert sim.stats.batches_cancelled == 1
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"] == batch["created_at"] + 7
    assert sorted(r["custom_id"] for r in output) == [f"line-{i}" for i in range(4)]
    assert sorted(r["custom_id"] for r in errors) == sorted(f"line-{i}" for i in range(4, 10))
    assert {r["error"]["code"] for r in errors} == {"batch_cancelled"}
    assert all(r["response"] is None for r in errors)
    assert cancelled["request_counts"] == {"total": 10, "completed": 4, "failed": 6}


def test_a_finished_batch_cannot_be_cancelled() -> None:
    clock = SimClock()
    with simulator(clock) as (client, sim):
        batch = submit(client, [request_line(0)])
        clock.now += 1
        assert get(client, batch["id"])["status"] == "completed"
        assert error_of(client.post(f"/batches/{batch['id']}/cancel"), 400)["code"] == "invalid_state"
        assert sim.stats.batches_cancelled == 0


def test_expiry_keeps_partial_results_and_reports_the_rest_as_batch_expired() -> None:
    clock = SimClock()
    with simulator(clock, validating_s=1, seconds_per_request=1, expire_after_s=5) as (client, _):
        batch = submit(client, [request_line(i) for i in range(10)])
        clock.now += 4.9
        assert get(client, batch["id"])["status"] == "in_progress"
        clock.now += 0.1
        expired = get(client, batch["id"])
        output = records(client, expired["output_file_id"])
        errors = records(client, expired["error_file_id"])
    assert expired["status"] == "expired" and expired["expired_at"] == expired["expires_at"]
    assert expired["completed_at"] is None and expired["finalizing_at"] is None
    assert sorted(r["custom_id"] for r in output) == [f"line-{i}" for i in range(4)]
    assert sorted(r["custom_id"] for r in errors) == sorted(f"line-{i}" for i in range(4, 10))
    assert {r["error"]["code"] for r in errors} == {"batch_expired"}
    assert expired["request_counts"] == {"total": 10, "completed": 4, "failed": 6}


def run_with_failures(seed: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    clock = SimClock()
    with simulator(clock, seed=seed, rate_failed=0.2, failed_status=503, rate_lost=0.1) as (client, _):
        batch = submit(client, [request_line(i) for i in range(200)])
        clock.now += 10
        done = get(client, batch["id"])
        return done, records(client, done["output_file_id"]), records(client, done["error_file_id"])


def test_partial_failures_are_non_200_answers_and_lost_lines_are_in_neither_file() -> None:
    done, output, errors = run_with_failures(seed=7)
    assert done["status"] == "completed" and errors == [] and done["error_file_id"] is None
    statuses = [r["response"]["status_code"] for r in output]
    failed = [r for r in output if r["response"]["status_code"] != 200]
    assert set(statuses) == {200, 503}
    assert all(r["response"]["body"]["error"]["type"] == "server_error" for r in failed)
    lost = {f"line-{i}" for i in range(200)} - {r["custom_id"] for r in output}
    assert 0 < len(lost) < 60 and 0 < len(failed) < 80
    # request_counts agree with the files: a lost line was "completed" as far as the batch knows.
    assert done["request_counts"] == {"total": 200, "completed": 200 - len(failed), "failed": len(failed)}
    assert done["request_counts"]["completed"] == statuses.count(200) + len(lost)
    # The same seed repeats everything; another seed mistreats other lines.
    assert run_with_failures(seed=7)[1] == output
    assert {r["custom_id"] for r in run_with_failures(seed=8)[1]} != {r["custom_id"] for r in output}


def test_an_invalid_request_body_is_a_400_in_the_output_file() -> None:
    clock = SimClock()
    line = {"custom_id": "bad", "method": "POST", "url": CHAT, "body": {"model": "gpt-4o-mini"}}
    with simulator(clock) as (client, _):
        batch = submit(client, [request_line(0), line])
        clock.now += 1
        done = get(client, batch["id"])
        output = {r["custom_id"]: r["response"] for r in records(client, done["output_file_id"])}
    assert output["bad"]["status_code"] == 400 and output["bad"]["body"]["error"]["param"] == "messages"
    assert done["request_counts"] == {"total": 2, "completed": 1, "failed": 1}


def test_embeddings_batches_answer_as_the_embeddings_endpoint() -> None:
    clock = SimClock()
    line = {"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "hello"}}
    with simulator(clock) as (client, _):
        batch = submit(client, [line], endpoint="/v1/embeddings")
        clock.now += 1
        record = records(client, get(client, batch["id"])["output_file_id"])[0]
        assert record["response"]["body"] == client.post("/embeddings", json=line["body"]).json()


def test_the_openai_sdk_drives_the_whole_lifecycle_and_validates_every_object() -> None:
    openai = pytest.importorskip("openai")
    from openai.types import Batch, FileObject

    clock = SimClock()
    with simulator(clock, seconds_per_request=1) as (_, sim):
        sdk = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
        file = sdk.files.create(file=("in.jsonl", jsonl([request_line(i) for i in range(3)])), purpose="batch")
        assert FileObject.model_validate(sdk.files.with_raw_response.retrieve(file.id).http_response.json())
        batch = sdk.batches.create(input_file_id=file.id, endpoint=CHAT, completion_window="24h",
                                   metadata={"run": "r1"})
        assert batch.status == "validating"
        clock.now += 2
        cancelled = sdk.batches.cancel(batch.id)
        assert cancelled.status == "cancelling"
        clock.now += 1
        raw = sdk.batches.with_raw_response.retrieve(batch.id).http_response.json()
        final = Batch.model_validate(raw)
        assert final.status == "cancelled" and final.request_counts is not None
        assert final.request_counts.completed == 1 and final.request_counts.failed == 2
        assert [b.id for b in sdk.batches.list(limit=10)] == [batch.id]
        assert final.output_file_id is not None and final.error_file_id is not None
        assert len(sdk.files.content(final.output_file_id).content.splitlines()) == 1
        output_file = sdk.files.with_raw_response.retrieve(final.output_file_id).http_response.json()
        assert FileObject.model_validate(output_file).purpose == "batch_output"


def test_faults_apply_to_batch_routes_and_a_cut_reply_still_creates_the_batch() -> None:
    """The case an idempotent client must survive: the batch exists, the client never saw its id."""
    config = SimulatorConfig(faults=Faults(rate_truncate=0.5))  # seeded: the same fates every run
    with run_in_thread(config, clock=SimClock()) as sim, httpx.Client(base_url=sim.base_url, timeout=5) as client:

        def until_answered(send: Any) -> httpx.Response:
            for _ in range(30):
                try:
                    response: httpx.Response = send()
                    return response
                except httpx.HTTPError:
                    continue
            raise AssertionError("every attempt was cut")

        file_id = until_answered(lambda: upload(client, jsonl([request_line(0)]))).json()["id"]
        create = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h", "metadata": {"run": "r"}}
        for _ in range(30):
            try:
                client.post("/batches", json=create)
            except httpx.HTTPError:
                break  # created, but the reply was cut short
        else:
            raise AssertionError("no create was cut")
        assert sim.stats.truncations >= 1 and sim.stats.batches_created >= 1
        listed = until_answered(lambda: client.get("/batches")).json()["data"]
        assert len(listed) == sim.stats.batches_created  # found again, by its metadata
        assert all(batch["metadata"] == {"run": "r"} for batch in listed)


@pytest.mark.parametrize("settings", [
    {"seconds_per_request": -1}, {"expire_after_s": 0}, {"max_requests": 0},
    {"rate_failed": 0.6, "rate_lost": 0.5}, {"failed_status": 200},
])
def test_batches_settings_are_checked(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Batches(**settings)
