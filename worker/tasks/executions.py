"""``executions.run``: one group of executions (a single one for a retry)."""

from __future__ import annotations

import uuid

from celery import Task

from shared.messaging.queues import RUN_GROUP_TASK
from worker.runtime.group_events import GroupRequest
from worker.runtime.groups import run_group
from worker.tasks.durable import durable_task


# GroupRequest: in Flower, the task ends when its executions do (worker.runtime.group_events).
@durable_task(RUN_GROUP_TASK, bind=True, Request=GroupRequest)
def run(self: Task, execution_ids: list[str] | str) -> dict[str, int]:
    """Claim, run and finish a group; duplicates and stale ids are dropped by the claim."""
    ids = [execution_ids] if isinstance(execution_ids, str) else execution_ids  # 1-id messages
    return run_group([uuid.UUID(i) for i in ids], task_id=self.request.id)
