"""Callbacks a receiver can trust, end to end (a real worker, real receivers on loopback,
signatures checked by an HMAC written out from the Standard Webhooks specification):
every callback is signed without any setup step, a data point's callback carries its
response (a link above the size cap), and a batch's callback comes after every one of its
data points' callbacks was settled — 20 runs out of 20, with receivers that answer at
varied speeds and fail some first attempts."""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.fakes import Disconnect, Fail, FakeWebhookReceiver, Hang, RecordedRequest, Reply
from tests.fakes.behaviours import Behaviour
from tests.support import Tenant, running_worker, wait_until
from tests.webhook_signatures import SignatureRefused, signature, verify

pytestmark = pytest.mark.slow

RUNS = 20
INPUTS = 20
CAP = 2000  # bytes of JSON: the responses of the long inputs are above it
PUBLIC_URL = "https://jobs.example.test"
STRANGER = "whsec_" + base64.b64encode(b"not the organisation's key").decode()
SENDER = {
    "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # the receivers listen on 127.0.0.1
    "JOBYARD_WEBHOOK_RETRY_SCHEDULE": "[0, 0.1, 0.1, 0.1, 0.1, 0.1]",
    "JOBYARD_CALLBACK_MAX_RESPONSE_BYTES": str(CAP),
    "JOBYARD_PUBLIC_URL": PUBLIC_URL,
}


def auth(tenant: Tenant) -> dict[str, str]:
    return {"API-KEY": tenant.api_key}


def inputs(run: int) -> list[dict[str, str]]:
    """Twenty inputs; every fifth is long enough for its response to pass the cap."""
    return [
        {"text": f"run {run} input {i} " + ("lorem ipsum " * (200 if i % 5 == 0 else 2))}
        for i in range(INPUTS)
    ]


def varied(run: int) -> Callable[[RecordedRequest, int], Behaviour]:
    """A receiver's answers, by callback and attempt (repeatable per run): a first attempt
    fails (500, 503, a dropped connection) one time in three, and many answers are slow."""

    def answer(request: RecordedRequest, attempt: int) -> Behaviour:
        fate = random.Random(f"{run}:{request.headers.get('webhook-id')}:{attempt}")
        roll = fate.random()
        if attempt == 1 and roll < 0.2:
            return Fail(fate.choice([500, 503]))
        if attempt == 1 and roll < 0.33:
            return Disconnect()
        if roll < 0.7:
            return Hang(fate.uniform(0.005, 0.1), then=Reply())
        return Reply()

    return answer


def subject(request: RecordedRequest) -> str:
    """The data point's or the batch's id."""
    payload = request.json or {}
    return str(payload.get("entityId") or payload["id"])


def is_batch(request: RecordedRequest) -> bool:
    return bool(request.json and request.json.get("entityType") == "batch")


def one_run(
    client: FlaskClient, tenant: Tenant, secret: str, run: int
) -> tuple[int, int, list[RecordedRequest]]:
    """One batch of twenty to a fresh receiver; checks every callback. Returns how many
    responses came inline and by link, and the requests."""
    with FakeWebhookReceiver(answer=varied(run)) as receiver:
        created = client.post(
            f"/v1/apps/{tenant.project_id}/jobs",
            headers=auth(tenant),
            json={"inputs": inputs(run), "callbackUrl": receiver.hook_url},
        )
        assert created.status_code == 200, created.json
        batch_id = created.json["batchId"]
        wait_until(
            lambda: any(is_batch(a.request) and a.status == 200 for a in receiver.answered),
            60,
            f"run {run}: the batch's callback delivered",
        )
        requests, answered = receiver.requests, list(receiver.answered)

    for request in requests:  # every one signed, by the organisation's one secret
        verify(secret, request.headers, request.body)

    points = [r for r in requests if not is_batch(r)]
    batch = [r for r in requests if is_batch(r)]
    delivered = {subject(a.request): a.request.json for a in answered if a.status == 200}
    assert len({p.json["id"] for p in points}) == INPUTS
    assert len(delivered) == INPUTS + 1  # each data point's, and the batch's

    # The batch's callback: after every data point's request, and after the answer to each.
    first_batch = min(r.received_monotonic for r in batch)
    last_point_answer = max(a.at_monotonic for a in answered if not is_batch(a.request))
    assert max(p.received_monotonic for p in points) < first_batch, f"run {run}"
    assert last_point_answer < first_batch, f"run {run}"
    assert [is_batch(r) for r in requests][-len(batch) :] == [True] * len(batch)
    assert batch[-1].json == {
        "version": "2",
        "entityType": "batch",
        "entityId": batch_id,
        "state": "COMPLETED",
        "appId": str(tenant.project_id),
    }

    inline = linked = 0
    for point_id, payload in delivered.items():
        if point_id == batch_id:
            continue
        path = f"/v1/apps/{tenant.project_id}/jobs/{point_id}/response"
        answer = client.get(path, headers=auth(tenant))
        assert answer.status_code == 200
        assert payload["state"] == "COMPLETED" and payload["uuid"] == point_id
        assert payload["action"] == "STATE_CHANGE"
        assert payload["responseUrl"] == PUBLIC_URL + path
        size = len(json.dumps(answer.json, separators=(",", ":")).encode())
        if payload["responseIncluded"]:
            inline += 1
            assert payload["response"] == answer.json and size <= CAP
        else:
            linked += 1
            assert "response" not in payload and size > CAP
    return inline, linked, requests


def test_twenty_batches_every_callback_signed_with_its_result_and_the_batch_last(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    # No setup step: the organisation has had its secret since it was made.
    secret = client.get("/v1/webhooks/secret", headers=auth(tenant)).json["secret"]
    failed_first = 0
    with running_worker(tmp_path, concurrency=8, **SENDER):
        for run in range(RUNS):
            inline, linked, requests = one_run(client, tenant, secret, run)
            assert (inline, linked) == (16, 4), f"run {run}"
            failed_first += len(requests) - len({r.headers["webhook-id"] for r in requests})
    assert failed_first >= RUNS  # receivers did fail first attempts, in every run on average

    # The receiver's check refuses what the secret did not sign: a forged body, a
    # re-timestamped request (a replay made to look fresh), an old one replayed as is.
    request = requests[0]
    headers, body = dict(request.headers), request.body
    webhook_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    verify(secret, headers, body)
    forged = body.replace(b'"COMPLETED"', b'"FAILED"')
    assert forged != body
    refused: list[tuple[dict[str, str], bytes, float | None]] = [
        (headers, forged, None),
        ({**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 60)}, body, None),
        (headers, body, int(headers["webhook-timestamp"]) + 301.0),
        (
            {**headers, "webhook-signature": signature(STRANGER, webhook_id, timestamp, body)},
            body,
            None,
        ),
        ({k: v for k, v in headers.items() if k != "webhook-signature"}, body, None),
    ]
    for bad_headers, bad_body, now in refused:
        with pytest.raises(SignatureRefused):
            verify(secret, bad_headers, bad_body, now)


def test_a_data_point_canceled_calls_back_canceled_and_the_batch_after_it(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    """A parked data point canceled while the others run: its callback says CANCELED with
    its (empty) response, and the batch's still comes last."""
    with FakeWebhookReceiver() as receiver, running_worker(tmp_path, concurrency=4, **SENDER):
        created = client.post(
            f"/v1/apps/{tenant.project_id}/jobs",
            headers=auth(tenant),
            json={
                "inputs": [{"text": "one"}, {"text": "two"}],
                "callbackUrl": receiver.hook_url,
                "pending": True,
            },
        )
        batch_id = created.json["batchId"]
        points = wait_for_points(client, tenant, batch_id, 2)
        queued = client.post(
            f"/v1/apps/{tenant.project_id}/jobs/{points[0]}/queue", headers=auth(tenant)
        )
        assert queued.status_code == 200, queued.json
        canceled = client.post(
            f"/v1/apps/{tenant.project_id}/jobs/{points[1]}/cancel", headers=auth(tenant)
        )
        assert canceled.status_code == 200, canceled.json
        receiver.wait_for_requests(3, timeout=60)
    states = {subject(r): r.json["state"] for r in receiver.requests}
    assert states == {
        str(points[0]): "COMPLETED",
        str(points[1]): "CANCELED",
        batch_id: "PARTIAL_FAILURE",
    }
    assert is_batch(receiver.requests[-1])
    (canceled_call,) = [r for r in receiver.requests if r.json.get("id") == str(points[1])]
    assert canceled_call.json["response"]["response"] is None
    assert canceled_call.json["response"]["status"] == "CANCELED"


def wait_for_points(client: FlaskClient, tenant: Tenant, batch_id: str, n: int) -> list[Any]:
    """The batch's data points' ids, in input order, once its fan-out wrote them."""
    found: list[Any] = []

    def listed() -> bool:
        page = client.get(
            f"/v1/apps/{tenant.project_id}/jobs",
            headers=auth(tenant),
            query_string={"size": 50, "sortBy": "created"},
        ).json["jobs"]
        found[:] = [uuid.UUID(p["id"]) for p in page if p["batchId"] == batch_id]
        return len(found) == n

    wait_until(listed, 30, "the data points written")
    return found
