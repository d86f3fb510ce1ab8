"""Callback secrets and the delivery log through the API (no worker: messages are written
as the outbox consumers write them, attempts as the sender does): its cursor pages, its
bad parameters, and what an attempt whose outcome was never written reads as."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from shared.db import new_session, session_scope
from shared.engine.fanout import fan_out_job
from shared.models import Execution, utcnow
from shared.webhooks import enqueue
from shared.webhooks.messages import UNKNOWN_OUTCOME, MessageState, outcome_overdue
from shared.webhooks.models import WebhookDelivery, WebhookMessage, WebhookSecret
from shared.webhooks.secrets import rotate
from tests.support import Tenant


def auth(tenant: Tenant) -> dict[str, str]:
    return {"API-KEY": tenant.api_key}


def a_batch(client: FlaskClient, tenant: Tenant) -> str:
    response = client.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers=auth(tenant),
        json={"inputs": [{"a": 1}], "callbackUrl": "https://hooks.example.com/in"},
    )
    assert response.status_code == 200
    batch_id: str = response.json["batchId"]
    return batch_id


def a_batch_and_its_data_point(client: FlaskClient, tenant: Tenant) -> tuple[str, uuid.UUID]:
    """A one-input batch, fanned out (its data point exists), and its data point's id."""
    batch_id = a_batch(client, tenant)
    fan_out_job(uuid.UUID(batch_id))
    with session_scope() as session:
        (point,) = session.scalars(
            select(Execution.id).where(Execution.job_id == uuid.UUID(batch_id))
        )
    return batch_id, point


def add_message(tenant: Tenant, batch_id: str, state: str, created: datetime) -> uuid.UUID:
    with session_scope() as session:
        message = enqueue(
            session,
            organisation_id=tenant.org_id,
            job_id=uuid.UUID(batch_id),
            execution_id=None,
            event="batch.finished",
            url="https://hooks.example.com/in",
            payload={"entityId": batch_id},
            now=created,
        )
        message.state = state
        message.next_attempt_at = None
        session.flush()
        return message.id


def current_secrets(tenant: Tenant) -> list[WebhookSecret]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(WebhookSecret).where(
                    WebhookSecret.organisation_id == tenant.org_id,
                    WebhookSecret.expires_at.is_(None),
                )
            )
        )


def test_an_organisation_has_a_secret_from_the_start_and_its_owner_reads_it(
    client: FlaskClient, tenant: Tenant
) -> None:
    """No setup step: the organisation was made with its secret, and every credential of
    the organisation (its API key, a member's token) reads the same one, again and again."""
    (made,) = current_secrets(tenant)
    first = client.get("/v1/webhooks/secret", headers=auth(tenant))
    assert first.status_code == 200, first.json
    assert first.json["secret"] == made.secret and made.secret.startswith("whsec_")
    assert first.json["previousSecretsExpireAt"] is None
    assert len(base64.b64decode(made.secret.removeprefix("whsec_"))) == 24
    again = client.get("/v1/webhooks/secret", headers={"Authorization": f"Bearer {tenant.token}"})
    assert again.json == first.json
    assert client.get("/v1/webhooks/secret").status_code == 401


def test_an_organisation_without_a_secret_gets_one_when_it_is_read(
    client: FlaskClient, tenant: Tenant
) -> None:
    """An organisation made before secrets were (or by any other path) has none: the
    first read makes it, and the next reads answer the same one."""
    with session_scope() as session:
        session.execute(delete(WebhookSecret).where(WebhookSecret.organisation_id == tenant.org_id))
    first = client.get("/v1/webhooks/secret", headers=auth(tenant))
    assert first.status_code == 200 and first.json["secret"].startswith("whsec_")
    assert client.get("/v1/webhooks/secret", headers=auth(tenant)).json == first.json
    assert [s.secret for s in current_secrets(tenant)] == [first.json["secret"]]


def test_a_rotation_makes_a_new_secret_and_the_old_one_signs_24_hours_more(
    client: FlaskClient, tenant: Tenant
) -> None:
    start = client.get("/v1/webhooks/secret", headers=auth(tenant)).json["secret"]
    rotated = client.post("/v1/webhooks/secret", headers=auth(tenant))
    assert rotated.status_code == 201 and rotated.json["secret"] != start
    expires = datetime.fromisoformat(rotated.json["previousSecretsExpireAt"].replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=24)
    read = client.get("/v1/webhooks/secret", headers=auth(tenant)).json
    assert read == rotated.json
    third = client.post("/v1/webhooks/secret", headers=auth(tenant)).json
    with session_scope() as session:
        rows = session.query(WebhookSecret).filter(WebhookSecret.organisation_id == tenant.org_id)
        by_secret = {r.secret: r.expires_at for r in rows}
    assert by_secret[third["secret"]] is None  # one current secret, the others overlap
    assert by_secret[start] is not None and by_secret[rotated.json["secret"]] is not None
    assert client.post("/v1/webhooks/secret").status_code == 401


def test_resend_every_failed_callback_since_a_time(client: FlaskClient, tenant: Tenant) -> None:
    batch_id = a_batch(client, tenant)
    now = utcnow()
    old = add_message(tenant, batch_id, MessageState.FAILED, now - timedelta(days=2))
    recent = add_message(tenant, batch_id, MessageState.FAILED, now - timedelta(minutes=5))
    gone = add_message(tenant, batch_id, MessageState.GONE, now - timedelta(minutes=5))
    delivered = add_message(tenant, batch_id, MessageState.DELIVERED, now - timedelta(minutes=5))
    since = (now - timedelta(hours=1)).isoformat()
    response = client.post(
        f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries/resend",
        headers=auth(tenant),
        json={"since": since},
    )
    assert response.status_code == 200 and response.json == {"resent": 2}
    with session_scope() as session:
        states = {
            m.id: m.state
            for m in session.query(WebhookMessage).filter(
                WebhookMessage.id.in_([old, recent, gone, delivered])
            )
        }
    assert states == {
        old: MessageState.FAILED,
        recent: MessageState.SENDING,
        gone: MessageState.SENDING,
        delivered: MessageState.DELIVERED,
    }
    log = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries", headers=auth(tenant)
    ).json
    assert {m["id"] for m in log} == {str(i) for i in (old, recent, gone, delivered)}


def test_another_tenants_deliveries_are_404(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    batch_id = a_batch(client, tenant)
    message = add_message(tenant, batch_id, MessageState.FAILED, utcnow())
    theirs = f"/v1/apps/{other_tenant.project_id}"
    mine = f"/v1/apps/{tenant.project_id}"
    for method, path in [
        ("get", f"{mine}/deliveries/{message}"),
        ("post", f"{mine}/deliveries/{message}/resend"),
        ("get", f"{mine}/batches/{batch_id}/deliveries"),
        ("get", f"{theirs}/deliveries/{message}"),
    ]:
        response = getattr(client, method)(path, headers=auth(other_tenant))
        assert response.status_code == 404, (path, response.json)
    resent = client.post(f"{mine}/deliveries/{message}/resend", headers=auth(tenant))
    assert resent.status_code == 202


# -- the delivery log, in cursor pages -------------------------------------------------


def add_messages(
    tenant: Tenant,
    batch_id: str,
    count: int,
    created: datetime,
    execution_id: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """``count`` messages of the batch, all created at the same moment (ties on the time:
    the cursor's id breaks them), in one transaction."""
    with session_scope() as session:
        messages = [
            enqueue(
                session,
                organisation_id=tenant.org_id,
                job_id=uuid.UUID(batch_id),
                execution_id=execution_id,
                event="datapoint.finished",
                url="https://hooks.example.com/in",
                payload={"n": n},
                now=created,
            )
            for n in range(count)
        ]
        session.flush()
        return [m.id for m in messages]


def add_attempt(
    message_id: uuid.UUID,
    attempt: int,
    attempted_at: datetime,
    *,
    completed: bool = True,
    status_code: int | None = 200,
    error: str | None = None,
) -> None:
    """An attempt row as the sender writes it: before the request, then (if ``completed``)
    with its outcome."""
    with session_scope() as session:
        session.add(
            WebhookDelivery(
                message_id=message_id,
                attempt=attempt,
                url="https://hooks.example.com/in",
                attempted_at=attempted_at,
                status_code=status_code if completed else None,
                response_body="ok" if completed and status_code else None,
                error=error if completed else None,
                latency_ms=12 if completed else None,
                completed_at=attempted_at + timedelta(milliseconds=12) if completed else None,
            )
        )


def next_link(response: Any) -> str | None:
    """The path of the ``Link: <...>; rel="next"`` header, or None."""
    link = response.headers.get("Link")
    if link is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


def test_a_log_longer_than_a_page_is_read_whole_while_it_grows(
    client: FlaskClient, tenant: Tenant
) -> None:
    """250 callbacks created at the same moment, paged by 100 while callbacks and
    attempts are being added between the pages: each callback appears exactly once, and
    the ones added meanwhile come after (the log's order is creation)."""
    batch_id = a_batch(client, tenant)
    earlier = add_messages(tenant, batch_id, 250, utcnow() - timedelta(minutes=1))
    path = f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries"
    seen: list[str] = []
    added: list[uuid.UUID] = []
    pages = 0
    link: str | None = f"{path}?limit=100"
    while link is not None:
        response = client.get(link, headers=auth(tenant))
        assert response.status_code == 200, response.json
        assert isinstance(response.json, list) and len(response.json) <= 100
        seen += [m["id"] for m in response.json]
        link = next_link(response)
        pages += 1
        if pages <= 2:  # meanwhile: new callbacks, and new attempts of old and unread ones
            added += add_messages(tenant, batch_id, 30, utcnow())
            add_attempt(earlier[0], 1, utcnow())
            add_attempt(earlier[-1], 1, utcnow())
    assert len(seen) == len(set(seen)) == 310
    assert set(seen) == {str(i) for i in earlier + added}
    assert seen[-60:] == [s for s in seen if uuid.UUID(s) in set(added)]
    assert pages == 4


def test_the_first_page_by_default_and_a_data_points_log_pages_too(
    client: FlaskClient, tenant: Tenant
) -> None:
    batch_id, point = a_batch_and_its_data_point(client, tenant)
    add_messages(tenant, batch_id, 120, utcnow())  # the batch's own callbacks
    mine = add_messages(tenant, batch_id, 3, utcnow(), execution_id=point)
    batch_log = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries", headers=auth(tenant)
    )
    assert len(batch_log.json) == 100 and next_link(batch_log) is not None
    path = f"/v1/apps/{tenant.project_id}/jobs/{point}/deliveries"
    seen = []
    link: str | None = f"{path}?limit=2"
    while link is not None:
        response = client.get(link, headers=auth(tenant))
        assert response.status_code == 200, response.json
        seen += [m["id"] for m in response.json]
        link = next_link(response)
    assert sorted(seen) == sorted(str(m) for m in mine)  # same time: in id order
    last = client.get(path, headers=auth(tenant))
    assert len(last.json) == 3 and "Link" not in last.headers


def crafted_cursor(value: Any, row_id: str = "0c4f5a40-3b1e-4c3e-9f55-3c1f0c8d9e10") -> str:
    """A token shaped like the API's cursors, made by hand (a client may try anything)."""
    payload = {"s": "created", "d": False, "v": value, "id": row_id}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ({"limit": 0}, "limit: "),
        ({"limit": 501}, "limit: "),
        ({"limit": "ten"}, "limit: "),
        ({"cursor": "not a cursor"}, None),
        ({"cursor": crafted_cursor("yesterday")}, None),
        ({"cursor": crafted_cursor(12)}, None),
        ({"cursor": crafted_cursor({"t": "2026-12-01T00:00:00"}, "x")}, None),
        ({"cursor": ""}, "cursor: "),
        ({"page": 2}, "query.page: Unknown query parameter"),
        ({"size": 10, "limit": 10}, "query.size: Unknown query parameter"),
    ],
)
def test_bad_paging_parameters_are_400_in_the_envelope(
    client: FlaskClient, tenant: Tenant, query: dict[str, Any], detail: str | None
) -> None:
    batch_id, point = a_batch_and_its_data_point(client, tenant)
    add_messages(tenant, batch_id, 3, utcnow())
    for path in (f"batches/{batch_id}/deliveries", f"jobs/{point}/deliveries"):
        answer = client.get(
            f"/v1/apps/{tenant.project_id}/{path}", headers=auth(tenant), query_string=query
        )
        assert answer.status_code == 400, answer.get_data(as_text=True)
        body = answer.json
        assert set(body) == {"statusCode", "message", "details"} and body["statusCode"] == 400
        if detail is None:
            assert body["message"] == "cursor is not a cursor from a previous answer"
        else:
            assert any(d.startswith(detail) for d in body["details"]), body


def test_an_attempt_without_an_outcome_reads_as_sending_then_unknown(
    client: FlaskClient, tenant: Tenant
) -> None:
    """An attempt is logged before its request leaves: until its outcome is written it is
    under way; older than the time a sender takes at most to write it (its turn and its
    request, each within the delivery timeout, and the writing) its sender stopped, and the log says the outcome is unknown, not "no attempt"."""
    batch_id = a_batch(client, tenant)
    stopped, under_way = add_messages(tenant, batch_id, 2, utcnow())
    long_ago = utcnow() - outcome_overdue() - timedelta(seconds=1)
    add_attempt(stopped, 1, long_ago - timedelta(minutes=1), status_code=500)
    add_attempt(
        stopped, 2, long_ago - timedelta(seconds=30), status_code=None, error="TimeoutError"
    )
    add_attempt(stopped, 3, long_ago, completed=False)
    add_attempt(stopped, 4, utcnow())
    add_attempt(under_way, 1, utcnow(), completed=False)
    log = client.get(
        f"/v1/apps/{tenant.project_id}/batches/{batch_id}/deliveries", headers=auth(tenant)
    ).json
    attempts = {m["id"]: m["attempts"] for m in log}
    read = [
        (a["attempt"], a["outcome"], a["statusCode"], a["error"]) for a in attempts[str(stopped)]
    ]
    assert read == [
        (1, "answered", 500, None),
        (2, "error", None, "TimeoutError"),
        (3, "unknown", None, UNKNOWN_OUTCOME),
        (4, "answered", 200, None),
    ]
    assert UNKNOWN_OUTCOME.startswith("unknown: the sender stopped before the answer was recorded")
    assert [a["completedAt"] is None for a in attempts[str(stopped)]] == [False, False, True, False]
    (sending,) = attempts[str(under_way)]
    assert (sending["outcome"], sending["error"], sending["completedAt"]) == ("sending", None, None)
    one = client.get(f"/v1/apps/{tenant.project_id}/deliveries/{stopped}", headers=auth(tenant))
    assert [a["outcome"] for a in one.json["attempts"]] == [
        "answered",
        "error",
        "unknown",
        "answered",
    ]


def test_rotations_at_once_take_turns(tenant: Tenant) -> None:
    """A rotation waits for one under way, then expires the secret it made: one current
    secret, never a conflict (the second would insert beside the first's new secret)."""
    holder = new_session()
    holder.begin()
    first = rotate(holder, tenant.org_id).secret.secret
    outcome: list[Exception | str] = []

    def rotate_too() -> None:
        try:
            with session_scope() as session:
                outcome.append(rotate(session, tenant.org_id).secret.secret)
        except Exception as exc:
            outcome.append(exc)

    other = threading.Thread(target=rotate_too)
    other.start()
    other.join(0.5)
    assert other.is_alive()  # waits for the rotation under way
    holder.commit()
    holder.close()
    other.join(10)
    (second,) = outcome
    assert isinstance(second, str) and second != first, second
    assert [s.secret for s in current_secrets(tenant)] == [second]
