"""Task names and the queue each kind of work runs on (shared by API, worker and beat)."""

from __future__ import annotations

FANOUT_QUEUE = "fanout"
EXECUTIONS_QUEUE = "executions"
MAINTENANCE_QUEUE = "maintenance"
SYNC_QUEUE = "sync"

FAN_OUT_TASK = "jobs.fan_out"
RUN_GROUP_TASK = "executions.run"
RECOVERY_SWEEP_TASK = "recovery.sweep"
SCHEDULE_TICK_TASK = "schedules.tick"
OUTBOX_DRAIN_TASK = "outbox.drain"
NOOP_TASK = "bench.noop"
NOOP_EARLY_ACK_TASK = "bench.noop_early_ack"

TASK_ROUTES: dict[str, dict[str, str]] = {
    FAN_OUT_TASK: {"queue": FANOUT_QUEUE},
    RUN_GROUP_TASK: {"queue": EXECUTIONS_QUEUE},
    RECOVERY_SWEEP_TASK: {"queue": MAINTENANCE_QUEUE},
    SCHEDULE_TICK_TASK: {"queue": MAINTENANCE_QUEUE},
    OUTBOX_DRAIN_TASK: {"queue": MAINTENANCE_QUEUE},
    NOOP_TASK: {"queue": EXECUTIONS_QUEUE},
    NOOP_EARLY_ACK_TASK: {"queue": EXECUTIONS_QUEUE},
}

ALL_QUEUES = (FANOUT_QUEUE, EXECUTIONS_QUEUE, MAINTENANCE_QUEUE)
