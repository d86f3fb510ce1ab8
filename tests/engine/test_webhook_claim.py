"""The webhook sender, round by round (``deliver_due`` called here, sending real requests
to a receiver on loopback): no message leaves without a signature."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from shared.db import session_scope
from shared.models import WebhookSecret, utcnow
from shared.settings import reset_settings_cache
from shared.webhooks import enqueue
from shared.webhooks.secrets import current
from shared.webhooks.sender import Signer, deliver_due
from tests.engine.conftest import make_job
from tests.fakes import FakeWebhookReceiver
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


def write_one(organisation_id: uuid.UUID, job_id: uuid.UUID, url: str, n: int) -> None:
    """A message due now (as an outbox consumer writes it)."""
    with session_scope() as session:
        enqueue(
            session,
            organisation_id=organisation_id,
            job_id=job_id,
            execution_id=uuid.uuid4(),
            event="test.event",
            url=url,
            payload={"n": n},
            now=utcnow(),
        )


def sent_in_round(receiver: FakeWebhookReceiver) -> list[int]:
    """One send round; the ``n`` of each message it sent."""
    before = len(receiver.requests)
    deliver_due()
    return sorted(r.json["n"] for r in receiver.requests[before:])


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
    write_one(organisation_id, job_id, receiver.hook_url, 1)
    assert sent_in_round(receiver) == [1]
    with session_scope() as session:
        secret = current(session, organisation_id).secret.secret
    (request,) = receiver.requests
    verify(secret, request.headers, request.body)


def test_there_is_no_signer_without_a_secret() -> None:
    with pytest.raises(ValueError, match="never sent unsigned"):
        Signer([])
    assert Signer(["whsec_" + "A" * 32]).sign("msg", utcnow(), "{}").startswith("v1,")
