"""The ``batch`` job type: a super.AI batch, one data point (execution) per input.

Its preparer reads an inputs file before the fan-out; each data point that ends, and the
batch when it ends, writes its callback in the transaction that ends it
(:mod:`shared.batches.callbacks`). Its executor calls the models and is the worker's; its
payload schema is a super.AI batch's plus its app, and is the API's: both are named by
reference (:mod:`shared.engine.job_types`).
"""

from __future__ import annotations

from typing import Any

from shared.accounts.auth import Principal
from shared.batches.callbacks import on_batches_finished, on_data_points_finished
from shared.batches.service import BATCH, batch_apps, create_batch, load_input_file, plan_batch
from shared.db import UnitOfWork
from shared.engine.job_types import InTransactionHandler, JobTypeSpec
from shared.engine.outbox import EXECUTION_FINISHED, JOB_FINISHED
from shared.models import Job


def create(work: UnitOfWork, principal: Principal, payload: dict[str, Any]) -> Job:
    """``POST /v1/jobs`` with ``jobType: batch``: a batch of the payload's app."""
    job, _ = create_batch(
        work,
        principal,
        payload["appId"],
        inputs=payload.get("inputs"),
        inputs_file_url=payload.get("inputsFileUrl"),
        callback_url=payload.get("callbackUrl"),
        metadata=payload["metadata"],
        tags=payload["tags"],
        parked=payload["pending"],
    )
    return job


SPEC = JobTypeSpec(
    name=BATCH,
    description="A batch of inputs, one data point each, with callbacks (super.AI)",
    planner=plan_batch,
    preparer=load_input_file,
    executor="worker.executors.batches:EXECUTOR",
    reports_executions=True,
    # Callbacks are written in the transaction that ends the data point or the batch.
    in_transaction=(
        InTransactionHandler(
            "batches.datapoint_callbacks", EXECUTION_FINISHED, on_data_points_finished
        ),
        InTransactionHandler("batches.batch_callbacks", JOB_FINISHED, on_batches_finished),
    ),
    payload_schema="api.valpay.payloads:BatchPayload",
    create=create,
    result_type="data_points",
    owners=batch_apps,  # a batch's app (its projectId in the generic answers)
    breakdown_key="input",
)
