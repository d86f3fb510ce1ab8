"""SQLAlchemy models of jobyard; import from here."""

from shared.models.base import Base, utcnow
from shared.models.cached_jobs import CachedJob, CachedJobStatus
from shared.models.engine import OutboxEvent, PeriodicSchedule, WorkerProcess
from shared.models.idempotency import IdempotencyKey
from shared.models.jobs import (
    ACTIVE_EXECUTION_STATUSES,
    ACTIVE_JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    Execution,
    ExecutionStatus,
    Job,
    JobStatus,
)
from shared.models.kb import DataSource, KbChunk, KnowledgeBase, SyncJob, SyncJobStatus, SyncRun
from shared.models.projects import Project, Query
from shared.models.tenancy import ApiKey, Membership, Organisation, User
from shared.models.webhooks import (
    WebhookDelivery,
    WebhookMessage,
    WebhookReceiver,
    WebhookSecret,
)

__all__ = [
    "ACTIVE_EXECUTION_STATUSES",
    "ACTIVE_JOB_STATUSES",
    "TERMINAL_JOB_STATUSES",
    "ApiKey",
    "Base",
    "CachedJob",
    "CachedJobStatus",
    "DataSource",
    "Execution",
    "ExecutionStatus",
    "IdempotencyKey",
    "Job",
    "JobStatus",
    "KbChunk",
    "KnowledgeBase",
    "Membership",
    "Organisation",
    "OutboxEvent",
    "PeriodicSchedule",
    "Project",
    "Query",
    "SyncJob",
    "SyncJobStatus",
    "SyncRun",
    "User",
    "WebhookDelivery",
    "WebhookMessage",
    "WebhookReceiver",
    "WebhookSecret",
    "WorkerProcess",
    "utcnow",
]
