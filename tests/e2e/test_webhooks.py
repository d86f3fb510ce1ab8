"""Batch callbacks end to end: a real worker, a real HTTP receiver on loopback, signatures
checked with the ``standardwebhooks`` library (tests/e2e/test_callbacks.py checks them with
an HMAC of its own), retries, 410, rotation, the delivery log and resend."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook

from tests.support import Tenant, running_worker, wait_for_job, wait_until
from tests.webhook_signatures import verify

pytestmark = pytest.mark.slow

FAST_RETRIES = {
    "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # the receiver listens on 127.0.0.1
    "JOBYARD_WEBHOOK_RETRY_SCHEDULE": "[0, 0.3, 0.3, 0.3]",
}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A callback receiver: records every request; ``answer(request) -> status``."""

    url: str = ""
    answer: Callable[[Received], int] = lambda _: 200
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, predicate: Callable[[Any], bool]) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if predicate(r.json)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received = Received(
                {k.lower(): v for k, v in self.headers.items()}, body, 0, time.time()
            )
            with state.lock:
                status = state.answer(received)
                received.status = status
                state.requests.append(received)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    yield state
    server.shutdown()
    server.server_close()


def the_secret(client: FlaskClient, tenant: Tenant) -> str:
    """The organisation's signing secret: it has one from the start (no setup step)."""
    response = client.get("/v1/webhooks/secret", headers={"API-KEY": tenant.api_key})
    assert response.status_code == 200, response.json
    secret: str = response.json["secret"]
    assert secret.startswith("whsec_")
    return secret


def rotated_secret(client: FlaskClient, tenant: Tenant) -> str:
    response = client.post("/v1/webhooks/secret", headers={"API-KEY": tenant.api_key})
    assert response.status_code == 201, response.json
    secret: str = response.json["secret"]
    return secret


def submit(client: FlaskClient, tenant: Tenant, n: int, url: str) -> str:
    body = {"inputs": [{"text": f"item {i}"} for i in range(n)], "callbackUrl": url}
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs", headers={"API-KEY": tenant.api_key}, json=body
    )
    assert response.status_code == 200, response.json
    batch_id: str = response.json["batchId"]
    return batch_id


def is_batch(payload: Any) -> bool:
    return payload.get("entityType") == "batch"


def whole_log(client: FlaskClient, tenant: Tenant, path: str) -> list[dict[str, Any]]:
    """Every callback of a delivery log (``path``), page after page (``Link: rel=next``)."""
    messages: list[dict[str, Any]] = []
    link: str | None = path
    while link is not None:
        response = client.get(link, headers={"API-KEY": tenant.api_key})
        assert response.status_code == 200, response.json
        messages += response.json
        header = response.headers.get("Link")
        link = header.split(">", 1)[0].lstrip("<") if header else None
    return messages


def test_a_batch_of_100_calls_back_per_data_point_and_once_for_the_batch(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, receiver: Receiver
) -> None:
    secret = the_secret(client, tenant)
    batch_failures = {"left": 2}

    def answer(request: Received) -> int:  # the batch callback fails twice, then lands
        if is_batch(request.json) and batch_failures["left"] > 0:
            batch_failures["left"] -= 1
            return 500
        return 200

    receiver.answer = answer
    headers = {"API-KEY": tenant.api_key}
    with running_worker(tmp_path, concurrency=8, **FAST_RETRIES):
        batch_id = submit(client, tenant, 100, receiver.url)
        job = wait_for_job(batch_id, timeout=60)
        wait_until(lambda: len(receiver.of(lambda p: not is_batch(p))) >= 100, 30, "100 callbacks")
        wait_until(
            lambda: any(r.status == 200 for r in receiver.of(is_batch)), 30, "the batch callback"
        )
        points = receiver.of(lambda p: not is_batch(p))
        # A resend arrives again, with the same webhook-id.
        point_id = points[0].json["id"]
        (message,) = client.get(
            f"/v1/apps/{tenant.project_id}/jobs/{point_id}/deliveries", headers=headers
        ).json
        before = len(receiver.requests)
        resent = client.post(
            f"/v1/apps/{tenant.project_id}/deliveries/{message['id']}/resend", headers=headers
        )
        assert resent.status_code == 202
        wait_until(lambda: len(receiver.requests) > before, 20, "the resent callback")
    again = receiver.requests[before]
    assert again.headers["webhook-id"] == message["id"] and again.json["id"] == point_id

    assert job.status == "completed"
    assert len({r.json["id"] for r in points}) == 100
    assert all(r.json["state"] == "COMPLETED" and r.json["uuid"] == r.json["id"] for r in points)
    assert all(r.json["action"] for r in points)
    batch_calls = receiver.of(is_batch)
    assert [r.status for r in batch_calls] == [500, 500, 200]
    assert batch_calls[-1].json == {
        "version": "2",
        "entityType": "batch",
        "entityId": batch_id,
        "state": "COMPLETED",
        "appId": str(tenant.project_id),
    }
    verifier = Webhook(secret)
    for request in receiver.requests:  # every delivery verifies with the library
        verifier.verify(request.body, request.headers)
    assert len({r.headers["webhook-id"] for r in batch_calls}) == 1  # one message, retried

    # The delivery log: every attempt of the batch callback, with its answer.
    log = whole_log(client, tenant, f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries")
    assert len(log) == 101 and len({m["id"] for m in log}) == 101
    (batch_message,) = [m for m in log if m["event"] == "batch.finished"]
    assert batch_message["state"] == "delivered"
    assert [a["statusCode"] for a in batch_message["attempts"]] == [500, 500, 200]
    assert [a["attempt"] for a in batch_message["attempts"]] == [1, 2, 3]
    assert all(a["outcome"] == "answered" for a in batch_message["attempts"])
    assert all(a["latencyMs"] is not None for a in batch_message["attempts"])
    one = client.get(
        f"/v1/apps/{tenant.project_id}/deliveries/{batch_message['id']}", headers=headers
    ).json
    assert one["id"] == batch_message["id"] and len(one["attempts"]) == 3


def test_410_stops_and_rotation_signs_with_both_secrets(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, receiver: Receiver
) -> None:
    old = the_secret(client, tenant)
    new = rotated_secret(client, tenant)  # the old one still signs for 24 h
    receiver.answer = lambda request: 410 if is_batch(request.json) else 200
    with running_worker(tmp_path, concurrency=4, **FAST_RETRIES):
        batch_id = submit(client, tenant, 2, receiver.url)
        wait_for_job(batch_id, timeout=60)
        wait_until(lambda: len(receiver.of(is_batch)) >= 1, 30, "the batch callback")
        time.sleep(1.5)  # long enough for three more attempts, had 410 not stopped them
    assert len(receiver.of(is_batch)) == 1
    for request in receiver.requests:
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):  # the library, and an HMAC written from the spec
            Webhook(secret).verify(request.body, request.headers)
            verify(secret, request.headers, request.body)
    log = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries",
        headers={"API-KEY": tenant.api_key},
    ).json
    (gone,) = [m for m in log if m["event"] == "batch.finished"]
    assert gone["state"] == "gone" and len(gone["attempts"]) == 1


def test_a_private_callback_address_is_refused_and_logged(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, receiver: Receiver
) -> None:
    with running_worker(tmp_path, concurrency=2, JOBYARD_ALLOW_PRIVATE_URLS="false"):
        batch_id = submit(client, tenant, 1, receiver.url)
        wait_for_job(batch_id, timeout=60)
        headers = {"API-KEY": tenant.api_key}
        path = f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries"
        wait_until(
            lambda: (
                len(client.get(path, headers=headers).json) == 2
                and all(m["attempts"] for m in client.get(path, headers=headers).json)
            ),
            30,
            "both callbacks tried",
        )
    assert receiver.requests == []  # nothing reached the private address
    for message in client.get(path, headers=headers).json:
        assert message["state"] == "gone"
        assert "non-public address" in message["attempts"][0]["error"]
