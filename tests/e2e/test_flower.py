"""Flower names jobs: a real worker runs two jobs while a real Flower process watches.

Searching Flower's tasks by a job id finds that job's fan-out and group tasks, each shown
with its job, organisation and job type; the group tasks of a job whose executions failed
end FAILURE ("k of n executions failed: ..."), and Flower counts them as failed; those
of a job whose executions succeeded end SUCCESS with the group's tally
(worker/runtime/group_events.py).
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared.settings import reset_settings_cache
from tests.flower_support import Flower, running_flower
from tests.support import Tenant, running_worker, wait_for_job, wait_until

ENDED = ("SUCCESS", "FAILURE")


def group_tasks(flower: Flower, job_id: str) -> dict[str, dict[str, Any]]:
    """The job's ``executions.run`` tasks, as Flower's search by the job id finds them."""
    return {
        task_id: task
        for task_id, task in flower.tasks(job_id).items()
        if task["name"] == "executions.run"
    }


def ended_groups(flower: Flower, job_id: str, timeout: float = 15) -> dict[str, dict[str, Any]]:
    """The job's group tasks once Flower has seen every one of them end."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = group_tasks(flower, job_id)
        if tasks and all(t["state"] in ENDED for t in tasks.values()):
            return tasks
        assert time.monotonic() < deadline, f"group tasks of {job_id} never ended: {tasks}"
        time.sleep(0.2)


def failed_events(flower: Flower) -> float:
    """Flower's count of failed ``executions.run`` tasks (its Workers page's Failed)."""
    text = flower.get("/metrics").text
    pattern = re.compile(r"^flower_events_total\{([^}]*)\} (\S+)$", re.MULTILINE)
    return sum(
        float(value)
        for labels, value in pattern.findall(text)
        if 'type="task-failed"' in labels and 'task="executions.run"' in labels
    )


def test_flower_finds_a_jobs_tasks_by_its_id_and_shows_failed_groups(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    empty_broker: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBYARD_MAX_ATTEMPTS", "1")  # the API snapshots it onto the job
    reset_settings_cache()
    try:
        with (
            running_flower(tmp_path / "flower.log", wait=False) as flower,  # both start at once
            running_worker(
                tmp_path, concurrency=2, with_sender=False, JOBYARD_SIMULATED_FAILURE_RATE=1.0
            ),
        ):
            flower.wait_ready()
            wait_until(flower.sees_a_worker, 15, "Flower to see the worker")
            # Every provider call fails (one attempt each): an ai_queries job of 3 calls.
            failing = client.post(
                "/api/jobs/trigger",
                headers=tenant.headers(),
                json={"aiModels": ["gpt-4.1-mini"], "executionCount": 1},
            )
            assert failing.status_code == 201, failing.json
            failing_id = failing.json["id"]
            # An echo job calls no provider: its 3 executions succeed.
            echo = client.post(
                "/v1/jobs",
                headers=tenant.headers(bearer=True, project=False),
                json={"jobType": "echo", "payload": {"items": [1, 2, 3]}},
            )
            assert echo.status_code == 201, echo.json
            echo_id = echo.json["data"]["jobId"]
            assert wait_for_job(failing_id).status == "failed"
            assert wait_for_job(echo_id).status == "completed"

            failed_groups = ended_groups(flower, failing_id)
            echo_groups = ended_groups(flower, echo_id)
            found = flower.tasks(echo_id)
            exact = flower.tasks(f"kwargs:job_id={echo_id}")
            failed_count = failed_events(flower)
    finally:
        monkeypatch.undo()
        reset_settings_cache()

    # Each group task shows its job, organisation and type (kwargsrepr), and only its job's.
    for job_id, job_type, groups in (
        (failing_id, "ai_queries", failed_groups),
        (echo_id, "echo", echo_groups),
    ):
        for task in groups.values():
            assert ast.literal_eval(task["kwargs"]) == {
                "job_id": job_id,
                "organisation_id": str(tenant.org_id),
                "job_type": job_type,
            }
    assert not set(failed_groups) & set(echo_groups)

    # The search finds the fan-out too (its argument is the job id), shown with the
    # organisation; the exact ``kwargs:job_id=`` search finds the same tasks.
    fan_outs = [t for t in found.values() if t["name"] == "jobs.fan_out"]
    assert len(fan_outs) == 1
    assert ast.literal_eval(fan_outs[0]["kwargs"]) == {
        "job_id": echo_id,
        "organisation_id": str(tenant.org_id),
    }
    assert set(exact) == set(found)

    # Failed executions: their groups end FAILURE, saying how many failed and why; the
    # tallies add up to the job's three failures, and Flower counts the failed tasks.
    assert {t["state"] for t in failed_groups.values()} == {"FAILURE"}
    failed_in_groups = 0
    for task in failed_groups.values():
        assert re.fullmatch(
            r"\d+ of \d+ executions failed: simulated provider failure \(HTTP 503\)",
            task["exception"],
        ), task["exception"]
        tally = ast.literal_eval(task["result"])  # its counts that are not zero
        failed_in_groups += tally["failed"]
        assert tally == {"claimed": tally["failed"], "failed": tally["failed"]}
    assert failed_in_groups == 3
    assert failed_count == len(failed_groups)

    # Succeeded executions: SUCCESS, with the tally of the group's executions, not of the
    # moment the task handed them to the event loop.
    assert {t["state"] for t in echo_groups.values()} == {"SUCCESS"}
    tallies = [ast.literal_eval(t["result"]) for t in echo_groups.values()]
    assert all(t == {"claimed": t["succeeded"], "succeeded": t["succeeded"]} for t in tallies)
    assert sum(t["succeeded"] for t in tallies) == 3
