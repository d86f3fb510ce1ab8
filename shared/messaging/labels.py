"""What a task message says about its job where Flower shows and searches it.

A group message's arguments are execution ids only; Flower shows a task's ``args`` and
``kwargs`` as the message's ``argsrepr`` / ``kwargsrepr`` headers (Celery's "how to show
the arguments" text, sent in the ``task-received`` event) and its search matches them.
So each ``executions.run`` and ``jobs.fan_out`` message carries, as its ``kwargsrepr``,
the job, organisation and job type it works for, while its real arguments stay as they
were: a worker of any version runs it, and a message published before the upgrade simply
shows without them.

The repr is a Python dict literal, which Flower parses: besides the plain job id, its
search takes ``kwargs:job_id=<id>`` (an exact match on that key).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class JobLabel:
    """The job a message works for, as Flower shows it."""

    job_id: uuid.UUID
    organisation_id: uuid.UUID | None = None
    job_type: str | None = None

    def kwargsrepr(self) -> str:
        # In this order: Flower's kwargs column is one line, cut at 400 px (the type, then
        # the start of the job id, show there).
        shown: dict[str, str] = {}
        if self.job_type is not None:
            shown["job_type"] = self.job_type
        shown["job_id"] = str(self.job_id)
        if self.organisation_id is not None:
            shown["organisation_id"] = str(self.organisation_id)
        return repr(shown)


class JobGroup(list[uuid.UUID]):
    """One group as dispatch hands it out: one job's execution ids, and that job's label.

    A list of the ids itself, so a caller that only needs the ids treats it as one."""

    def __init__(self, execution_ids: Iterable[uuid.UUID], label: JobLabel) -> None:
        super().__init__(execution_ids)
        self.label = label


def kwargsrepr_of(group: list[uuid.UUID]) -> str | None:
    """The label a group is shown with (None: Celery's own repr, an empty dict)."""
    return group.label.kwargsrepr() if isinstance(group, JobGroup) else None
