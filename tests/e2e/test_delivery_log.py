"""The delivery log tells the truth: a sender process killed (SIGKILL) while the receiver holds its
requests open leaves each of them logged as an attempt whose outcome is unknown, and the
retry is the next attempt; and the log of a 50,000-callback batch is read page by page by
the real API process in bounded memory (its RSS is printed: ``pytest -s``)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from shared.db import session_scope
from shared.models import utcnow
from shared.settings import reset_settings_cache
from shared.webhooks import enqueue
from shared.webhooks.messages import UNKNOWN_OUTCOME, MessageState
from shared.webhooks.models import WebhookDelivery, WebhookMessage
from tests.fakes import FakeWebhookReceiver, Hang, Reply
from tests.support import Tenant, running_api, running_sender, wait_until

pytestmark = pytest.mark.slow

CALLBACKS = 20
SENDER = {
    "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # the receiver listens on 127.0.0.1
    # Long enough for the kill to land while every request is held; the lease a killed
    # round leaves is 2 x 5 + 30 s.
    "JOBYARD_WEBHOOK_TIMEOUT_SECONDS": "5",
    "JOBYARD_WEBHOOK_RETRY_SCHEDULE": "[0, 0.3, 0.3, 0.3]",
    "JOBYARD_WEBHOOK_POLL_SECONDS": "1",  # the restarted sender looks for the expired leases
}


def a_batch(client: FlaskClient, tenant: Tenant) -> uuid.UUID:
    """A batch without a callback URL of its own: the test writes its callbacks."""
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers={"API-KEY": tenant.api_key},
        json={"inputs": [{"a": 1}], "pending": True},
    )
    assert response.status_code == 200, response.json
    return uuid.UUID(response.json["batchId"])


def add_callbacks(tenant: Tenant, batch_id: uuid.UUID, url: str, count: int) -> list[uuid.UUID]:
    """``count`` callbacks of the batch to ``url``, due now (as the outbox consumer writes
    them), all there before the sender's round takes them."""
    with session_scope() as session:
        messages = [
            enqueue(
                session,
                organisation_id=tenant.org_id,
                job_id=batch_id,
                execution_id=None,
                event="datapoint.finished",
                url=url,
                payload={"n": n},
                now=utcnow(),
            )
            for n in range(count)
        ]
        session.flush()
        return [m.id for m in messages]


def logged_attempts(batch_id: uuid.UUID) -> list[tuple[str, int, bool]]:
    """(webhook-id, attempt number, outcome written) of every attempt in the log."""
    with session_scope() as session:
        rows = session.execute(
            select(
                WebhookDelivery.message_id, WebhookDelivery.attempt, WebhookDelivery.completed_at
            )
            .join(WebhookMessage, WebhookMessage.id == WebhookDelivery.message_id)
            .where(WebhookMessage.job_id == batch_id)
        ).all()
    return [(str(m), attempt, completed is not None) for m, attempt, completed in rows]


def states(batch_id: uuid.UUID) -> Counter[str]:
    with session_scope() as session:
        return Counter(
            session.scalars(select(WebhookMessage.state).where(WebhookMessage.job_id == batch_id))
        )


def api_log(client: FlaskClient, tenant: Tenant, batch_id: uuid.UUID) -> list[dict[str, Any]]:
    response = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries",
        headers={"API-KEY": tenant.api_key},
    )
    assert response.status_code == 200, response.json
    assert "Link" not in response.headers  # one page holds them all
    log: list[dict[str, Any]] = response.json
    return log


@pytest.fixture
def sender_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The API reads the log with the sender's settings (its timeout says when an
    attempt's outcome is overdue)."""
    for name, value in SENDER.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield
    monkeypatch.undo()
    reset_settings_cache()


@pytest.mark.usefixtures("sender_settings")
def test_a_sender_killed_mid_delivery_leaves_every_attempt_in_the_log(
    client: FlaskClient, tenant: Tenant, tmp_path: Path
) -> None:
    batch_id = a_batch(client, tenant)
    (tmp_path / "killed").mkdir()
    (tmp_path / "restarted").mkdir()
    with FakeWebhookReceiver(default=Hang(seconds=300)) as receiver:
        callbacks = add_callbacks(tenant, batch_id, receiver.hook_url, CALLBACKS)
        with running_sender(tmp_path / "killed", **SENDER) as sender:
            receiver.wait_for_requests(CALLBACKS, timeout=60)  # each one held open
            sender.kill()  # SIGKILL: after sending, before any answer
        receiver.default = Reply()  # from now on the receiver answers 200

        # Every request that left is in the log, without an outcome: under way at first,
        # then (older than the timeout) unknown, in the API's words.
        assert sorted(logged_attempts(batch_id)) == sorted((str(c), 1, False) for c in callbacks)
        assert {a["outcome"] for m in api_log(client, tenant, batch_id) for a in m["attempts"]} == {
            "sending"
        }
        wait_until(
            lambda: all(
                [a["outcome"] for a in m["attempts"]] == ["unknown"]
                for m in api_log(client, tenant, batch_id)
            ),
            30,
            "the killed attempts to read unknown",
        )

        # A sender again: when the killed round's lease ends, each callback is sent again,
        # with the same webhook-id, as attempt 2.
        with running_sender(tmp_path / "restarted", **SENDER):
            wait_until(
                lambda: states(batch_id) == {MessageState.DELIVERED: CALLBACKS},
                120,
                "every callback delivered after the restart",
            )
        received = Counter(receiver.webhook_ids())

    logged = logged_attempts(batch_id)
    assert len(logged) == sum(received.values()) == 2 * CALLBACKS
    for callback in map(str, callbacks):
        numbers = sorted(attempt for message, attempt, _ in logged if message == callback)
        assert numbers == list(range(1, received[callback] + 1)) == [1, 2], callback
    for message in api_log(client, tenant, batch_id):
        first, second = message["attempts"]
        assert (first["attempt"], first["outcome"], first["statusCode"]) == (1, "unknown", None)
        assert first["error"] == UNKNOWN_OUTCOME and first["completedAt"] is None
        assert (second["attempt"], second["outcome"], second["statusCode"]) == (2, "answered", 200)


# -- the log of a big batch, page by page ----------------------------------------------

BIG_BATCH = 50_000


def add_delivered_callbacks(tenant: Tenant, batch_id: uuid.UUID, count: int) -> None:
    """``count`` delivered callbacks of the batch, one answered attempt each, shaped like a
    data point's (written in bulk: the sender's own pace is not what is measured)."""
    now = utcnow()
    for start in range(0, count, 5000):
        messages, attempts = [], []
        for n in range(start, min(start + 5000, count)):
            message_id, point = uuid.uuid4(), str(uuid.uuid4())
            messages.append(
                {
                    "id": message_id,
                    "organisation_id": tenant.org_id,
                    "job_id": batch_id,
                    "execution_id": uuid.UUID(point),
                    "event": "datapoint.finished",
                    "url": "https://hooks.example.com/in",
                    "payload": {"id": point, "uuid": point, "state": "COMPLETED", "n": n},
                    "state": MessageState.DELIVERED,
                    "attempts": 1,
                    "next_attempt_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            attempts.append(
                {
                    "id": uuid.uuid4(),
                    "message_id": message_id,
                    "attempt": 1,
                    "url": "https://hooks.example.com/in",
                    "status_code": 200,
                    "response_body": "ok",
                    "latency_ms": 4,
                    "attempted_at": now,
                    "completed_at": now,
                }
            )
        with session_scope() as session:
            session.execute(insert(WebhookMessage), messages)
            session.execute(insert(WebhookDelivery), attempts)


def api_workers() -> list[psutil.Process]:
    """The gunicorn worker processes this test started (children of its master)."""
    masters = [
        p
        for p in psutil.Process().children(recursive=True)
        if "gunicorn" in " ".join(p.cmdline()) and p.parent().pid == psutil.Process().pid
    ]
    return [worker for master in masters for worker in master.children()]


@pytest.fixture
def big_batch(client: FlaskClient, tenant: Tenant) -> Iterator[uuid.UUID]:
    batch_id = a_batch(client, tenant)
    add_delivered_callbacks(tenant, batch_id, BIG_BATCH)
    with session_scope() as session:
        count = session.scalar(
            select(func.count())
            .select_from(WebhookMessage)
            .where(WebhookMessage.job_id == batch_id)
        )
    assert count == BIG_BATCH
    yield batch_id


def test_the_log_of_a_50000_callback_batch_is_read_page_by_page_in_bounded_memory(
    tenant: Tenant, big_batch: uuid.UUID, tmp_path: Path
) -> None:
    with running_api(tmp_path) as base_url:
        (worker,) = api_workers()
        before = worker.memory_info().rss
        peak, pages, seen, body_bytes = before, 0, set(), 0
        started = time.monotonic()
        link: str | None = f"/v1/apps/{tenant.project_id}/batches/{big_batch}/deliveries?limit=500"
        with httpx.Client(base_url=base_url, headers={"API-KEY": tenant.api_key}) as http:
            while link is not None:
                response = http.get(link, timeout=60)
                assert response.status_code == 200, response.text
                pages += 1
                body_bytes += len(response.content)
                seen.update(m["id"] for m in response.json())
                peak = max(peak, worker.memory_info().rss)
                link = response.links.get("next", {}).get("url")
        elapsed = time.monotonic() - started
    mb = 2**20
    print(
        f"\ndelivery log of {BIG_BATCH} callbacks: {pages} pages of 500, "
        f"{body_bytes / mb:.1f} MB in all, {elapsed:.1f} s; API worker RSS "
        f"{before / mb:.0f} MB before, {peak / mb:.0f} MB at most while paging "
        f"(+{(peak - before) / mb:.0f} MB)"
    )
    assert len(seen) == BIG_BATCH and pages == BIG_BATCH // 500
    # A page is at most 500 callbacks: what the process grows by does not depend on the
    # batch's size (the whole log at once grew it to 282 MB; issue 14).
    assert peak - before < 64 * mb
