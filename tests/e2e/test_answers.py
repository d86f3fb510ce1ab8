"""What a job keeps of real provider answers, end to end (API, worker, loopback OpenAI):
sources, usage, the model served, and the cost of every attempt, summed on the job."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from shared.db import session_scope
from shared.mentionlab.models import Project
from shared.models import Execution
from tests.e2e.test_provider_faults import openai_env, tenant_with_unique_queries, trigger
from tests.fakes import FakeOpenAI, Reply, Truncated
from tests.support import assert_counters_exact, running_worker, wait_for_job

pytestmark = pytest.mark.slow

CITED = ("https://www.g2.com/categories/crm", "https://acme.example/pricing")


@pytest.fixture
def fake_openai() -> FakeOpenAI:
    with FakeOpenAI() as fake:
        yield fake  # type: ignore[misc]


def test_job_cost_is_the_sum_of_its_executions_costs_failed_attempts_included(
    client: FlaskClient, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.default = Reply(
        "Acme is the usual pick.", citations=CITED, retrieved=("https://x.example/",)
    )
    fake_openai.script([Truncated()])  # billed, then failed: its cost still counts
    tenant = tenant_with_unique_queries(6)
    with running_worker(tmp_path, concurrency=4, **openai_env(fake_openai)):
        job_id = trigger(client, tenant)
        job = wait_for_job(job_id, timeout=60)
    assert (job.success, job.failed) == (5, 1), job.status
    assert_counters_exact(job_id)
    with session_scope() as session:
        total = session.scalar(
            select(func.sum(Execution.cost)).where(Execution.job_id == uuid.UUID(job_id))
        )
        failed_cost = session.scalar(
            select(Execution.cost).where(
                Execution.job_id == uuid.UUID(job_id), Execution.status == "failed"
            )
        )
    assert failed_cost and failed_cost > 0
    assert job.cost == pytest.approx(total) and job.cost > failed_cost

    answered = client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json
    assert answered["cost"] == pytest.approx(job.cost)
    executions = client.get(
        f"/api/jobs/{job_id}/executions?limit=100", headers=tenant.headers()
    ).json["results"]
    succeeded = [e for e in executions if e["status"] == "success"]
    assert len(succeeded) == 5
    first = succeeded[0]
    assert [s["url"] for s in first["sources"]] == list(CITED)
    assert [s["position"] for s in first["sources"]] == [1, 2]
    assert [(s["domain"], s["cited"]) for s in first["retrievedSources"]] == [
        ("g2.com", True),
        ("acme.example", True),
        ("x.example", False),
    ]
    assert first["webSearch"] == "on"
    assert first["servedModel"] == "gpt-4.1-mini-2025-04-14"
    assert first["usage"]["inputTokens"] > 0 and first["usage"]["searchCalls"] == 1
    assert first["cost"] > 0
    assert sum(e["cost"] for e in executions) == pytest.approx(job.cost)


def test_a_project_can_ask_for_the_bare_model(
    client: FlaskClient, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.default = Reply("Acme.", citations=CITED)
    tenant = tenant_with_unique_queries(2)
    response = client.patch("/api/projects", headers=tenant.headers(), json={"webSearch": False})
    assert response.status_code == 200, response.json
    assert response.json["webSearch"] is False
    with session_scope() as session:
        project = session.get(Project, tenant.project_id)
        assert project is not None and project.web_search is False
    with running_worker(tmp_path, concurrency=4, **openai_env(fake_openai)):
        job_id = trigger(client, tenant)
        job = wait_for_job(job_id, timeout=60)
    assert job.status == "completed"
    assert len(fake_openai.requests) == 2
    assert all("tools" not in r.json for r in fake_openai.requests)
    executions = client.get(f"/api/jobs/{job_id}/executions", headers=tenant.headers()).json
    for execution in executions["results"]:
        assert execution["webSearch"] == "off"
        assert execution["retrievedSources"] == []
        assert execution["sources"] == []
