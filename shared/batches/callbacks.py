"""Callbacks of batches: a data point's when it finishes, with its response, and the
batch's when it ends, as super.AI sends them: signed webhook messages written in the
transaction that ends the data point (the worker's finish batch, a cancel) or the batch,
by handlers the engine calls there (``outbox.register_in_transaction``); the senders are
woken once it commits.

A data point's callback carries what ``GET .../jobs/{id}/response`` answers, or a link to
it when that is larger than ``JOBYARD_CALLBACK_MAX_RESPONSE_BYTES``. The batch's callback
closes its job: it is sent only after every data point's callback was delivered or given
up (see :mod:`shared.webhooks.sender`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared import webhooks
from shared.batches.models import Batch
from shared.batches.responses import data_point_response, response_path
from shared.batches.service import batch_state
from shared.engine.cancel import CANCELED_ERROR
from shared.engine.outbox import Event
from shared.models import Execution, ExecutionStatus, Job, utcnow
from shared.settings import get_settings
from shared.webhooks.messages import NewMessage

DATA_POINT_EVENT = "datapoint.finished"
BATCH_EVENT = "batch.finished"


@contextmanager
def _reading(executor: Session | Connection) -> Iterator[Session]:
    """A Session for reading rows as objects inside the executor's transaction: the
    caller's own, or one on the caller's connection (it neither commits nor rolls back
    the transaction it joins)."""
    if isinstance(executor, Session):
        yield executor
        return
    with Session(bind=executor) as session:
        yield session


def _jobs(session: Session, events: Sequence[Event]) -> dict[uuid.UUID, tuple[Job, Batch]]:
    """The batches of these events that have a callback URL, with their own rows, as this
    transaction sees them now (their counters just moved): one read per batch of events.
    The engine reports every ended execution of the type; which ones call back is the
    batches' to decide, here."""
    ids = {e.job_id for e in events if e.job_id is not None}
    if not ids:
        return {}
    rows = session.execute(
        select(Job, Batch)
        .join(Batch, Batch.job_id == Job.id)
        .where(Job.id.in_(ids), Batch.callback_url.is_not(None), Batch.callback_url != "")
        .execution_options(populate_existing=True)
    )
    return {job.id: (job, batch) for job, batch in rows}


def data_point_state(status: str, error: str | None) -> str:
    if status == ExecutionStatus.SUCCESS.value:
        return "COMPLETED"
    return "CANCELED" if error == CANCELED_ERROR else "FAILED"


def data_point_payload(batch: Batch, execution: Execution, state: str) -> dict[str, Any]:
    """``{id, uuid, state, action}`` and the response (``responseIncluded``: true), or,
    above the size cap, only the link to it (``responseIncluded``: false). The link is
    there either way (``responseUrl``)."""
    settings = get_settings()
    execution_id = str(execution.id)
    payload: dict[str, Any] = {
        "id": execution_id,
        "uuid": execution_id,
        "state": state,
        "action": "STATE_CHANGE",
        "responseUrl": settings.public_url.rstrip("/")
        + response_path(str(batch.app_id), execution_id),
    }
    response = data_point_response(execution)
    size = len(json.dumps(response, separators=(",", ":")).encode())
    payload["responseIncluded"] = size <= settings.callback_max_response_bytes
    if payload["responseIncluded"]:
        payload["response"] = response
    return payload


def on_data_points_finished(executor: Session | Connection, events: Sequence[Event]) -> None:
    """A callback per data point to the batch's callback URL, with its response."""
    with _reading(executor) as session:
        messages = _data_point_messages(session, events)
    webhooks.enqueue_all(executor, messages, utcnow())


def _data_point_messages(session: Session, events: Sequence[Event]) -> list[NewMessage]:
    jobs = _jobs(session, events)
    wanted = [
        (jobs[e.job_id], e, uuid.UUID(e.payload["executionId"]))
        for e in events
        if e.job_id is not None and e.job_id in jobs
    ]
    executions = {
        e.id: e
        for e in session.scalars(
            select(Execution)
            .where(Execution.id.in_([i for _, _, i in wanted]))
            .execution_options(populate_existing=True)
        )
    }
    messages = []
    for (job, batch), item, execution_id in wanted:
        execution = executions.get(execution_id)
        if execution is None or batch.callback_url is None:
            continue
        state = data_point_state(item.payload["status"], item.payload.get("error"))
        messages.append(
            NewMessage(
                organisation_id=job.organisation_id,
                job_id=job.id,
                execution_id=execution_id,
                event=DATA_POINT_EVENT,
                url=batch.callback_url,
                payload=data_point_payload(batch, execution, state),
            )
        )
    return messages


def on_batches_finished(executor: Session | Connection, events: Sequence[Event]) -> None:
    """``{version: "2", entityType: "batch", entityId, state, appId}`` per batch, sent
    after its data points' callbacks."""
    with _reading(executor) as session:
        messages = _batch_messages(session, events)
    webhooks.enqueue_all(executor, messages, utcnow())


def _batch_messages(session: Session, events: Sequence[Event]) -> list[NewMessage]:
    jobs = _jobs(session, events)
    messages = []
    for item in events:
        found = jobs.get(item.job_id) if item.job_id is not None else None
        if found is None:
            continue
        job, batch = found
        if batch.callback_url is None:
            continue
        messages.append(
            NewMessage(
                organisation_id=job.organisation_id,
                job_id=job.id,
                execution_id=None,
                event=BATCH_EVENT,
                url=batch.callback_url,
                payload={
                    "version": "2",
                    "entityType": "batch",
                    "entityId": str(job.id),
                    "state": batch_state(job).value,
                    "appId": str(batch.app_id),
                },
                closes_job=True,
            )
        )
    return messages
