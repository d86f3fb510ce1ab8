"""Fan-out: turn an accepted job into executions and publish one message per execution."""

from __future__ import annotations

import logging
import uuid

from shared import publisher
from shared.db import new_session, session_scope
from shared.services import lifecycle
from shared.settings import get_settings

log = logging.getLogger(__name__)


def fan_out_job(job_id: uuid.UUID) -> int:
    """Write the job's executions chunk by chunk, publishing each chunk after it commits.

    Idempotent: a repeated fan-out (duplicate message, crash half-way) re-inserts nothing
    and re-publishes ids whose duplicates the claim drops. Returns the executions published.
    """
    with session_scope() as session:
        plan = lifecycle.begin_fan_out(session, job_id)
    if not plan.should_run:
        log.info("fan-out of job %s skipped: %s", job_id, plan.reason)
        return 0
    published = 0
    chunks = lifecycle.write_execution_chunks(new_session, job_id, get_settings().fanout_chunk_size)
    for execution_ids in chunks:
        publisher.publish_executions(execution_ids)
        published += len(execution_ids)
    with session_scope() as session:
        lifecycle.finish_fan_out(session, job_id)
    log.info("fan-out of job %s published %d executions", job_id, published)
    return published
