"""What the engine tells the rest of the system, and who listens: the outbox's topics, the
event a consumer is handed, and the two kinds of listener a job type declares in its
spec (:mod:`shared.engine.job_types`; the outbox, :mod:`shared.engine.outbox`, writes and
hands them out)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

JOB_FINISHED = "job.finished"
# An execution ended (success, or failed for good) in a job with a callback URL, for the
# job types that ask for it: webhooks per data point.
EXECUTION_FINISHED = "execution.finished"


@dataclass(frozen=True)
class Event:
    """What a consumer is handed."""

    id: int
    topic: str
    job_id: uuid.UUID | None
    organisation_id: uuid.UUID | None
    payload: dict[str, Any]
    attempts: int


Handler = Callable[[Session, Sequence[Event]], None]


@dataclass(frozen=True)
class Consumer:
    """Drained from the outbox after the commit, in batches, in a transaction with its own
    writes; one that raises gets its events back later."""

    name: str
    topic: str
    handle: Handler
    batch_size: int = 100


@dataclass(frozen=True)
class InTransactionHandler:
    """Called in the very transaction that emits ``topic``, with its Session or
    Connection; if it raises, so does the transaction."""

    name: str
    topic: str
    handle: Callable[[Any, Sequence[Event]], None]
