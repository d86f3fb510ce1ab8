"""The AI-visibility domain (Mentionlab): projects, queries, AI runs, cached jobs, schedules.

Importing it registers the ``ai_queries`` job type's planner, the cached-job settling
consumer of ``job.finished`` and the projects' recurrence as a periodic kind (the
executor, which calls AI providers, is the worker's: :mod:`worker.executors.ai_queries`).
"""

from shared.engine.outbox import JOB_FINISHED, register_consumer
from shared.engine.periodic import register_periodic_kind
from shared.engine.registry import register_planner
from shared.mentionlab.cached_jobs import settle_finished_jobs
from shared.mentionlab.runs import AI_QUERIES, plan_ai_runs
from shared.mentionlab.schedules import RECURRENCE

register_planner(AI_QUERIES, plan_ai_runs)
register_consumer("mentionlab.cached_jobs", JOB_FINISHED, settle_finished_jobs)
register_periodic_kind(RECURRENCE)
