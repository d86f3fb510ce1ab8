"""Scheduled runs of cached jobs with real processes: a worker runs ``schedules.tick``, and
two beats racing on the same schedule never run a slot twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from flask.testing import FlaskClient

from tests.e2e.schedule_helpers import (
    create_cached_jobs,
    make_due,
    next_run_at,
    publish_tick,
    runs_per_slot,
    scheduled_jobs,
    set_recurrence,
    wait_until,
)
from tests.support import (
    Tenant,
    WorkerProcess,
    assert_counters_exact,
    running_beat,
    running_worker,
    wait_for_job,
)

TICK_DONE = b"Task schedules.tick["


def ticks_done(*workers: WorkerProcess) -> int:
    """How many ``schedules.tick`` tasks the workers have finished (from their logs)."""
    return sum(
        1
        for worker in workers
        for line in worker.log_path.read_bytes().splitlines()
        if TICK_DONE in line and b"succeeded" in line
    )


def test_a_due_slot_runs_each_cached_job_once_to_completion(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, empty_broker: object
) -> None:
    """daily, next run an hour ago: one tick → one job per cached job, and they complete."""
    created = create_cached_jobs(
        client,
        tenant,
        [
            (tenant.query_ids[0], ["openai", "anthropic"], 2),
            (tenant.query_ids[2], ["perplexity"], 1),
        ],
    )
    set_recurrence(client, tenant, "daily")
    seen = make_due(tenant.project_id, ago=timedelta(hours=1))

    with running_worker(tmp_path, JOBYARD_SIMULATED_LATENCY_MS=5) as worker:
        publish_tick()
        jobs = wait_until(
            lambda: scheduled_jobs(tenant.project_id),
            lambda js: len(js) >= 2,
            what="scheduled jobs",
        )
        finished = [wait_for_job(job.id, timeout=60) for job in jobs]
        # More ticks find nothing due: the slot moved a day on.
        publish_tick()
        publish_tick()
        wait_until(lambda: ticks_done(worker), lambda n: n >= 3, what="three ticks")

    assert [job.status for job in finished] == ["completed", "completed"]
    for job in finished:
        assert_counters_exact(job.id)
    assert sorted(job.total for job in finished) == [1, 4]
    assert len(scheduled_jobs(tenant.project_id)) == 2
    assert runs_per_slot(tenant.project_id) == {
        (seen.isoformat(), item["id"]): 1 for item in created
    }
    by_cached_job = {job.metadata_["cachedJobId"]: job for job in finished}
    for item in created:
        assert by_cached_job[item["id"]].payload["queryIds"] == [item["query_id"]]
        assert by_cached_job[item["id"]].payload["aiModels"] == item["aiModels"]
        assert by_cached_job[item["id"]].created_by_user_id is None
    assert next_run_at(tenant.project_id) == seen + timedelta(days=1)

    for item in created:
        got = client.get(f"/api/cached-jobs/{item['id']}", headers=tenant.headers()).json
        assert got["status"] == "ended"
    # The jobs read back through the jobs API like any other.
    job_id = str(finished[0].id)
    body = client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json
    assert body["status"] == "completed" and body["createdBy"] is None


def test_two_beats_run_every_slot_exactly_once(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, empty_broker: object
) -> None:
    """Two beats tick every second into two workers; four slots made due one after the
    other each run every cached job exactly once."""
    created = create_cached_jobs(client, tenant, [(q, ["openai"], 1) for q in tenant.query_ids])
    set_recurrence(client, tenant, "daily")
    for name in ("w1", "w2", "b1", "b2"):
        (tmp_path / name).mkdir()
    beat_env = {"JOBYARD_SCHEDULE_TICK_SECONDS": 1}
    slots = []
    with (
        running_worker(tmp_path / "w1", concurrency=8) as w1,
        running_worker(tmp_path / "w2", concurrency=8) as w2,
        running_beat(tmp_path / "b1", **beat_env) as b1,
        running_beat(tmp_path / "b2", **beat_env) as b2,
    ):
        for _ in range(4):
            seen = make_due(tenant.project_id)
            slots.append(seen)
            wait_until(
                lambda: next_run_at(tenant.project_id),
                lambda value, seen=seen: value is not None and value != seen,
                what=f"slot {seen.isoformat()} claimed",
            )
            moved = next_run_at(tenant.project_id)
            assert moved is not None and moved > datetime.now(UTC) + timedelta(hours=23)
        # Let both beats tick a few more times over the claimed slots.
        after = ticks_done(w1, w2)
        wait_until(lambda: ticks_done(w1, w2), lambda n: n >= after + 6, what="more ticks")
        jobs = scheduled_jobs(tenant.project_id)
        finished = [wait_for_job(job.id, timeout=60) for job in jobs]
        beat_logs = [b.log_path.read_bytes() for b in (b1, b2)]

    assert all(b"Sending due task schedules-tick" in log for log in beat_logs)
    assert len({s.isoformat() for s in slots}) == 4
    expected = {(s.isoformat(), item["id"]): 1 for s in slots for item in created}
    assert runs_per_slot(tenant.project_id) == expected
    assert len(finished) == 4 * len(created)
    assert all(job.status == "completed" for job in finished)
    for job in finished:
        assert_counters_exact(job.id)
    assert {uuid.UUID(job.metadata_["cachedJobId"]) for job in finished} == {
        uuid.UUID(item["id"]) for item in created
    }
