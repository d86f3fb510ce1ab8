"""Callbacks of batches: a data point's when it finishes, the batch's when it ends, as
super.AI sends them, made into signed webhook messages from the engine's outbox events in
the consumer's transaction. The batch's callback closes its job: it is sent only after
every data point's callback was delivered or given up (see :mod:`shared.webhooks.sender`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from shared import webhooks
from shared.batches.service import BATCH, batch_state
from shared.engine.cancel import CANCELED_ERROR
from shared.engine.outbox import Event
from shared.messaging.publisher import publish_webhook_delivery
from shared.models import ExecutionStatus, Job, utcnow
from shared.webhooks.messages import NewMessage

DATA_POINT_EVENT = "datapoint.finished"
BATCH_EVENT = "batch.finished"


def _deliver_after_commit(session: Session) -> None:
    event.listen(session, "after_commit", lambda _: publish_webhook_delivery(), once=True)


def _jobs(session: Session, events: Sequence[Event]) -> dict[uuid.UUID, Job]:
    ids = {e.job_id for e in events if e.job_id is not None}
    jobs = session.scalars(select(Job).where(Job.id.in_(ids), Job.type == BATCH))
    return {job.id: job for job in jobs if job.callback_url}


def data_point_state(status: str, error: str | None) -> str:
    if status == ExecutionStatus.SUCCESS.value:
        return "COMPLETED"
    return "CANCELED" if error == CANCELED_ERROR else "FAILED"


def on_data_points_finished(session: Session, events: Sequence[Event]) -> None:
    """``{id, uuid, state, action}`` to the batch's callback URL, per data point."""
    jobs, now = _jobs(session, events), utcnow()
    messages = []
    for item in events:
        job = jobs.get(item.job_id) if item.job_id is not None else None
        if job is None or job.callback_url is None:
            continue
        execution_id = item.payload["executionId"]
        messages.append(
            NewMessage(
                organisation_id=job.organisation_id,
                job_id=job.id,
                execution_id=uuid.UUID(execution_id),
                event=DATA_POINT_EVENT,
                url=job.callback_url,
                payload={
                    "id": execution_id,
                    "uuid": execution_id,
                    "state": data_point_state(item.payload["status"], item.payload.get("error")),
                    "action": "STATE_CHANGE",
                },
            )
        )
    webhooks.enqueue_all(session, messages, now)
    _deliver_after_commit(session)


def on_batches_finished(session: Session, events: Sequence[Event]) -> None:
    """``{version: "2", entityType: "batch", entityId, state, appId}`` per batch, sent
    after its data points' callbacks."""
    jobs, now = _jobs(session, events), utcnow()
    messages = []
    for item in events:
        job = jobs.get(item.job_id) if item.job_id is not None else None
        if job is None or job.callback_url is None:
            continue
        messages.append(
            NewMessage(
                organisation_id=job.organisation_id,
                job_id=job.id,
                execution_id=None,
                event=BATCH_EVENT,
                url=job.callback_url,
                payload={
                    "version": "2",
                    "entityType": "batch",
                    "entityId": str(job.id),
                    "state": batch_state(job).value,
                    "appId": str(job.project_id),
                },
                closes_job=True,
            )
        )
    webhooks.enqueue_all(session, messages, now)
    _deliver_after_commit(session)
