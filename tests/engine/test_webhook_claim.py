"""The webhook sender's claim, round by round (``deliver_due`` called here, sending real
requests to a receiver on loopback): a message waits for the one it follows, a job's
closing message waits for every message about the job's executions (those not written yet
included), no message leaves without a signature, and takes go round the organisations."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from shared.accounts.organisations import create_organisation
from shared.db import dialect_name, new_session, session_scope
from shared.engine.outbox import EXECUTION_FINISHED
from shared.models import OutboxEvent, utcnow
from shared.settings import reset_settings_cache
from shared.webhooks import NewMessage, enqueue_all
from shared.webhooks.messages import MessageState
from shared.webhooks.models import WebhookMessage, WebhookSecret
from shared.webhooks.secrets import current
from shared.webhooks.sender import Signer, Turns, deliver_due, take
from tests.engine.conftest import make_job
from tests.fakes import Fail, FakeWebhookReceiver, Reply
from tests.support import remove_all_jobs
from tests.webhook_signatures import verify

pytestmark = pytest.mark.every_database


@pytest.fixture(autouse=True)
def quiet_sender(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only this test's messages are due (no other test's job is left), the receiver is on
    127.0.0.1, and a failed attempt is due again at once."""
    monkeypatch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("JOBYARD_WEBHOOK_RETRY_SCHEDULE", "[0, 0, 0, 0]")
    reset_settings_cache()
    with session_scope() as session:
        remove_all_jobs(session)
    yield
    monkeypatch.undo()
    reset_settings_cache()


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as fake:
        yield fake


def write(*messages: NewMessage) -> list[uuid.UUID]:
    """Write messages in one transaction (as an outbox consumer does); their ids."""
    with session_scope() as session:
        written = enqueue_all(session, list(messages), utcnow())
        session.flush()
        return [m.id for m in written]


def about(
    organisation_id: uuid.UUID,
    job_id: uuid.UUID,
    url: str,
    execution_id: uuid.UUID | None,
    n: int,
    *,
    closes_job: bool = False,
) -> NewMessage:
    return NewMessage(
        organisation_id, job_id, execution_id, "test.event", url, {"n": n}, closes_job
    )


def sent_in_round(receiver: FakeWebhookReceiver) -> list[int]:
    """One send round; the ``n`` of each message it sent."""
    before = len(receiver.requests)
    deliver_due()
    return sorted(r.json["n"] for r in receiver.requests[before:])


def states(ids: list[uuid.UUID]) -> list[str]:
    with session_scope() as session:
        by_id = dict(
            session.execute(
                select(WebhookMessage.id, WebhookMessage.state).where(WebhookMessage.id.in_(ids))
            ).all()
        )
    return [by_id[i] for i in ids]


def test_a_later_message_about_an_execution_waits_for_the_earlier_one(
    organisation_id: uuid.UUID, receiver: FakeWebhookReceiver
) -> None:
    """Two callbacks of one data point (a finish, then a later state): the second is not
    sent while the first is still being tried, whichever round it falls in."""
    job_id, point = make_job(organisation_id, 1), uuid.uuid4()
    first, second = write(
        about(organisation_id, job_id, receiver.hook_url, point, 1),
        about(organisation_id, job_id, receiver.hook_url, point, 2),
    )
    (third,) = write(about(organisation_id, job_id, receiver.hook_url, point, 3))
    with session_scope() as session:
        follows = dict(session.execute(select(WebhookMessage.id, WebhookMessage.follows_id)).all())
    assert (follows[first], follows[second], follows[third]) == (None, first, second)
    receiver.script([Fail(500), Fail(503)])
    assert sent_in_round(receiver) == [1]  # fails: the others wait
    assert sent_in_round(receiver) == [1]  # fails again
    assert sent_in_round(receiver) == [1]  # delivered
    assert sent_in_round(receiver) == [2]
    assert sent_in_round(receiver) == [3]
    assert sent_in_round(receiver) == []
    assert states([first, second, third]) == [MessageState.DELIVERED] * 3


def test_a_message_given_up_on_no_longer_holds_back_the_next(
    organisation_id: uuid.UUID, receiver: FakeWebhookReceiver
) -> None:
    job_id, point = make_job(organisation_id, 1), uuid.uuid4()
    first, second = write(
        about(organisation_id, job_id, receiver.hook_url, point, 1),
        about(organisation_id, job_id, receiver.hook_url, point, 2),
    )
    receiver.script([Fail(410)])  # gone: no more attempts of the first
    assert sent_in_round(receiver) == [1]
    assert sent_in_round(receiver) == [2]
    assert states([first, second]) == [MessageState.GONE, MessageState.DELIVERED]


def test_a_closing_message_waits_for_every_message_about_the_jobs_executions(
    organisation_id: uuid.UUID, receiver: FakeWebhookReceiver
) -> None:
    """A batch's callback is not sent while a data point's callback is being tried, nor
    while a data point's ``execution.finished`` event is not a callback yet."""
    job_id, url = make_job(organisation_id, 3), receiver.hook_url
    points = [uuid.uuid4() for _ in range(3)]
    written = write(
        about(organisation_id, job_id, url, points[0], 1),
        about(organisation_id, job_id, url, points[1], 2),
        about(organisation_id, job_id, url, None, 99, closes_job=True),
    )
    # The first data point's callback fails once.
    receiver.answer = lambda request, attempt: (
        Fail(500) if (request.json["n"], attempt) == (1, 1) else Reply()
    )
    assert sent_in_round(receiver) == [1, 2]
    assert sent_in_round(receiver) == [1]  # the batch's still waits for it
    # The third data point ended, but its callback is not written yet (its event waits
    # in the outbox): the batch's waits for it as well.
    with session_scope() as session:
        session.execute(
            insert(OutboxEvent).values(
                consumer="batches.datapoint_callbacks",
                topic=EXECUTION_FINISHED,
                job_id=job_id,
                organisation_id=organisation_id,
                payload={"executionId": str(points[2])},
                attempts=0,
                available_at=utcnow(),
                created_at=utcnow(),
            )
        )
    assert sent_in_round(receiver) == []
    with session_scope() as session:  # the consumer turns the event into the callback
        session.execute(delete(OutboxEvent).where(OutboxEvent.job_id == job_id))
        enqueue_all(session, [about(organisation_id, job_id, url, points[2], 3)], utcnow())
    assert sent_in_round(receiver) == [3]
    assert sent_in_round(receiver) == [99]
    assert states(written) == [MessageState.DELIVERED] * 3
    arrivals = [r.json["n"] for r in receiver.requests]
    assert arrivals[-1] == 99 and arrivals.count(99) == 1


def test_every_request_is_signed_even_for_an_organisation_without_a_secret(
    organisation_id: uuid.UUID, receiver: FakeWebhookReceiver
) -> None:
    """An organisation with no signing secret (made before secrets were, or by a path
    that forgot) gets one before its first callback leaves, and its owner reads that one."""
    with session_scope() as session:
        session.execute(
            delete(WebhookSecret).where(WebhookSecret.organisation_id == organisation_id)
        )
    job_id = make_job(organisation_id, 1)
    write(about(organisation_id, job_id, receiver.hook_url, uuid.uuid4(), 1))
    assert sent_in_round(receiver) == [1]
    with session_scope() as session:
        secret = current(session, organisation_id).secret.secret
    (request,) = receiver.requests
    verify(secret, request.headers, request.body)


def test_there_is_no_signer_without_a_secret() -> None:
    with pytest.raises(ValueError, match="never sent unsigned"):
        Signer([])
    assert Signer(["whsec_" + "A" * 32]).sign("msg", utcnow(), "{}").startswith("v1,")


def test_a_chain_never_forks(organisation_id: uuid.UUID) -> None:
    """Two transactions that each write a message after the same one (neither sees the
    other's): the second to commit fails, and its consumer retries behind the first."""
    with session_scope() as session:
        if dialect_name(session) != "postgresql":
            pytest.skip("SQLite writers take turns from their first statement: none at once")
    job_id, point, url = make_job(organisation_id, 1), uuid.uuid4(), "https://h.example/"
    (first,) = write(about(organisation_id, job_id, url, point, 1))
    outcome: list[Exception | None] = []

    def write_beside() -> None:
        try:
            write(about(organisation_id, job_id, url, point, 3))
            outcome.append(None)
        except IntegrityError as exc:
            outcome.append(exc)

    other = threading.Thread(target=write_beside)
    with new_session() as holder:
        holder.begin()
        (mine,) = enqueue_all(holder, [about(organisation_id, job_id, url, point, 2)], utcnow())
        holder.flush()
        mine_id, mine_follows = mine.id, mine.follows_id
        other.start()
        other.join(1.0)
        waited = other.is_alive()  # its insert waits for the first writer's follower
        holder.commit()
    other.join(10)
    assert waited
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert mine_follows == first
    (third,) = write(about(organisation_id, job_id, url, point, 3))  # the retry
    with session_scope() as session:
        assert (
            session.scalar(select(WebhookMessage.follows_id).where(WebhookMessage.id == third))
            == mine_id
        )


def test_takes_go_round_the_organisations(organisation_id: uuid.UUID) -> None:
    """Three organisations with more due than a take has room for: each take serves the
    one served least recently, so three takes serve all three (not the first three times)."""
    others = []
    with session_scope() as session:
        others = [create_organisation(session, f"other {n}").id for n in range(2)]
    organisations = [organisation_id, *others]
    for n, org in enumerate(organisations):
        job_id = make_job(org, 30)
        write(*(about(org, job_id, f"https://h{n}.example/in", None, i) for i in range(30)))
    turns = Turns()
    served = []
    for _ in organisations:
        sends = take({}, 10, turns)
        assert len(sends) == 10
        served.append({s.receiver for s in sends})
    assert [len(s) for s in served] == [1, 1, 1]
    assert set.union(*served) == {f"https://h{n}.example:443" for n in range(3)}
