"""``executions.run``: one group of executions (a single one for a retry)."""

from __future__ import annotations

import uuid

from shared.messaging.queues import RUN_GROUP_TASK
from worker.runtime.groups import run_group
from worker.tasks.durable import durable_task


@durable_task(RUN_GROUP_TASK)
def run(execution_ids: list[str] | str) -> dict[str, int]:
    """Claim, run and finish a group; duplicates and stale ids are dropped by the claim."""
    ids = [execution_ids] if isinstance(execution_ids, str) else execution_ids  # 1-id messages
    return run_group([uuid.UUID(i) for i in ids])
