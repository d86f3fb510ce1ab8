"""The batches domain (super.AI-compatible): apps process batches of inputs, one data
point per input.

Importing it registers the ``batch`` job type's preparer (reading an inputs file) and
planner, and the handlers that turn finished data points and batches into callbacks (in the
transaction that ends them); the executor, which calls the models, is the worker's
(:mod:`worker.executors.batches`).
"""

from shared.batches.callbacks import on_batches_finished, on_data_points_finished
from shared.batches.service import BATCH, load_input_file, plan_batch
from shared.engine.outbox import (
    EXECUTION_FINISHED,
    JOB_FINISHED,
    register_in_transaction,
    report_executions_of,
)
from shared.engine.registry import register_planner, register_preparer

register_planner(BATCH, plan_batch)
register_preparer(BATCH, load_input_file)
report_executions_of(BATCH)
# Callbacks are written in the transaction that ends the data point or the batch.
register_in_transaction("batches.datapoint_callbacks", EXECUTION_FINISHED, on_data_points_finished)
register_in_transaction("batches.batch_callbacks", JOB_FINISHED, on_batches_finished)
