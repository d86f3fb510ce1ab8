"""Knowledge-base sync (Smart DB / MindsDB-compatible): source databases, knowledge bases
and the jobs that sync one into the other on their schedule.

Importing it registers the ``kb_sync`` job type: its preparer (planning a run's batches
from the source table), its planner, its group size (one batch of rows per group: each
is a second of embedding and writing, so the workers share a run's batches), the
consumer that closes a run's history row, and the sync jobs' slots as a periodic kind;
the executor is the worker's (:mod:`worker.executors.kb_sync`).
"""

from shared.engine.outbox import JOB_FINISHED, register_consumer
from shared.engine.periodic import register_periodic_kind
from shared.engine.registry import register_group_size, register_planner, register_preparer
from shared.kb.runs import on_runs_finished, plan_batches, prepare_run
from shared.kb.scheduled_runs import SYNC_SLOTS
from shared.kb.sync import KB_SYNC

register_preparer(KB_SYNC, prepare_run)
register_planner(KB_SYNC, plan_batches)
register_group_size(KB_SYNC, 1)
register_consumer("kb.sync_runs", JOB_FINISHED, on_runs_finished)
register_periodic_kind(SYNC_SLOTS)
