"""Every answer of every operation of every family is what its own spec says, on real data:
one organisation with AI runs, batches (data points parked, queued, canceled, finished,
with callbacks delivered) and knowledge-base sync runs, all done by a real worker. Each
operation of each spec is called at least once and its answer is validated against the
operation's documented response (schemathesis' validation: JSON Schema over the spec's
resolved schema, ``nullable`` and ``required`` included). schemathesis' fuzzing
(tests/api/test_schemathesis.py) only sees the data it makes itself: no finished run, no
sync run, no mixture of job types in one list.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask.testing import FlaskClient
from schemathesis.core.failures import Failure, FailureGroup
from werkzeug.test import TestResponse

from api.families import Family, discover
from tests.fakes import FakeWebhookReceiver
from tests.kb_support import (
    SOURCE_URL,
    insert_orders,
    job_body,
    private_allowed,  # noqa: F401 - a fixture
    quiet_other_sync_jobs,
    source_table,
)
from tests.support import (
    Tenant,
    fail_every_execution,
    running_worker,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.slow

FAMILIES = {family.name: family for family in discover()}
WORKER = {
    "JOBYARD_ALLOW_PRIVATE_URLS": "true",  # the source database and the receiver: loopback
    "JOBYARD_WEBHOOK_RETRY_SCHEDULE": "[0, 0.3, 0.3]",
}


class SpecWalk:
    """Calls operations through the app and validates each answer against its family's
    spec; remembers which operations it has validated."""

    def __init__(self, client: FlaskClient, tenant: Tenant) -> None:
        self.client = client
        self.tenant = tenant
        self.specs = {
            name: client.get(family.docs_prefix.rstrip("/") + "/openapi.json").get_json()
            for name, family in FAMILIES.items()
        }
        self.schemas = {name: schemathesis.openapi.from_dict(s) for name, s in self.specs.items()}
        self.validated: set[tuple[str, str, str]] = set()

    def credentials(self, family: Family) -> dict[str, str]:
        if family.name == "valpay":
            return {"Authorization": f"Bearer {self.tenant.token}"}
        if family.name == "superai":
            return {"API-KEY": self.tenant.api_key}
        return self.tenant.headers()

    def call(
        self,
        family: str,
        method: str,
        template: str,
        status: int | None = None,
        *,
        headers: dict[str, str] | None = None,
        **path: Any,
    ) -> Any:
        """``METHOD template`` (filled from ``path``; ``json=``/``query_string=`` go with the
        request), checked for ``status`` (else any 2xx) and validated: its JSON body."""
        request = {k: path.pop(k) for k in ("json", "query_string") if k in path}
        url = template.format(**{k: str(v) for k, v in path.items()})
        response: TestResponse = self.client.open(
            url,
            method=method,
            headers={**self.credentials(FAMILIES[family]), **(headers or {})},
            **request,
        )
        if status is None:
            assert 200 <= response.status_code < 300, (method, url, response.get_data(as_text=True))
        else:
            assert response.status_code == status, (method, url, response.get_data(as_text=True))
        operation = self.schemas[family][template][method]
        try:
            operation.validate_response(response)
        except (Failure, FailureGroup) as failed:
            found = failed.exceptions if isinstance(failed, FailureGroup) else [failed]
            raise AssertionError(
                f"{method} {url} ({response.status_code}) does not match {family}'s spec:\n"
                + "\n".join(f"- {f.title}: {f.message}" for f in found)
            ) from None
        self.validated.add((family, method, template))
        return response.json if response.is_json else response.get_data(as_text=True)

    def not_validated(self) -> list[str]:
        return sorted(
            f"{family} {method.upper()} {path}"
            for family, spec in self.specs.items()
            for path, item in spec["paths"].items()
            for method in item
            if method != "parameters" and (family, method.upper(), path) not in self.validated
        )


@pytest.fixture
def receiver() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as fake:
        yield fake


@pytest.mark.usefixtures("private_allowed")
def test_every_answer_of_every_operation_matches_its_spec(
    client: FlaskClient, tenant: Tenant, tmp_path: Path, receiver: FakeWebhookReceiver
) -> None:
    quiet_other_sync_jobs()
    walk = SpecWalk(client, tenant)
    project, app_id = tenant.project_id, tenant.project_id
    with source_table() as (engine, table), running_worker(tmp_path, concurrency=8, **WORKER):
        insert_orders(engine, table, 30, start=1, at=datetime(2026, 1, 1))

        # -- Mentionlab: projects, queries, AI runs and cached jobs
        created = walk.call("mentionlab", "POST", "/api/projects", json={"name": "Second"})
        second = {"x-project-id": created["id"]}
        walk.call("mentionlab", "PATCH", "/api/projects", json={"website": "https://a.test"})
        walk.call("mentionlab", "GET", "/api/projects/list")
        walk.call("mentionlab", "GET", "/api/projects/{project_id}", project_id=created["id"])
        query = walk.call("mentionlab", "POST", "/api/queries", json={"query": "best tools?"})
        walk.call(
            "mentionlab", "POST", "/api/queries/many", json={"queries": [{"query": "and cheap?"}]}
        )
        walk.call("mentionlab", "POST", "/api/queries/list", json={"sort": []})
        walk.call("mentionlab", "GET", "/api/queries/{query_id}", query_id=query["id"])
        run = walk.call(
            "mentionlab",
            "POST",
            "/api/jobs/trigger",
            json={"aiModels": ["gpt-4.1-mini", "sonar"], "executionCount": 2},
        )
        walk.call(
            "mentionlab",
            "POST",
            "/api/cached-jobs/many",
            json={
                "cachedJobs": [
                    {"queryId": query["id"], "aiModels": ["openai"], "executionCount": 1}
                ]
            },
        )
        (cached_run,) = walk.call("mentionlab", "POST", "/api/cached-jobs/trigger", json={})

        # -- super.AI: a processor, a finished batch with callbacks, a parked one
        walk.call(
            "superai",
            "PUT",
            "/v1/apps/{app_id}/processor",
            app_id=app_id,
            json={"promptTemplate": "Summarise: {{ text }}", "model": "sonar"},
        )
        walk.call("superai", "GET", "/v1/apps/{app_id}/processor", app_id=app_id)
        walk.call("superai", "GET", "/v1/webhooks/secret")
        walk.call("superai", "POST", "/v1/webhooks/secret")
        batch = walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/jobs",
            app_id=app_id,
            json={"inputs": [{"text": "one"}, {"text": "two"}], "callbackUrl": receiver.hook_url},
        )
        parked = walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/jobs",
            app_id=app_id,
            json={
                "inputs": [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"text": "d"}],
                "pending": True,
                "metadata": {"k": 1},
            },
        )

        # -- Smart DB: a source, a knowledge base, a sync job and a run of it
        database = f"db_{uuid.uuid4().hex[:6]}"
        walk.call("smartdb", "POST", "/databases", json={"name": database, "url": SOURCE_URL})
        walk.call("smartdb", "POST", "/knowledge_bases", json={"name": "orders_kb"})
        body = job_body(database, table.name, "orders_kb")
        walk.call("smartdb", "POST", "/jobs/create", json=body)
        sync_name = body["job_name"]
        started = walk.call("smartdb", "POST", "/jobs/{name}/run", name=sync_name)

        # -- Valpay: one more run, of each creatable type's first
        valpay_run = walk.call(
            "valpay",
            "POST",
            "/v1/jobs",
            json={
                "jobType": "ai_queries",
                "payload": {"projectId": str(project), "aiModels": ["sonar"], "executionCount": 1},
            },
        )
        for job_id in (run["id"], cached_run["id"], batch["batchId"], valpay_run["data"]["jobId"]):
            wait_for_job(job_id, timeout=60)
        wait_for_job(started["data"]["run_job_id"], timeout=60)
        wait_until(lambda: len(receiver.requests) >= 3, 30, "the batch's callbacks")

        # -- Mentionlab reads: AI runs only (a batch or a sync run is not one of them)
        listed = walk.call("mentionlab", "POST", "/api/jobs/list", json={}, headers={})
        assert {job["type"] for job in listed["results"]} == {"ai_queries"}
        assert len(listed["results"]) == 3
        walk.call("mentionlab", "GET", "/api/jobs/{job_id}", job_id=run["id"])
        for other in (batch["batchId"], started["data"]["run_job_id"]):
            walk.call("mentionlab", "GET", "/api/jobs/{job_id}", 404, job_id=other)
        page = walk.call("mentionlab", "GET", "/api/jobs/{job_id}/executions", job_id=run["id"])
        walk.call(
            "mentionlab",
            "GET",
            "/api/v1/job-executions/{execution_id}",
            execution_id=page["results"][0]["jobExecutionId"],
        )
        walk.call("mentionlab", "GET", "/api/jobs/{job_id}/events", job_id=run["id"])
        walk.call("mentionlab", "POST", "/api/jobs/{job_id}/events/token", job_id=run["id"])
        walk.call("mentionlab", "POST", "/api/jobs/{job_id}/cancel", 409, job_id=run["id"])
        cached = walk.call("mentionlab", "POST", "/api/cached-jobs/list", json={})
        walk.call(
            "mentionlab",
            "GET",
            "/api/cached-jobs/{cached_job_id}",
            cached_job_id=cached["results"][0]["id"],
        )
        walk.call("mentionlab", "POST", "/api/jobs/list", json={}, headers=second)

        # -- super.AI reads, and the parked batch's data points queued and canceled
        points = walk.call("superai", "GET", "/v1/apps/{app_id}/jobs", app_id=app_id)["jobs"]
        finished = next(p for p in points if p["status"] == "COMPLETED")
        waiting = [p["id"] for p in points if p["status"] == "PENDING"]
        for template in (
            "/v1/apps/{app_id}/jobs/{job_id}",
            "/v1/apps/{app_id}/jobs/{job_id}/response",
        ):
            walk.call("superai", "GET", template, app_id=app_id, job_id=finished["id"])
            walk.call("superai", "GET", template, app_id=app_id, job_id=waiting[0])
        walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/jobs/{job_id}/cancel",
            app_id=app_id,
            job_id=waiting[0],
        )
        walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/jobs/{job_id}/queue",
            app_id=app_id,
            job_id=waiting[1],
        )
        # The same data points where super.AI's own client reads them (/v1/jobs/{id}).
        for template in ("/v1/jobs/{job_id}", "/v1/jobs/{job_id}/response"):
            walk.call("superai", "GET", template, job_id=finished["id"])
        walk.call("superai", "POST", "/v1/jobs/{job_id}/cancel", job_id=waiting[2])
        walk.call("superai", "POST", "/v1/jobs/{job_id}/queue", job_id=waiting[3])
        review = {"correct": False, "response": "a better summary"}
        walk.call(
            "superai", "PATCH", "/v1/jobs/{job_id}/review", json=review, job_id=finished["id"]
        )
        walk.call(
            "superai",
            "PATCH",
            "/v1/apps/{app_id}/jobs/{job_id}/review",
            app_id=app_id,
            job_id=finished["id"],
            json={"correct": True},
        )
        walk.call("superai", "GET", "/v1/apps/{app_id}/batches", app_id=app_id)
        for batch_id in (batch["batchId"], parked["batchId"]):
            walk.call(
                "superai",
                "GET",
                "/v1/apps/{app_id}/batches/{batch_id}",
                app_id=app_id,
                batch_id=batch_id,
            )
        log = walk.call(
            "superai",
            "GET",
            "/v1/apps/{app_id}/batches/{batch_id}/deliveries",
            app_id=app_id,
            batch_id=batch["batchId"],
        )
        assert log, "the batch's callbacks are logged"
        walk.call(
            "superai",
            "GET",
            "/v1/apps/{app_id}/jobs/{job_id}/deliveries",
            app_id=app_id,
            job_id=finished["id"],
        )
        walk.call(
            "superai",
            "GET",
            "/v1/apps/{app_id}/deliveries/{delivery_id}",
            app_id=app_id,
            delivery_id=log[0]["id"],
        )
        walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/deliveries/{delivery_id}/resend",
            app_id=app_id,
            delivery_id=log[0]["id"],
        )
        walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/batches/{batch_id}/deliveries/resend",
            app_id=app_id,
            batch_id=batch["batchId"],
            json={"since": "2020-01-01T00:00:00Z"},
        )

        # -- Valpay reads: every type in one list
        jobs = walk.call("valpay", "GET", "/v1/jobs", query_string={"limit": 100})["data"]["jobs"]
        assert {job["jobType"] for job in jobs} == {"ai_queries", "batch", "kb_sync"}
        for job in jobs:
            walk.call("valpay", "GET", "/v1/jobs/{job_id}", job_id=job["jobId"])

        # -- Retry on demand: each family's route refuses a job that failed nothing (409,
        # in its envelope); the 200s follow, once the worker is gone.
        walk.call("mentionlab", "POST", "/api/jobs/{job_id}/retry", 409, job_id=run["id"])
        walk.call(
            "valpay", "POST", "/v1/jobs/{job_id}/retry", 409, job_id=valpay_run["data"]["jobId"]
        )
        walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/batches/{batch_id}/retry",
            409,
            app_id=app_id,
            batch_id=batch["batchId"],
        )
        walk.call(
            "superai",
            "POST",
            "/v1/apps/{app_id}/jobs/{job_id}/retry",
            409,
            app_id=app_id,
            job_id=finished["id"],
        )
        walk.call(
            "smartdb",
            "POST",
            "/jobs/{name}/history/{run}/retry",
            409,
            name=sync_name,
            run=started["data"]["run_job_id"],
        )

        # -- Smart DB reads, then everything deleted
        walk.call("smartdb", "GET", "/databases")
        walk.call("smartdb", "GET", "/databases/{name}", name=database)
        walk.call("smartdb", "GET", "/knowledge_bases")
        walk.call("smartdb", "GET", "/knowledge_bases/{name}", name="orders_kb")
        found = walk.call(
            "smartdb",
            "POST",
            "/knowledge_bases/{name}/search",
            name="orders_kb",
            json={"query": "espresso", "limit": 3},
        )
        assert found["data"], "the sync run filled the knowledge base"
        walk.call("smartdb", "GET", "/jobs")
        walk.call("smartdb", "GET", "/jobs/{name}", name=sync_name)
        walk.call("smartdb", "GET", "/jobs/{name}/history", name=sync_name)
        walk.call("smartdb", "POST", "/jobs/{name}/pause", name=sync_name)
        walk.call("smartdb", "POST", "/jobs/{name}/resume", name=sync_name)
        walk.call("smartdb", "DELETE", "/jobs/{name}", name=sync_name)
        walk.call("smartdb", "DELETE", "/knowledge_bases/{name}", name="orders_kb")
        walk.call("smartdb", "DELETE", "/databases/{name}", name=database)

    # Runs whose every execution failed (no worker now: nothing runs them again), retried:
    # the 200 answers of Mentionlab's and Valpay's retry.
    for family, template in (
        ("mentionlab", "/api/jobs/{job_id}/retry"),
        ("valpay", "/v1/jobs/{job_id}/retry"),
    ):
        failing = walk.call(
            "mentionlab",
            "POST",
            "/api/jobs/trigger",
            json={"aiModels": ["sonar"], "executionCount": 1},
        )
        assert fail_every_execution(failing["id"]) > 0
        walk.call(family, "POST", template, job_id=failing["id"])

    missed = walk.not_validated()
    assert not missed, f"operations no answer was validated for: {missed}"
