"""The ``kb_sync`` job type: one run of a sync job, one execution per batch of source rows.

Its preparer plans the run's batches from the source table; its group size is one batch
of rows (each is a second of embedding and writing, so the workers share a run's batches);
a finished run closes its history row (:func:`shared.kb.runs.on_runs_finished`); sync
jobs run on their interval through the engine's periodic slots
(:data:`shared.kb.scheduled_runs.SYNC_SLOTS`). Its
executor is the worker's, named by reference (:mod:`shared.engine.job_types`).
"""

from __future__ import annotations

from typing import Any

from shared.accounts.auth import Principal
from shared.db import UnitOfWork
from shared.engine.job_types import InTransactionHandler, JobTypeSpec
from shared.engine.jobs import get_job
from shared.engine.outbox import JOB_FINISHED, JOB_RETRIED, Consumer
from shared.kb.runs import on_runs_finished, plan_batches, prepare_run, reopen_retried_runs
from shared.kb.scheduled_runs import SYNC_SLOTS
from shared.kb.sync import KB_SYNC, run_now
from shared.models import Job


def create(work: UnitOfWork, principal: Principal, payload: dict[str, Any]) -> Job:
    """``POST /v1/jobs`` with ``jobType: kb_sync``: a run, now, of the named sync job."""
    run_id = run_now(work, principal.organisation_id, payload["jobName"], trigger="api")
    return get_job(work.session, principal.organisation_id, run_id)


SPEC = JobTypeSpec(
    name=KB_SYNC,
    description="A run of a knowledge-base sync job (Smart DB / MindsDB)",
    planner=plan_batches,
    preparer=prepare_run,
    group_size=1,
    executor="worker.executors.kb_sync:EXECUTOR",
    consumers=(Consumer("kb.sync_runs", JOB_FINISHED, on_runs_finished),),
    # A retried run's history row reopens in the retry's transaction (its latest run only).
    in_transaction=(
        InTransactionHandler("kb.sync_runs_retried", JOB_RETRIED, reopen_retried_runs),
    ),
    payload_schema="api.valpay.payloads:KbSyncPayload",
    create=create,
    result_type="kb_rows",
    periodic=SYNC_SLOTS,  # a sync job's runs on its interval
)
