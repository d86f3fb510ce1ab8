"""Structured logs: JSON lines carrying the organisation, job, execution and task ids, from
the API request through a real worker's fan-out, group runs and the job's finish."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from shared import logs
from shared.db import session_scope
from shared.engine.claim import Claim
from shared.engine.finish import Finished, FlushReport
from shared.engine.outcomes import Outcome
from shared.messaging.queues import FAN_OUT_TASK, RUN_GROUP_TASK
from shared.models import Execution
from tests.support import (
    Tenant,
    json_log_lines,
    log_messages,
    running_worker,
    unexpected_errors,
    wait_for_job,
)
from worker.runtime.completer import Completion, log_finishes

pytestmark = pytest.mark.slow

# A log line in the text format: "[2026-11-24 22:05:28,123: INFO/MainProcess] ..."
TEXT_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [^\]]*: [A-Z]+/[^\]]*\]", re.MULTILINE)


@pytest.fixture
def api_log() -> io.StringIO:
    """The API's log lines (JSON), from a handler installed as the app installs its own."""
    stream = io.StringIO()
    handler = logs.configure_logging("json", logging.INFO, stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def request_lines(stream: io.StringIO, method: str, path: str) -> list[dict[str, Any]]:
    return [
        r
        for r in records(stream)
        if r["logger"] == "jobyard.api.request" and r["method"] == method and r["path"] == path
    ]


def execution_ids(job_id: str) -> set[str]:
    with session_scope() as session:
        return {
            str(i)
            for i in session.scalars(
                select(Execution.id).where(Execution.job_id == uuid.UUID(job_id))
            )
        }


def test_a_job_is_followed_from_the_request_to_its_finish_by_its_ids(
    client: FlaskClient, tenant: Tenant, other_tenant: Tenant, tmp_path: Path, api_log: Any
) -> None:
    org = str(tenant.org_id)
    with running_worker(tmp_path, 4) as worker:
        response = client.post(
            "/api/jobs/trigger",
            headers=tenant.headers(),
            json={"aiModels": ["gpt-4.1-mini"], "executionCount": 2},
        )
        assert response.status_code == 201, response.json
        job_id = response.json["id"]
        assert wait_for_job(job_id).status == "completed"
        # Another caller's request names its own organisation (and no job).
        assert client.get(f"/api/jobs/{job_id}", headers=other_tenant.headers()).status_code == 404
    log = worker.log_path.read_bytes()
    executions = execution_ids(job_id)
    assert len(executions) == 6

    # The API: the create's line carries the organisation and the job it created.
    [created] = request_lines(api_log, "POST", "/api/jobs/trigger")
    assert created["organisation_id"] == org and created["job_id"] == job_id
    assert created["status"] == 201 and created["level"] == "INFO"
    assert isinstance(created["duration_ms"], float)
    [other] = request_lines(api_log, "GET", f"/api/jobs/{job_id}")
    assert other["organisation_id"] == str(other_tenant.org_id) and other["status"] == 404
    assert "job_id" not in other

    # The worker: every log line is a JSON object (only Celery's banner is not a log line).
    assert not TEXT_LINE.search(log), TEXT_LINE.search(log)
    lines = json_log_lines(log)
    assert {"time", "level", "logger", "message", "process"} <= set(lines[0])

    # The fan-out task: its lines carry its task id, the job and the organisation; the
    # organisation came with the message (Celery's own "succeeded" line, logged after the
    # fan-out's own context has ended, has it from the message's headers).
    fan_outs = [r for r in lines if r.get("task") == FAN_OUT_TASK]
    wrote = [r for r in fan_outs if r["message"] == f"fan-out of job {job_id} wrote 6 executions"]
    assert len(wrote) == 1, fan_outs
    fan_out_task = wrote[0]["task_id"]
    assert wrote[0]["job_id"] == job_id and wrote[0]["organisation_id"] == org
    uuid.UUID(fan_out_task)
    [succeeded] = [r for r in fan_outs if "succeeded" in r["message"]]
    assert succeeded["task_id"] == fan_out_task and fan_out_task in succeeded["message"]
    assert succeeded["organisation_id"] == org and succeeded["job_id"] == job_id

    # The group runs: each line names its task, the job, the organisation and the
    # executions it ran; together they ran every execution once.
    groups = [r for r in lines if r["message"].startswith("group ran:")]
    assert groups
    ran: list[str] = []
    for group in groups:
        assert group["task"] == RUN_GROUP_TASK and group["task_id"] != fan_out_task
        assert group["job_id"] == job_id and group["organisation_id"] == org
        assert group["counted"] == len(group["execution_ids"])
        ran += group["execution_ids"]
        # The task id is the Celery task's: its own trace line says so.
        assert any(group["task_id"] in r["message"] and "succeeded" in r["message"] for r in lines)
    assert sorted(ran) == sorted(executions)

    # The finish: written by the completer thread, in the name of the group task whose
    # outcome ended the job.
    [finished] = [r for r in lines if r["message"] == f"job {job_id} finished: completed"]
    assert finished["job_id"] == job_id and finished["organisation_id"] == org
    assert finished["task_id"] in {g["task_id"] for g in groups}
    assert finished["job_status"] == "completed"


def test_a_line_about_one_execution_names_it_and_the_task_it_came_from(tmp_path: Path) -> None:
    """The completer's per-execution lines (WARNING when failed for good, INFO when it will
    retry, DEBUG on success) carry the execution, its job and the group task's ids."""
    stream = io.StringIO()
    handler = logs.configure_logging("json", logging.DEBUG, stream)
    try:
        job_id, org = uuid.uuid4(), uuid.uuid4()
        claims = [
            Claim(uuid.uuid4(), job_id, "ai_queries", uuid.uuid4(), "pending", 1, 3, {}, org)
            for _ in range(3)
        ]
        with logs.bound(task_id="task-1", job_id=job_id, organisation_id=org):
            completion = Completion(3)
        outcomes = [
            Outcome.succeeded({}),
            Outcome.failed("boom", retryable=True),
            Outcome.failed("no", retryable=False),
        ]
        report = FlushReport(
            finished=[
                Finished(claims[0], "success"),
                Finished(claims[1], "retrying", 1.0),
                Finished(claims[2], "failed"),
            ],
            jobs_ended=[job_id],
            ended_statuses={job_id: "partial_failed"},
        )
        log_finishes([(c, o, completion) for c, o in zip(claims, outcomes, strict=True)], report)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = records(stream)
    by_execution = {r.get("execution_id"): r for r in lines if "execution_id" in r}
    assert set(by_execution) == {str(c.execution_id) for c in claims}
    levels = [by_execution[str(c.execution_id)]["level"] for c in claims]
    assert levels == ["DEBUG", "INFO", "WARNING"]
    assert by_execution[str(claims[2].execution_id)]["message"].endswith(": no")
    for record in lines:
        assert record["task_id"] == "task-1" and record["job_id"] == str(job_id)
        assert record["organisation_id"] == str(org)
    [ended] = [r for r in lines if "finished" in r["message"]]
    assert ended["job_status"] == "partial_failed"


def test_the_text_format_keeps_celerys_line_and_appends_the_ids() -> None:
    """JOBYARD_LOG_FORMAT=text (``make up``): the line the error checks of the tests and
    people know, the bound ids after it."""
    stream = io.StringIO()
    handler = logs.configure_logging("text", logging.INFO, stream)

    def log_twice() -> None:
        with logs.bound(organisation_id="org-1", job_id="job-1", task_id="task-1"):
            logging.getLogger("jobyard.test").warning("something happened")
        logging.getLogger("jobyard.test").info("no ids")

    try:
        # A context of its own: ids an earlier test of this process left bound stay out.
        contextvars.Context().run(log_twice)
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert TEXT_LINE.match(first.encode()) and TEXT_LINE.match(second.encode())
    assert first.endswith(
        "WARNING/MainProcess] jobyard.test: something happened "
        "[organisation_id=org-1 job_id=job-1 task_id=task-1]"
    )
    assert second.endswith("INFO/MainProcess] jobyard.test: no ids")


def test_a_worker_logs_errors_are_found_in_json_and_in_text() -> None:
    """running_worker fails a test on a worker's ERROR line: it must see JSON ones."""
    log = (
        b" -------------- banner\n"
        b'{"level": "INFO", "message": "fine"}\n'
        b'{"level": "ERROR", "message": "executor of ai_queries failed", "job_id": "j"}\n'
        b"[2026-11-30 01:00:00,000: CRITICAL/MainProcess] worker: gone\n"
    )
    found = unexpected_errors(log)
    assert len(found) == 2 and any("executor of ai_queries failed" in f for f in found)
    assert any("CRITICAL/MainProcess" in f for f in found)
    assert unexpected_errors(log, allowed=("executor of", "gone")) == []
    assert log_messages(log).splitlines()[1:3] == [b"fine", b"executor of ai_queries failed"]
