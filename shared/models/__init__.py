"""The engine's and tenancy's SQLAlchemy models; import them from here.

Each domain keeps its own models beside its code (``shared/mentionlab/models.py``,
``shared/kb/models.py``, ``shared/webhooks/models.py``, ``shared/idempotency/models.py``):
a domain's tables are known to a process once that domain is imported, as it is when its
job type is discovered. Alembic's environment loads every one
(:func:`shared.migrate.load_every_model`).
"""

from shared.models.base import Base, utcnow
from shared.models.engine import OutboxEvent, PeriodicSchedule, WorkerProcess
from shared.models.jobs import (
    ACTIVE_EXECUTION_STATUSES,
    ACTIVE_JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
)
from shared.models.tenancy import ApiKey, Membership, Organisation, User

__all__ = [
    "ACTIVE_EXECUTION_STATUSES",
    "ACTIVE_JOB_STATUSES",
    "TERMINAL_JOB_STATUSES",
    "ApiKey",
    "Base",
    "Execution",
    "ExecutionStatus",
    "Job",
    "JobStatus",
    "Membership",
    "Organisation",
    "OutboxEvent",
    "PeriodicSchedule",
    "User",
    "WorkerProcess",
    "utcnow",
]
