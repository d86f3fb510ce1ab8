"""The ``ai_queries`` job type: an AI run asks every query of a project each model N
times (the planner: :func:`shared.mentionlab.runs.plan_ai_runs`); a finished run settles its
cached job (:func:`shared.mentionlab.cached_jobs.settle_finished_jobs`); a project's
recurrence runs its cached jobs through the engine's periodic slots
(:data:`shared.mentionlab.schedules.RECURRENCE`).

Its executor calls the AI providers and is the worker's; its payload schema is the
Mentionlab trigger's, as Valpay's create takes it, and is the API's: both are named by
reference and loaded by the process that uses them (:mod:`shared.engine.job_types`).
"""

from __future__ import annotations

from typing import Any

from shared.accounts.auth import Principal
from shared.db import UnitOfWork
from shared.engine.job_types import InTransactionHandler, JobTypeSpec
from shared.engine.outbox import JOB_FINISHED, JOB_RETRIED, Consumer
from shared.mentionlab.cached_jobs import reopen_retried_jobs, settle_finished_jobs
from shared.mentionlab.runs import AI_QUERIES, job_projects, plan_ai_runs, trigger_ai_job
from shared.mentionlab.schedules import RECURRENCE
from shared.models import Job


def create(work: UnitOfWork, principal: Principal, payload: dict[str, Any]) -> Job:
    """``POST /v1/jobs`` with ``jobType: ai_queries``: the Mentionlab trigger of a project."""
    return trigger_ai_job(
        work, principal, payload["projectId"], payload["aiModels"], payload["executionCount"]
    )


SPEC = JobTypeSpec(
    name=AI_QUERIES,
    description="Every query of a project asked of each AI model N times (Mentionlab)",
    planner=plan_ai_runs,
    executor="worker.executors.ai_queries:EXECUTOR",
    consumers=(Consumer("mentionlab.cached_jobs", JOB_FINISHED, settle_finished_jobs),),
    # A retried run makes its cached job active again, in the retry's transaction.
    in_transaction=(
        InTransactionHandler("mentionlab.cached_jobs_retried", JOB_RETRIED, reopen_retried_jobs),
    ),
    payload_schema="api.valpay.payloads:AiQueriesPayload",
    create=create,
    result_type="ai_answers",
    owners=job_projects,  # a run's project (its projectId)
    periodic=RECURRENCE,  # a project's cached jobs, run on its recurrence
    breakdown_key="model",
)
