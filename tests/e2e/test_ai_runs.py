"""A Mentionlab client triggers a run and watches it finish, with a real worker process."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from shared.settings import reset_settings_cache
from tests.support import Tenant, assert_counters_exact, running_worker, wait_for_job

MODELS = ["gpt-4.1-mini", "claude-haiku-4-5", "gemini-2.5-flash"]


def trigger(client: FlaskClient, tenant: Tenant, runs: int = 3) -> str:
    response = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": MODELS, "executionCount": runs},
    )
    assert response.status_code == 201, response.json
    assert response.json["totalExecutions"] == 3 * len(MODELS) * runs
    job_id: str = response.json["id"]
    return job_id


def test_three_queries_three_models_three_runs_complete(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, empty_broker: object
) -> None:
    """27 executions all succeed, and every one carries a simulated answer."""
    with running_worker(tmp_path, JOBYARD_SIMULATED_LATENCY_MS=5):
        job_id = trigger(client, tenant)
        job = wait_for_job(job_id, timeout=60)
    assert job.status == "completed"
    assert (job.success, job.failed, job.pending, job.retrying) == (27, 0, 0, 0)
    assert_counters_exact(job_id)

    body = client.get(f"/api/jobs/{job_id}", headers=tenant.headers()).json
    assert body["status"] == "completed" and body["successExecutions"] == 27
    assert body["finishedAt"] is not None
    summaries = {m["model"]: m for m in body["models"]}
    assert list(summaries) == MODELS
    for summary in summaries.values():
        assert (summary["totalExecutions"], summary["successExecutions"]) == (9, 9)
        assert summary["failedExecutions"] == summary["pendingExecutions"] == 0
        assert summary["mentionRate"] is not None and 0 <= summary["mentionRate"] <= 1
    too_late = client.post(f"/api/jobs/{job_id}/cancel", headers=tenant.headers())
    assert too_late.status_code == 409
    assert too_late.json["message"] == f"Job {job_id} has already finished (completed)"

    page = client.get(f"/api/jobs/{job_id}/executions?limit=100", headers=tenant.headers()).json
    assert page["page"]["totalRecords"] == 27
    combos = {(e["queryId"], e["model"], e["runNumber"]) for e in page["results"]}
    assert len(combos) == 27
    execution = client.get(
        f"/api/v1/job-executions/{page['results'][0]['jobExecutionId']}", headers=tenant.headers()
    ).json
    assert execution["status"] == "success"
    assert execution["simulated"] is True
    assert execution["text"].startswith("[simulated answer")
    assert execution["hasSources"] and execution["sources"][0]["url"].startswith("https://")
    # The mention rate is the share of answers whose entities mention the project itself.
    answers = [
        client.get(f"/api/v1/job-executions/{e['jobExecutionId']}", headers=tenant.headers()).json
        for e in page["results"]
        if e["model"] == MODELS[0]
    ]
    mentioning = sum(any(x["isPrimary"] and x["mentioned"] for x in a["entities"]) for a in answers)
    assert summaries[MODELS[0]]["mentionRate"] == round(mentioning / 9, 4)
    names = {e["displayName"]: e for e in execution["entities"]}
    assert set(names) == {"Acme", "Globex", "Initech"}
    assert names["Acme"]["isPrimary"] is True
    for entity in execution["entities"]:
        assert entity["mentioned"] == (entity["mentionCount"] > 0)
        assert (entity["position"] is None) == (not entity["mentioned"])


def test_thirty_percent_failures_end_partial_failed(
    client: FlaskClient,
    tenant: Tenant,
    tmp_path: Path,
    empty_broker: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With one attempt per execution and 30% simulated failures the job is partial_failed."""
    monkeypatch.setenv("JOBYARD_MAX_ATTEMPTS", "1")  # the API snapshots it onto the job
    reset_settings_cache()
    try:
        with running_worker(tmp_path, JOBYARD_SIMULATED_FAILURE_RATE=0.3):
            job_id = trigger(client, tenant, runs=3)
            job = wait_for_job(job_id, timeout=60)
    finally:
        monkeypatch.undo()
        reset_settings_cache()
    assert job.status == "partial_failed", (job.success, job.failed)
    assert job.success > 0 and job.failed > 0 and job.success + job.failed == 27
    assert_counters_exact(job_id)
    failed = client.get(f"/api/jobs/{job_id}/executions?limit=100", headers=tenant.headers()).json
    errors = {e["error"] for e in failed["results"] if e["status"] == "failed"}
    assert errors == {"simulated provider failure (HTTP 503)"}
