"""Recovery in seconds where it used to take minutes: a Redis that comes back empty, and a
dispatcher killed in the middle of a fan-out. Real workers, a real beat, a real Redis.

Both tests keep the slow rules at their defaults — the 300 s "never claimed" rule and the
60 s "fan-out stalled" timer — so that only the new signs can explain a quick recovery:
the broker's missing mark, and the fan-out owner's stopped heartbeat.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from shared.messaging.broker import broker_was_emptied
from shared.messaging.queues import (
    EXECUTIONS_QUEUE,
    FANOUT_QUEUE,
    MAINTENANCE_QUEUE,
)
from shared.settings import get_settings
from tests.support import (
    REDIS_OUTAGE_ERRORS,
    RedisServer,
    assert_counters_exact,
    execution_status_counts,
    job_row,
    make_tenant,
    running_beat,
    running_worker,
    trigger_runs,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow

DISPATCHER_QUEUES = (FANOUT_QUEUE, MAINTENANCE_QUEUE)
# Fast beats and sweeps; the redispatch and stall rules stay at their defaults.
FAST_SWEEP = {
    "JOBYARD_HEARTBEAT_SECONDS": 0.5,
    "JOBYARD_WORKER_DEAD_AFTER_SECONDS": 2,
    "JOBYARD_SWEEP_INTERVAL_SECONDS": 1,
}


def test_redis_back_empty_is_noticed_and_everything_handed_out_again(
    client: FlaskClient, own_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis killed -9 mid-job and started again with nothing in it: the executions that
    were in it run again within seconds (not after the 300 s rule). A job created while
    Redis is down is accepted (201): recorded, and dispatched by the sweep once it is back."""
    assert get_settings().redispatch_after_seconds >= 300  # the slow rule is not the cause
    tenant = make_tenant(n_queries=10)
    env = {**FAST_SWEEP, "JOBYARD_SIMULATED_LATENCY_MS": 20, "JOBYARD_GROUP_SIZE": 10}
    with (
        running_worker(tmp_path, 2, allowed_errors=REDIS_OUTAGE_ERRORS, **env),
        running_beat(tmp_path, **env),
    ):
        job_id = trigger_runs(client, tenant, runs=50)  # 2,000 executions
        wait_until(lambda: job_row(job_id).success >= 300, 60, "the first executions")
        own_redis.kill()
        during_outage = trigger_runs(client, tenant, runs=5)  # accepted while Redis is down
        own_redis.start()
        back = time.monotonic()
        assert job_row(job_id).success < 2000  # the outage hit the job in the middle
        job = wait_for_job(job_id, timeout=60)
        ended_after = time.monotonic() - back
        other = wait_for_job(during_outage, timeout=60)
    print(f"\nRedis back empty: the job ended {ended_after:.1f} s after Redis was back")
    assert ended_after < 30
    assert job.status == "completed" and job.success == 2000
    assert other.status == "completed" and other.success == 200
    assert_counters_exact(job_id)
    assert_counters_exact(during_outage)


def test_a_killed_dispatchers_fan_out_is_taken_over_within_the_dead_worker_window(
    client: FlaskClient, tmp_path: Path, empty_broker: object
) -> None:
    """kill -9 of the process writing a 20,000-execution fan-out, another dispatcher
    started a second later: the fan-out goes on once the dead one's heartbeat is two
    seconds old (JOBYARD_WORKER_DEAD_AFTER_SECONDS here), not after the 60 s stall timer."""
    assert get_settings().fanout_stalled_after_seconds >= 60  # the slow rule is not the cause
    broker_was_emptied()  # the broker's mark is there: a sweep sees no lost broker here
    tenant = make_tenant(n_queries=100)
    env = {**FAST_SWEEP, "JOBYARD_FANOUT_CHUNK_SIZE": 200, "JOBYARD_SIMULATED_LATENCY_MS": 5}
    for name in ("executions", "doomed", "rescuer"):
        (tmp_path / name).mkdir()
    with (
        running_worker(tmp_path / "executions", 4, queues=(EXECUTIONS_QUEUE,), **env),
        running_beat(tmp_path, **env),
    ):
        with running_worker(tmp_path / "doomed", 2, queues=DISPATCHER_QUEUES, **env) as doomed:
            job_id = trigger_runs(client, tenant, runs=50)  # 20,000 executions
            wait_until(
                lambda: sum(execution_status_counts(job_id).values()) >= 2000,
                60,
                "the fan-out to be under way",
            )
            doomed.kill()
        written_at_kill = sum(execution_status_counts(job_id).values())
        assert job_row(job_id).fanned_out_at is None  # killed in the middle of the fan-out
        time.sleep(1)
        with running_worker(tmp_path / "rescuer", 2, queues=DISPATCHER_QUEUES, **env):
            back = time.monotonic()
            wait_until(
                lambda: sum(execution_status_counts(job_id).values()) > written_at_kill,
                30,
                "the fan-out to be taken over",
            )
            resumed_after = time.monotonic() - back
            job = wait_for_job(job_id, timeout=120)
    print(f"\ndispatcher kill -9: the fan-out went on {resumed_after:.1f} s after the restart")
    assert resumed_after < 15
    assert job.status == "completed" and job.success == 20_000
    assert_counters_exact(job_id)
