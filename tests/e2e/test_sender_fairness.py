"""The webhook sender process against receivers that misbehave (real sender processes,
receivers on loopback): one tenant's hanging receiver, thousands of messages deep, does
not hold up another tenant's callbacks, and holds no more than its bound of requests; a
healthy receiver's callbacks share a few kept-alive connections; a failing receiver and
one that does not resolve are backed off whole by their breaker (their messages wait,
attempts unspent) until a probe gets an answer; two senders at once send each message
once."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from shared.accounts.organisations import create_organisation
from shared.db import session_scope
from shared.models import utcnow
from shared.webhooks import NewMessage, enqueue_all
from shared.webhooks.messages import MessageState
from shared.webhooks.models import WebhookMessage, WebhookReceiver
from shared.webhooks.receivers import origin_of
from tests.engine.conftest import make_job
from tests.fakes import Fail, FakeWebhookReceiver, Hang, Reply
from tests.support import running_sender, wait_until

pytestmark = pytest.mark.slow

BOUND = 8  # requests in flight per receiver and sender
SENDER = {
    "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # the receivers listen on 127.0.0.1
    "JOBYARD_WEBHOOK_RECEIVER_CONCURRENCY": str(BOUND),
    "JOBYARD_WEBHOOK_POLL_SECONDS": "0.5",
}


def organisation(name: str) -> uuid.UUID:
    with session_scope() as session:
        return create_organisation(session, name).id


def write_messages(organisation_id: uuid.UUID, url: str, count: int) -> uuid.UUID:
    """``count`` callbacks of a fresh job of the organisation to ``url``, due now; the
    job's id. Thousands at once are inserted in bulk, as the finish batches write them."""
    job_id, now = make_job(organisation_id, count), utcnow()
    if count <= 100:
        with session_scope() as session:
            enqueue_all(
                session,
                [
                    NewMessage(organisation_id, job_id, None, "test.event", url, {"n": n})
                    for n in range(count)
                ],
                now,
            )
        return job_id
    rows = [
        {
            "id": uuid.uuid4(),
            "organisation_id": organisation_id,
            "job_id": job_id,
            "event": "test.event",
            "url": url,
            "receiver": origin_of(url),
            "payload": {"n": n},
            "state": MessageState.SENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    with session_scope() as session:
        session.execute(insert(WebhookMessage), rows)
    return job_id


def states(job_id: uuid.UUID) -> Counter[str]:
    with session_scope() as session:
        return Counter(
            session.scalars(select(WebhookMessage.state).where(WebhookMessage.job_id == job_id))
        )


def attempts_spent(job_id: uuid.UUID) -> int:
    with session_scope() as session:
        return int(
            session.scalar(
                select(func.sum(WebhookMessage.attempts)).where(WebhookMessage.job_id == job_id)
            )
            or 0
        )


def breaker(url: str) -> WebhookReceiver | None:
    with session_scope() as session:
        row = session.get(WebhookReceiver, origin_of(url))
        if row is not None:
            session.expunge(row)
        return row


def times_opened(url: str) -> int:
    row = breaker(url)
    return row.opened if row is not None else 0


def test_a_hanging_receiver_holds_up_no_other_tenant_and_only_its_bound_of_requests(
    tmp_path: Path,
) -> None:
    slow_tenant, other_tenant = organisation("hangs"), organisation("healthy")
    settings = {**SENDER, "JOBYARD_WEBHOOK_TIMEOUT_SECONDS": "30"}
    # The receivers stop first (the hanging one's requests then end), then the sender.
    with (
        running_sender(tmp_path, **settings),
        FakeWebhookReceiver(default=Hang(seconds=30)) as hanging,
        FakeWebhookReceiver() as healthy,
    ):
        stuck = write_messages(slow_tenant, hanging.hook_url, 3000)
        hanging.wait_for_requests(BOUND, timeout=30)  # the sender is busy with them
        prompt = write_messages(other_tenant, healthy.hook_url, 50)
        wait_until(
            lambda: states(prompt) == {MessageState.DELIVERED: 50},
            20,
            "the healthy tenant's callbacks delivered",
        )
        # ... while the hanging receiver still holds its first requests, and got no
        # more than its bound of them.
        assert states(stuck) == {MessageState.SENDING: 3000}
        assert not hanging.answered
        assert len(hanging.requests) == BOUND
        # Taken (leased, logged): the bound's worth sent, as many waiting their turn.
        assert attempts_spent(stuck) == 2 * BOUND
        # The healthy receiver's 50 callbacks came over at most the bound's worth of
        # kept-alive connections, not one each.
        assert len(healthy.requests) == 50
        assert healthy.connections_opened <= BOUND


def test_a_failing_receiver_is_backed_off_whole_until_a_probe_gets_an_answer(
    tmp_path: Path,
) -> None:
    failing_tenant, lost_tenant, other_tenant = (
        organisation("fails"),
        organisation("unresolvable"),
        organisation("healthy"),
    )
    settings = {
        **SENDER,
        "JOBYARD_WEBHOOK_BREAKER_FAILURES": "5",
        "JOBYARD_WEBHOOK_BREAKER_SECONDS": "1",
        # Without the breaker a failed message would be tried again at once, and again.
        "JOBYARD_WEBHOOK_RETRY_SCHEDULE": "[0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]",
    }
    unresolvable = "http://hooks.nowhere.invalid/in"
    with (
        FakeWebhookReceiver(default=Fail(503)) as failing,
        FakeWebhookReceiver() as healthy,
        running_sender(tmp_path, **settings),
    ):
        refused = write_messages(failing_tenant, failing.hook_url, 300)
        lost = write_messages(lost_tenant, unresolvable, 300)
        wait_until(lambda: len(failing.requests) >= 5, 20, "the failing receiver tried")
        prompt = write_messages(other_tenant, healthy.hook_url, 20)
        wait_until(
            lambda: states(prompt) == {MessageState.DELIVERED: 20},
            20,
            "the healthy tenant's callbacks delivered",
        )
        # A few seconds of the breaker: a first round, then a probe now and then; the
        # other messages wait with their attempts unspent.
        for url in (failing.hook_url, unresolvable):
            wait_until(lambda u=url: times_opened(u) >= 3, 30, f"{url}'s breaker opened 3 times")
        for job_id, url in ((refused, failing.hook_url), (lost, unresolvable)):
            row = breaker(url)
            assert row is not None and row.failures >= 5 and row.open_until is not None
            # Before it opened: a share or two (twice the bound); then a probe per opening.
            assert attempts_spent(job_id) <= 4 * BOUND + row.opened, url
            assert states(job_id)[MessageState.SENDING] == 300
        # The receiver answers again: the next probe closes the breaker, the rest follow.
        failing.default = Reply()
        wait_until(
            lambda: states(refused) == {MessageState.DELIVERED: 300},
            60,
            "the recovered receiver's callbacks delivered",
        )
        row = breaker(failing.hook_url)
        assert row is not None and (row.failures, row.open_until) == (0, None)


def test_two_senders_at_once_send_each_message_once(tmp_path: Path) -> None:
    tenant = organisation("two senders")
    with FakeWebhookReceiver(default=Hang(seconds=0.01, then=Reply())) as receiver:
        with (
            running_sender(tmp_path, name="first", **SENDER),
            running_sender(tmp_path, name="second", **SENDER),
        ):
            job_id = write_messages(tenant, receiver.hook_url, 2000)
            wait_until(
                lambda: states(job_id) == {MessageState.DELIVERED: 2000}, 60, "all delivered"
            )
        received = Counter(receiver.webhook_ids())
    assert len(received) == 2000 and set(received.values()) == {1}
