"""Tenant isolation, as a matrix built from the app's URL map.

Tenant A owns one of every resource (projects, queries, cached jobs, jobs of every type
with their executions, batches and data points, webhook messages and secrets, source
databases, knowledge bases, sync jobs and their runs). Tenant B, with every credential its
family accepts, names A's resources in the path, in the headers and in the bodies of every
route, and lists everything. The dashboard's routes (``/ui/``) are asked by B logged in
there with each of its credentials (:data:`UI_CASES`). Every reference to A's resources
answers exactly what a reference to a resource that does not exist answers (404 in B's family envelope; for
Smart DB's create body, its documented INVALID_TABLE / INVALID_KB), no answer to B
carries anything of A's, and nothing B does changes a row that belongs to A.

The routes come from ``app.url_map``: a route with no case below fails
``test_every_route_of_the_url_map_has_a_case`` and its own parametrized test, so a new
endpoint cannot be missed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import ColumnElement, Table, false, or_, select
from werkzeug.test import TestResponse

from api import create_app
from api.families import Family, discover, family_for
from shared.db import session_scope
from shared.engine.fanout import fan_out_job
from shared.migrate import load_every_model
from shared.models import Execution, Job, utcnow
from shared.settings import reset_settings_cache
from shared.webhooks import enqueue
from shared.webhooks.messages import MessageState
from shared.webhooks.models import WebhookMessage
from tests.kb_support import SOURCE_URL, insert_orders, job_body, source_table
from tests.support import Tenant, fail_every_execution, make_tenant

# Routes that take no tenant resource at all: nothing of anyone's to name.
NO_TENANT_RESOURCE = {
    ("/healthz", "GET"),  # liveness: the database and Redis answer
    ("/static/<path:filename>", "GET"),  # Flask's static files
    ("/_swagger-ui/<filename>", "GET"),  # Swagger UI's own assets (api/swagger_assets.py)
    ("/metrics", "GET"),  # counts by route and status only, on the metrics listener
    # Every family's OpenAPI spec and Swagger UI, and the root's (api/docs_home.py)
    ("/openapi.json", "GET"),
    ("/docs", "GET"),
    ("/api/openapi.json", "GET"),
    ("/api/docs", "GET"),
    ("/smartdb/openapi.json", "GET"),
    ("/smartdb/docs", "GET"),
    ("/v1/apps/openapi.json", "GET"),
    ("/v1/apps/docs", "GET"),
    ("/v1/jobs/openapi.json", "GET"),
    ("/v1/jobs/docs", "GET"),
    # The dashboard's way in and its own assets; / and /ui send to /ui/.
    ("/", "GET"),
    ("/ui", "GET"),
    ("/ui/static/<path:filename>", "GET"),
    ("/ui/login", "GET"),
    ("/ui/login", "POST"),
    ("/ui/logout", "POST"),
}


def url_map_routes() -> list[tuple[str, str]]:
    """Every (rule, method) the app answers, but HEAD and OPTIONS (Flask's own)."""
    app = create_app({"TESTING": True})
    return sorted(
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    )


ROUTES = url_map_routes()
FAMILIES = discover()


def family_of(path: str) -> Family:
    matches = [f for f in FAMILIES if any(path.startswith(p) for p in f.url_prefixes)]
    assert matches, f"no family answers {path}"
    return max(matches, key=lambda f: max(len(p) for p in f.url_prefixes))


# -- the two tenants ------------------------------------------------------------------------------


@dataclass
class World:
    """Tenant A's resources (ids and names) and tenant B's own few."""

    a: Tenant
    b: Tenant
    table: str  # the source table both tenants' databases point at
    ids: dict[str, str] = field(default_factory=dict)  # A's: what -> id or name
    b_ids: dict[str, str] = field(default_factory=dict)  # B's own
    secrets: list[str] = field(default_factory=list)  # A's strings B must never see

    def a_values(self) -> set[str]:
        """Every id, name and secret of A's that must not reach B."""
        return {*self.ids.values(), *self.secrets}


def ok(response: TestResponse, status: int = 200) -> Any:
    assert response.status_code == status, (response.request.path, response.get_data(True))
    return response.json


def build_world(client: FlaskClient, table: str) -> World:
    a = make_tenant(name="Alpha")
    b = make_tenant(name="Beta")
    world = World(a, b, table)
    ids = world.ids
    ids["org"], ids["user"], ids["project"] = str(a.org_id), str(a.user_id), str(a.project_id)
    ids["query"] = str(a.query_ids[0])
    world.secrets += [a.api_key, a.token]
    auth = a.headers()

    # Mentionlab: a cached job, and an AI job fanned out into executions.
    cached = ok(
        client.post(
            "/api/cached-jobs/many",
            headers=auth,
            json={"cachedJobs": [{"queryId": ids["query"], **CACHED}]},
        ),
        201,
    )
    ids["cached_job"] = cached[0]["id"]
    job = ok(
        client.post(
            "/api/jobs/trigger", headers=auth, json={"aiModels": ["sonar"], "executionCount": 1}
        ),
        201,
    )
    ids["ai_job"] = job["id"]
    fan_out_job(uuid.UUID(ids["ai_job"]))
    with session_scope() as session:
        ids["execution"] = str(
            session.scalar(select(Execution.id).where(Execution.job_id == uuid.UUID(job["id"])))
        )

    # super.AI: a batch with a callback (its data points pending), a parked batch, a
    # failed webhook message of the batch, and the organisation's signing secret.
    app_path = f"/v1/apps/{a.project_id}"
    batch = ok(
        client.post(
            f"{app_path}/jobs",
            headers=auth,
            json={"inputs": [{"a": 1}, {"a": 2}], "callbackUrl": "https://hooks.example.com/a"},
        )
    )
    ids["batch"] = batch["batchId"]
    fan_out_job(uuid.UUID(ids["batch"]))
    points = ok(client.get(f"{app_path}/jobs", headers=auth))["jobs"]
    ids["data_point"] = points[0]["id"]
    parked = ok(
        client.post(f"{app_path}/jobs", headers=auth, json={"inputs": [{"b": 1}], "pending": True})
    )
    ids["parked_batch"], ids["parked_point"] = parked["batchId"], parked["uuid"]
    fan_out_job(uuid.UUID(ids["parked_batch"]))
    with session_scope() as session:
        message = enqueue(
            session,
            organisation_id=a.org_id,
            job_id=uuid.UUID(ids["batch"]),
            execution_id=None,
            event="batch.finished",
            url="https://hooks.example.com/a",
            payload={"entityId": ids["batch"]},
            now=utcnow() - timedelta(minutes=5),
        )
        message.state = MessageState.FAILED
        message.next_attempt_at = None
        session.flush()
        ids["delivery"] = str(message.id)
    world.secrets.append(ok(client.post("/v1/webhooks/secret", headers=auth), 201)["secret"])

    # Smart DB: a database, a knowledge base, and a sync job with a run (a kb_sync job).
    suffix = uuid.uuid4().hex[:8]
    ids["database"], ids["kb"] = f"alpha_db_{suffix}", f"alpha_kb_{suffix}"
    for tenant, names in ((a, ids), (b, world.b_ids)):
        names.setdefault("database", f"beta_db_{suffix}")
        names.setdefault("kb", f"beta_kb_{suffix}")
        ok(
            client.post(
                "/databases",
                headers=tenant.headers(),
                json={"name": names["database"], "url": SOURCE_URL},
            ),
            201,
        )
        ok(
            client.post("/knowledge_bases", headers=tenant.headers(), json={"name": names["kb"]}),
            201,
        )
    sync_job = ok(
        client.post(
            "/jobs/create",
            headers=auth,
            json=job_body(ids["database"], table, ids["kb"], job_name=f"alpha_sync_{suffix}"),
        ),
        201,
    )["data"]
    ids["sync_job"], ids["sync_job_id"] = sync_job["job_name"], sync_job["job_id"]
    run = ok(client.post(f"/jobs/{ids['sync_job']}/run", headers=auth), 202)["data"]
    ids["kb_sync_job"] = run["run_job_id"]

    # B's own failed AI run (A's execution named in B's retry of it is not B's).
    b_job = ok(client.post("/api/jobs/trigger", headers=b.headers(), json=AI_RUN), 201)
    fail_every_execution(b_job["id"])
    world.b_ids["failed_job"] = b_job["id"]

    # Valpay: a cursor of A's job list.
    page = ok(client.get("/v1/jobs", headers=a.headers(bearer=True), query_string={"limit": 1}))
    ids["cursor"] = page["data"]["lastEvaluatedKey"]

    # Every id of A's that B must never be shown, beyond the ones named above.
    with session_scope() as session:
        jobs = session.scalars(select(Job.id).where(Job.organisation_id == a.org_id)).all()
        executions = session.scalars(select(Execution.id).where(Execution.job_id.in_(jobs)))
        world.secrets += [str(i) for i in (*jobs, *executions, *a.query_ids)]
    return world


@pytest.fixture(scope="module")
def matrix_app() -> Flask:
    return create_app({"TESTING": True})


@pytest.fixture(scope="module")
def world(matrix_app: Flask) -> Iterator[World]:
    """Both tenants, once for the module (the source databases are on 127.0.0.1)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")
        reset_settings_cache()
        with source_table() as (engine, table):
            insert_orders(engine, table, 3, start=0, at=datetime(2026, 11, 1, tzinfo=UTC))
            yield build_world(matrix_app.test_client(), table.name)
    reset_settings_cache()


# -- what belongs to an organisation ----------------------------------------------------------------

# Tables that hold no tenant's data (a receiver's breaker is the receiver's, keyed by its
# origin, whoever sends to it; no API reads it).
NOT_TENANT_DATA = {"worker_processes", "webhook_receivers"}


def owned(table: Table, org: uuid.UUID, depth: int = 0) -> ColumnElement[bool]:
    """Rows of ``table`` that are the organisation's, or that point (by a foreign key, at
    any depth) at one of its rows: a row of B's that names A's project is A's business."""
    if table.name == "organisations":
        return table.c.id == org
    if table.name == "users":
        memberships = load_every_model().tables["memberships"]
        return table.c.id.in_(
            select(memberships.c.user_id).where(memberships.c.organisation_id == org)
        )
    conditions: list[ColumnElement[bool]] = []
    if "organisation_id" in table.c:
        conditions.append(table.c.organisation_id == org)
    for fk in table.foreign_keys:
        target = fk.column.table
        if target.name != "organisations" and depth < 5:
            conditions.append(fk.parent.in_(select(fk.column).where(owned(target, org, depth + 1))))
    assert conditions, f"the matrix does not know how {table.name} belongs to an organisation"
    return or_(false(), *conditions)


def snapshot(org: uuid.UUID) -> dict[str, list[str]]:
    """Every row the organisation owns, as text, table by table."""
    found: dict[str, list[str]] = {}
    with session_scope() as session:
        for table in load_every_model().sorted_tables:
            if table.name in NOT_TENANT_DATA:
                continue
            rows = session.execute(select(table).where(owned(table, org))).all()
            found[table.name] = sorted(json.dumps(row._asdict(), default=str) for row in rows)
    return found


# -- the calls of B --------------------------------------------------------------------------------

NOT_FOUND = 404
OWN = 200  # a 2xx answer of B's own data
OWN_NAME = 201  # a name A uses, created in B's namespace (409 DUPLICATE_* once B has it)


@dataclass
class Call:
    """One request by B; ``headers`` are added to (or replace, or with None remove) B's
    credential and context headers."""

    method: str
    path: str
    expect: int | Callable[[World], Call]  # 404, OWN, OWN_NAME, or a control call
    json: Any = None
    headers: dict[str, str | None] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    why: str = ""


Case = Callable[[World], list[Call]]


def by_path(method: str, path: str, **kwargs: Any) -> Call:
    return Call(method, path, NOT_FOUND, **kwargs)


def own(method: str, path: str, **kwargs: Any) -> Call:
    return Call(method, path, OWN, **kwargs)


def a_project(w: World) -> dict[str, str | None]:
    return {"x-project-id": w.ids["project"]}


def app_children(w: World, method: str, rest: str, id_key: str, **kwargs: Any) -> list[Call]:
    """A's child id under A's app, and under B's own app."""
    child = w.ids[id_key]
    return [
        by_path(method, f"/v1/apps/{w.ids['project']}{rest.format(child)}", **kwargs),
        by_path(method, f"/v1/apps/{w.b.project_id}{rest.format(child)}", **kwargs),
    ]


def valpay_create(w: World, job_type: str, payload: dict[str, Any]) -> Call:
    return by_path(
        "POST", "/v1/jobs", json={"jobType": job_type, "payload": payload}, why="body reference"
    )


def sync_body(w: World, database: str, kb: str) -> dict[str, Any]:
    return job_body(database, w.table, kb, job_name=f"beta_{uuid.uuid4().hex[:8]}")


AI_RUN = {"aiModels": ["sonar"], "executionCount": 1}
CACHED = {"aiModels": ["perplexity"], "executionCount": 1}

CASES: dict[tuple[str, str], Case] = {
    # -- Mentionlab (x-organisation-id is checked on every route; see test_mentionlab_headers)
    ("/api/projects", "POST"): lambda w: [own("POST", "/api/projects", json={"name": "Beta 2"})],
    ("/api/projects", "PATCH"): lambda w: [
        by_path("PATCH", "/api/projects", headers=a_project(w), json={"name": "Taken"}),
    ],
    ("/api/projects/list", "GET"): lambda w: [own("GET", "/api/projects/list")],
    ("/api/projects/<uuid:project_id>", "GET"): lambda w: [
        by_path("GET", f"/api/projects/{w.ids['project']}")
    ],
    ("/api/queries", "POST"): lambda w: [
        by_path("POST", "/api/queries", headers=a_project(w), json={"query": "q"}),
        own("POST", "/api/queries", json={"query": "a question of B's"}),
    ],
    ("/api/queries/many", "POST"): lambda w: [
        by_path(
            "POST", "/api/queries/many", headers=a_project(w), json={"queries": [{"query": "q"}]}
        ),
    ],
    ("/api/queries/list", "POST"): lambda w: [
        by_path("POST", "/api/queries/list", headers=a_project(w), json={}),
        own("POST", "/api/queries/list", json={"query": "best"}),
    ],
    ("/api/queries/<uuid:query_id>", "GET"): lambda w: [
        by_path("GET", f"/api/queries/{w.ids['query']}")
    ],
    ("/api/jobs/trigger", "POST"): lambda w: [
        by_path("POST", "/api/jobs/trigger", headers=a_project(w), json=AI_RUN),
    ],
    ("/api/jobs/list", "POST"): lambda w: [
        by_path("POST", "/api/jobs/list", headers=a_project(w), json={}),
        own("POST", "/api/jobs/list", json={}),
        # Without x-project-id: every job of the caller's organisation, and none of A's.
        own("POST", "/api/jobs/list", json={}, headers={"x-project-id": None}),
        own(
            "POST",
            "/api/jobs/list",
            json={"createdBy": w.ids["user"]},
            headers={"x-project-id": None},
            why="body reference",
        ),
    ],
    ("/api/jobs/<uuid:job_id>", "GET"): lambda w: [
        by_path("GET", f"/api/jobs/{w.ids[k]}") for k in ("ai_job", "batch", "kb_sync_job")
    ],
    ("/api/jobs/<uuid:job_id>/cancel", "POST"): lambda w: [
        by_path("POST", f"/api/jobs/{w.ids[k]}/cancel") for k in ("ai_job", "batch", "kb_sync_job")
    ],
    ("/api/jobs/<uuid:job_id>/retry", "POST"): lambda w: (
        [by_path("POST", f"/api/jobs/{w.ids[k]}/retry") for k in ("ai_job", "batch", "kb_sync_job")]
        + [
            by_path(
                "POST",
                f"/api/jobs/{w.b_ids['failed_job']}/retry",
                json={"executionIds": [w.ids["execution"]]},
                why="A's execution named in B's own job",
            )
        ]
    ),
    ("/api/jobs/<uuid:job_id>/events", "GET"): lambda w: [
        by_path("GET", f"/api/jobs/{w.ids[k]}/events") for k in ("ai_job", "batch", "kb_sync_job")
    ],
    ("/api/jobs/<uuid:job_id>/events/token", "POST"): lambda w: [
        by_path("POST", f"/api/jobs/{w.ids[k]}/events/token")
        for k in ("ai_job", "batch", "kb_sync_job")
    ],
    ("/api/jobs/<uuid:job_id>/executions", "GET"): lambda w: [
        by_path("GET", f"/api/jobs/{w.ids[k]}/executions") for k in ("ai_job", "batch")
    ],
    ("/api/v1/job-executions/<uuid:execution_id>", "GET"): lambda w: [
        by_path("GET", f"/api/v1/job-executions/{w.ids[k]}") for k in ("execution", "data_point")
    ],
    ("/api/cached-jobs/many", "POST"): lambda w: [
        by_path(
            "POST",
            "/api/cached-jobs/many",
            headers=a_project(w),
            json={"cachedJobs": [{"queryId": w.ids["query"], **CACHED}]},
        ),
        by_path(
            "POST",
            "/api/cached-jobs/many",
            json={"cachedJobs": [{"queryId": w.ids["query"], **CACHED}]},
            why="A's query in B's project",
        ),
    ],
    ("/api/cached-jobs/trigger", "POST"): lambda w: [
        by_path("POST", "/api/cached-jobs/trigger", headers=a_project(w), json={}),
    ],
    ("/api/cached-jobs/list", "POST"): lambda w: [
        by_path("POST", "/api/cached-jobs/list", headers=a_project(w), json={}),
        own("POST", "/api/cached-jobs/list", json={}),
    ],
    ("/api/cached-jobs/<uuid:cached_job_id>", "GET"): lambda w: [
        by_path("GET", f"/api/cached-jobs/{w.ids['cached_job']}")
    ],
    # -- super.AI: A's app in the path, and A's children under A's app and under B's
    ("/v1/apps/<app_id>/jobs", "POST"): lambda w: [
        by_path("POST", f"/v1/apps/{w.ids['project']}/jobs", json={"inputs": [{"x": 1}]}),
    ],
    ("/v1/apps/<app_id>/jobs", "GET"): lambda w: [
        by_path("GET", f"/v1/apps/{w.ids['project']}/jobs"),
        own("GET", f"/v1/apps/{w.b.project_id}/jobs"),
    ],
    ("/v1/apps/<app_id>/jobs/<job_id>", "GET"): lambda w: app_children(
        w, "GET", "/jobs/{}", "data_point"
    ),
    ("/v1/apps/<app_id>/jobs/<job_id>/response", "GET"): lambda w: app_children(
        w, "GET", "/jobs/{}/response", "data_point"
    ),
    ("/v1/apps/<app_id>/jobs/<job_id>/cancel", "POST"): lambda w: app_children(
        w, "POST", "/jobs/{}/cancel", "data_point"
    ),
    ("/v1/apps/<app_id>/jobs/<job_id>/retry", "POST"): lambda w: app_children(
        w, "POST", "/jobs/{}/retry", "data_point"
    ),
    ("/v1/apps/<app_id>/batches/<batch_id>/retry", "POST"): lambda w: app_children(
        w, "POST", "/batches/{}/retry", "batch"
    ),
    ("/v1/apps/<app_id>/jobs/<job_id>/queue", "POST"): lambda w: app_children(
        w, "POST", "/jobs/{}/queue", "parked_point"
    ),
    ("/v1/apps/<app_id>/jobs/<job_id>/review", "PATCH"): lambda w: app_children(
        w, "PATCH", "/jobs/{}/review", "data_point", json={"correct": True}
    ),
    ("/v1/apps/<app_id>/jobs/<job_id>/deliveries", "GET"): lambda w: app_children(
        w, "GET", "/jobs/{}/deliveries", "data_point"
    ),
    ("/v1/apps/<app_id>/batches", "GET"): lambda w: [
        by_path("GET", f"/v1/apps/{w.ids['project']}/batches"),
        own("GET", f"/v1/apps/{w.b.project_id}/batches"),
    ],
    ("/v1/apps/<app_id>/batches/<batch_id>", "GET"): lambda w: app_children(
        w, "GET", "/batches/{}", "batch"
    ),
    ("/v1/apps/<app_id>/batches/<batch_id>/deliveries", "GET"): lambda w: app_children(
        w, "GET", "/batches/{}/deliveries", "batch"
    ),
    ("/v1/apps/<app_id>/batches/<batch_id>/deliveries/resend", "POST"): lambda w: app_children(
        w,
        "POST",
        "/batches/{}/deliveries/resend",
        "batch",
        json={"since": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
    ),
    ("/v1/apps/<app_id>/deliveries/<delivery_id>", "GET"): lambda w: app_children(
        w, "GET", "/deliveries/{}", "delivery"
    ),
    ("/v1/apps/<app_id>/deliveries/<delivery_id>/resend", "POST"): lambda w: app_children(
        w, "POST", "/deliveries/{}/resend", "delivery"
    ),
    ("/v1/apps/<app_id>/processor", "GET"): lambda w: [
        by_path("GET", f"/v1/apps/{w.ids['project']}/processor"),
        own("GET", f"/v1/apps/{w.b.project_id}/processor"),
    ],
    ("/v1/apps/<app_id>/processor", "PUT"): lambda w: [
        by_path(
            "PUT",
            f"/v1/apps/{w.ids['project']}/processor",
            json={"promptTemplate": "Say {x}", "model": "gpt-4.1-mini"},
        ),
    ],
    # The caller's own signing secret: no resource is named; A's stays A's.
    ("/v1/webhooks/secret", "GET"): lambda w: [own("GET", "/v1/webhooks/secret")],
    ("/v1/webhooks/secret", "POST"): lambda w: [own("POST", "/v1/webhooks/secret")],
    # -- Valpay (a JWT only)
    ("/v1/jobs", "GET"): lambda w: [
        own("GET", "/v1/jobs", query={"limit": 100}),
        *[
            own("GET", "/v1/jobs", query={"limit": 100, "jobType": t})
            for t in ("ai_queries", "batch", "kb_sync")
        ],
        # A's cursor pages B's own jobs (it is a position, not a grant).
        own("GET", "/v1/jobs", query={"limit": 100, "lastEvaluatedKey": w.ids["cursor"]}),
    ],
    ("/v1/jobs", "POST"): lambda w: [
        valpay_create(w, "ai_queries", {"projectId": w.ids["project"], **AI_RUN}),
        valpay_create(w, "batch", {"appId": w.ids["project"], "inputs": [{"x": 1}]}),
        valpay_create(w, "kb_sync", {"jobName": w.ids["sync_job"]}),
    ],
    # /v1/jobs/{id} is Valpay's with a JWT and super.AI's data points' with an API key:
    # asked with each family's credentials there (see family_credentials).
    ("/v1/jobs/<job_id>", "GET"): lambda w: [
        by_path("GET", f"/v1/jobs/{w.ids[k]}")
        for k in ("ai_job", "batch", "kb_sync_job", "data_point")
    ],
    ("/v1/jobs/<job_id>/response", "GET"): lambda w: [
        by_path("GET", f"/v1/jobs/{w.ids['data_point']}/response")
    ],
    ("/v1/jobs/<job_id>/cancel", "POST"): lambda w: [
        by_path("POST", f"/v1/jobs/{w.ids[k]}/cancel") for k in ("data_point", "parked_point")
    ],
    ("/v1/jobs/<job_id>/retry", "POST"): lambda w: [
        by_path("POST", f"/v1/jobs/{w.ids[k]}/retry") for k in ("ai_job", "batch", "kb_sync_job")
    ],
    ("/v1/jobs/<job_id>/queue", "POST"): lambda w: [
        by_path("POST", f"/v1/jobs/{w.ids['parked_point']}/queue")
    ],
    ("/v1/jobs/<job_id>/review", "PATCH"): lambda w: [
        by_path("PATCH", f"/v1/jobs/{w.ids['data_point']}/review", json={"correct": True})
    ],
    # -- Smart DB: names are per organisation
    ("/databases", "GET"): lambda w: [own("GET", "/databases")],
    ("/databases", "POST"): lambda w: [
        # B may register a database under a name A uses: its own, answered 201 (or 409
        # when B's earlier credential registered it already); deleted by B again below.
        Call(
            "POST",
            "/databases",
            OWN_NAME,
            json={"name": w.ids["database"], "url": SOURCE_URL},
            why="the same name in B's namespace",
        ),
        own("DELETE", f"/databases/{w.ids['database']}", why="B's own, just registered"),
    ],
    ("/databases/<name>", "GET"): lambda w: [by_path("GET", f"/databases/{w.ids['database']}")],
    ("/databases/<name>", "DELETE"): lambda w: [
        by_path("DELETE", f"/databases/{w.ids['database']}")
    ],
    ("/knowledge_bases", "GET"): lambda w: [own("GET", "/knowledge_bases")],
    ("/knowledge_bases", "POST"): lambda w: [
        Call(
            "POST",
            "/knowledge_bases",
            OWN_NAME,
            json={"name": w.ids["kb"]},
            why="the same name in B's namespace",
        ),
        own("DELETE", f"/knowledge_bases/{w.ids['kb']}", why="B's own, just created"),
    ],
    ("/knowledge_bases/<name>", "GET"): lambda w: [
        by_path("GET", f"/knowledge_bases/{w.ids['kb']}")
    ],
    ("/knowledge_bases/<name>", "DELETE"): lambda w: [
        by_path("DELETE", f"/knowledge_bases/{w.ids['kb']}")
    ],
    ("/knowledge_bases/<name>/search", "POST"): lambda w: [
        by_path("POST", f"/knowledge_bases/{w.ids['kb']}/search", json={"query": "shoes"})
    ],
    ("/jobs", "GET"): lambda w: [own("GET", "/jobs")],
    ("/jobs/create", "POST"): lambda w: [
        # A's database (with B's KB), A's KB (with B's database): answered as a name
        # that does not exist is (Smart DB documents INVALID_TABLE / INVALID_KB, 400).
        Call(
            "POST",
            "/jobs/create",
            lambda w: Call(
                "POST", "/jobs/create", 0, json=sync_body(w, "no_such_db", w.b_ids["kb"])
            ),
            json=sync_body(w, w.ids["database"], w.b_ids["kb"]),
            why="body reference",
        ),
        Call(
            "POST",
            "/jobs/create",
            lambda w: Call(
                "POST", "/jobs/create", 0, json=sync_body(w, w.b_ids["database"], "no_such_kb")
            ),
            json=sync_body(w, w.b_ids["database"], w.ids["kb"]),
            why="body reference",
        ),
    ],
    ("/jobs/<name>", "GET"): lambda w: [by_path("GET", f"/jobs/{w.ids['sync_job']}")],
    ("/jobs/<name>", "DELETE"): lambda w: [by_path("DELETE", f"/jobs/{w.ids['sync_job']}")],
    ("/jobs/<name>/history", "GET"): lambda w: [
        by_path("GET", f"/jobs/{w.ids['sync_job']}/history")
    ],
    ("/jobs/<name>/pause", "POST"): lambda w: [by_path("POST", f"/jobs/{w.ids['sync_job']}/pause")],
    ("/jobs/<name>/resume", "POST"): lambda w: [
        by_path("POST", f"/jobs/{w.ids['sync_job']}/resume")
    ],
    ("/jobs/<name>/run", "POST"): lambda w: [by_path("POST", f"/jobs/{w.ids['sync_job']}/run")],
    ("/jobs/<name>/history/<run>/retry", "POST"): lambda w: [
        by_path("POST", f"/jobs/{w.ids['sync_job']}/history/{w.ids['kb_sync_job']}/retry")
    ],
}


# -- the dashboard: B logged in at /ui/ (a session cookie, and a CSRF token on each post) ------------

JOB_KEYS = ("ai_job", "batch", "kb_sync_job")


def ui_jobs(method: str, rest: str = "") -> Case:
    return lambda w: [by_path(method, f"/ui/jobs/{w.ids[k]}{rest}") for k in JOB_KEYS]


UI_CASES: dict[tuple[str, str], Case] = {
    ("/ui/", "GET"): lambda w: [
        own("GET", "/ui/"),
        *[own("GET", "/ui/", query={"type": t}) for t in ("ai_queries", "batch", "kb_sync")],
        own("GET", "/ui/", query={"cursor": w.ids["cursor"]}, why="A's cursor is a position"),
    ],
    ("/ui/jobs/<uuid:job_id>", "GET"): ui_jobs("GET"),
    ("/ui/jobs/<uuid:job_id>/stream-token", "GET"): ui_jobs("GET", "/stream-token"),
    ("/ui/jobs/<uuid:job_id>/executions/<uuid:execution_id>", "GET"): lambda w: [
        by_path("GET", f"/ui/jobs/{w.ids['ai_job']}/executions/{w.ids['execution']}"),
        by_path("GET", f"/ui/jobs/{w.ids['batch']}/executions/{w.ids['data_point']}"),
    ],
    ("/ui/jobs/<uuid:job_id>/cancel", "POST"): ui_jobs("POST", "/cancel"),
    ("/ui/jobs/<uuid:job_id>/retry", "POST"): ui_jobs("POST", "/retry"),
    ("/ui/jobs/<uuid:job_id>/deliveries/resend", "POST"): ui_jobs("POST", "/deliveries/resend"),
    ("/ui/jobs/<uuid:job_id>/deliveries/<uuid:delivery_id>/resend", "POST"): lambda w: [
        by_path("POST", f"/ui/jobs/{w.ids['batch']}/deliveries/{w.ids['delivery']}/resend")
    ],
    ("/ui/schedules", "GET"): lambda w: [own("GET", "/ui/schedules")],
    ("/ui/projects/<uuid:project_id>/pause", "POST"): lambda w: [
        by_path("POST", f"/ui/projects/{w.ids['project']}/pause")
    ],
    ("/ui/projects/<uuid:project_id>/resume", "POST"): lambda w: [
        by_path("POST", f"/ui/projects/{w.ids['project']}/resume")
    ],
    ("/ui/sync-jobs/<name>/pause", "POST"): lambda w: [
        by_path("POST", f"/ui/sync-jobs/{w.ids['sync_job']}/pause")
    ],
    ("/ui/sync-jobs/<name>/resume", "POST"): lambda w: [
        by_path("POST", f"/ui/sync-jobs/{w.ids['sync_job']}/resume")
    ],
    ("/ui/operations", "GET"): lambda w: [own("GET", "/ui/operations")],
}

UI_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def dashboard_sessions(app: Flask, tenant: Tenant) -> Iterator[tuple[str, FlaskClient]]:
    """A test client logged in at /ui/ with each of the tenant's credentials."""
    for name, credential in (("api key", tenant.api_key), ("token", tenant.token)):
        client = app.test_client()
        token = UI_CSRF_FIELD.search(client.get("/ui/login").get_data(as_text=True))
        assert token is not None
        answer = client.post(
            "/ui/login", data={"credential": credential, "csrf_token": token.group(1)}
        )
        assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
        yield name, client


def send_ui(client: FlaskClient, call: Call) -> TestResponse:
    if call.method == "GET":
        return client.get(call.path, query_string=call.query)
    page = client.get("/ui/").get_data(as_text=True)
    token = UI_CSRF_FIELD.search(page)
    assert token is not None, page[:500]
    return client.open(call.path, method=call.method, data={"csrf_token": token.group(1)})


@pytest.mark.parametrize(
    ("rule", "method"),
    [r for r in ROUTES if r[0].startswith("/ui/") and r not in NO_TENANT_RESOURCE],
)
def test_another_tenants_resources_are_not_found_on_the_dashboard(
    matrix_app: Flask, world: World, rule: str, method: str
) -> None:
    """B, logged in at /ui/, names A's resources in every dashboard route: the 404 page
    of a resource that does not exist, nothing of A's in any page, A's rows unchanged."""
    case = UI_CASES.get((rule, method))
    assert case is not None, f"{method} {rule} is not in the tenant matrix: add a UI case"
    calls = case(world)
    assert calls, f"{method} {rule}: a case with no call"
    before = snapshot(world.a.org_id)
    for name, client in dashboard_sessions(matrix_app, world.b):
        for call in calls:
            response = send_ui(client, call)
            where = (method, rule, name, call.path, call.why)
            assert_nothing_of_a(world, call, response)
            if call.expect == NOT_FOUND:
                assert response.status_code == 404, (*where, response.status_code)
                assert response.mimetype == "text/html", where
            else:
                assert response.status_code == 200, (*where, response.status_code)
    assert snapshot(world.a.org_id) == before, f"{method} {rule}: B changed A's rows"


def test_a_sees_its_own_on_the_dashboard(matrix_app: Flask, world: World) -> None:
    """The control: A, logged in, does see its jobs and schedules (so B's empty pages mean
    isolation) and opens the pages B was refused."""
    for _, client in dashboard_sessions(matrix_app, world.a):
        listed = client.get("/ui/").get_data(as_text=True)
        assert all(world.ids[k] in listed for k in JOB_KEYS)
        schedules = client.get("/ui/schedules").get_data(as_text=True)
        assert world.ids["sync_job"] in schedules and world.ids["kb_sync_job"] in schedules
        for key in JOB_KEYS:
            assert client.get(f"/ui/jobs/{world.ids[key]}").status_code == 200
        execution = f"/ui/jobs/{world.ids['ai_job']}/executions/{world.ids['execution']}"
        assert client.get(execution).status_code == 200


# -- asking and checking -----------------------------------------------------------------------------


def credentials(family: Family, tenant: Tenant) -> dict[str, dict[str, str]]:
    """Every credential the family accepts, as headers (Mentionlab's context headers too)."""
    found = {header: {header: tenant.api_key} for header in family.api_key_headers}
    if family.accepts_bearer:
        found["bearer"] = {"Authorization": f"Bearer {tenant.token}"}
    if family.name == "mentionlab":
        for headers in found.values():
            headers.update(
                {"x-organisation-id": str(tenant.org_id), "x-project-id": str(tenant.project_id)}
            )
    return found


def family_credentials(
    app: Flask, path: str, tenant: Tenant
) -> list[tuple[Family, str, dict[str, str]]]:
    """Every (family, credential) that reaches ``path``: each family's credentials that
    name that family there. On most paths, those of the family whose prefix it is under;
    on a path families share (``/v1/jobs/{id}``), each family's own (api.families)."""
    found = []
    for family in FAMILIES:
        for name, auth in credentials(family, tenant).items():
            if family_for(path, auth, app) is family:
                found.append((family, name, auth))
    assert found, f"no credential reaches {path}"
    return found


def send(client: FlaskClient, call: Call, auth: dict[str, str]) -> TestResponse:
    return client.open(
        call.path,
        method=call.method,
        headers={k: v for k, v in {**auth, **call.headers}.items() if v is not None},
        json=call.json,
        query_string=call.query,
    )


def mentions(call: Call) -> str:
    return json.dumps([call.path, call.headers, call.json, call.query], default=str)


def assert_nothing_of_a(world: World, call: Call, response: TestResponse) -> None:
    """Nothing of A's is in the answer but what B itself sent."""
    answer = response.get_data(as_text=True)
    sent = mentions(call)
    leaked = sorted(v for v in world.a_values() if v in answer and v not in sent)
    assert not leaked, (call.method, call.path, call.why, leaked, answer[:2000])


def assert_not_found(family: Family, call: Call, response: TestResponse) -> None:
    """404, in exactly the family's error envelope."""
    assert response.status_code == 404, (call.method, call.path, call.why, response.json)
    body = response.json
    assert isinstance(body, dict)
    message = body.get("message") or body.get("error", {}).get("message")
    assert isinstance(message, str) and message, body
    assert body == family.envelope(404, message, [], None), body


def without_names(body: Any, names: tuple[str, ...]) -> str:
    dumped = json.dumps(body, sort_keys=True)
    for name in names:
        dumped = dumped.replace(name, "<name>")
    return dumped


def check(
    client: FlaskClient, world: World, family: Family, call: Call, auth: dict[str, str]
) -> None:
    response = send(client, call, auth)
    assert_nothing_of_a(world, call, response)
    if call.expect == NOT_FOUND:
        assert_not_found(family, call, response)
    elif call.expect == OWN:
        assert 200 <= response.status_code < 300, (call.method, call.path, response.json)
    elif call.expect == OWN_NAME:  # B's own namespace: created, or already B's
        assert response.status_code in (201, 409), (call.path, response.json)
        if response.status_code == 409:
            assert (response.json or {})["error"]["code"].startswith("DUPLICATE")
    else:
        assert callable(call.expect)
        control = call.expect(world)
        answer = send(client, control, auth)
        assert response.status_code == answer.status_code, (response.json, answer.json)
        # The same answer but for the names each one sent.
        names = ("no_such_db", "no_such_kb", world.ids["database"], world.ids["kb"])
        assert without_names(response.json, names) == without_names(answer.json, names)


@pytest.mark.parametrize(
    ("rule", "method"),
    [r for r in ROUTES if r not in NO_TENANT_RESOURCE and not r[0].startswith("/ui/")],
)
def test_another_tenants_resources_are_not_found_and_unchanged(
    matrix_app: Flask, world: World, rule: str, method: str
) -> None:
    case = CASES.get((rule, method))
    assert case is not None, f"{method} {rule} is not in the tenant matrix: add a case"
    client = matrix_app.test_client()
    calls = case(world)
    assert calls, f"{method} {rule}: a case with no call"
    before = snapshot(world.a.org_id)
    for family, name, auth in family_credentials(matrix_app, calls[0].path, world.b):
        for call in calls:
            try:
                check(client, world, family, call, auth)
            except AssertionError as error:
                raise AssertionError(
                    f"{method} {rule} with {family.name}'s {name}: {error}"
                ) from error
    assert snapshot(world.a.org_id) == before, f"{method} {rule}: B changed A's rows"


@pytest.mark.parametrize(
    ("rule", "method"), [r for r in ROUTES if r[0].startswith("/api/") and r in CASES]
)
def test_mentionlab_context_headers_of_another_organisation_are_not_found(
    matrix_app: Flask, world: World, rule: str, method: str
) -> None:
    """On every Mentionlab route, A's organisation in ``x-organisation-id`` (with B's
    credentials) is 404; so is A's project in ``x-project-id`` wherever the spec says the
    route reads it."""
    client = matrix_app.test_client()
    family = family_of(rule)
    spec: dict[str, Any] = client.get("/openapi.json").json or {}
    # "/api/jobs/<uuid:job_id>" is "/api/jobs/{job_id}" in the spec.
    openapi_path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)
    parameters = spec["paths"][openapi_path][method.lower()].get("parameters", [])
    reads_project = any(p["name"] == "x-project-id" for p in parameters)
    before = snapshot(world.a.org_id)
    for call in CASES[(rule, method)](world):
        headers = [{"x-organisation-id": world.ids["org"]}]
        if reads_project:
            headers.append({"x-project-id": world.ids["project"]})
        for extra in headers:
            for auth in credentials(family, world.b).values():
                probe = Call(call.method, call.path, NOT_FOUND, call.json, extra, call.query)
                response = send(client, probe, auth)
                assert_nothing_of_a(world, probe, response)
                assert_not_found(family, probe, response)
    assert snapshot(world.a.org_id) == before


def test_every_route_of_the_url_map_has_a_case() -> None:
    """A new route fails here until the matrix (or the short list of routes that take no
    tenant resource) covers it; a case for a route that is gone fails too."""
    routes = set(ROUTES)
    covered = set(CASES) | set(UI_CASES) | NO_TENANT_RESOURCE
    assert covered == routes, {
        "routes without a case": sorted(routes - covered),
        "cases without a route": sorted(covered - routes),
    }


def test_a_lists_its_own_resources(matrix_app: Flask, world: World) -> None:
    """The control: the same lists, asked by A, do show A's resources (so B's empty
    answers mean isolation, not an empty world)."""
    client = matrix_app.test_client()
    a = world.a
    text_of = {
        "/api/projects/list": client.get("/api/projects/list", headers=a.headers()),
        "/api/jobs/list": client.post("/api/jobs/list", headers=a.headers(), json={}),
        "/api/cached-jobs/list": client.post("/api/cached-jobs/list", headers=a.headers(), json={}),
        "/v1/apps/jobs": client.get(f"/v1/apps/{a.project_id}/jobs", headers=a.headers()),
        "/v1/apps/batches": client.get(f"/v1/apps/{a.project_id}/batches", headers=a.headers()),
        "/v1/jobs": client.get(
            "/v1/jobs", headers=a.headers(bearer=True), query_string={"limit": 100}
        ),
        "/databases": client.get("/databases", headers=a.headers()),
        "/knowledge_bases": client.get("/knowledge_bases", headers=a.headers()),
        "/jobs": client.get("/jobs", headers=a.headers()),
    }
    expected = {
        "/api/projects/list": "project",
        "/api/jobs/list": "ai_job",
        "/api/cached-jobs/list": "cached_job",
        "/v1/apps/jobs": "data_point",
        "/v1/apps/batches": "batch",
        "/v1/jobs": "kb_sync_job",
        "/databases": "database",
        "/knowledge_bases": "kb",
        "/jobs": "sync_job",
    }
    for path, response in text_of.items():
        assert response.status_code == 200, (path, response.json)
        assert world.ids[expected[path]] in response.get_data(as_text=True), path


def test_the_snapshot_sees_a_change_to_a_row_of_a(world: World) -> None:
    """The "unchanged" check can fail: touching one of A's webhook messages shows."""
    before = snapshot(world.a.org_id)
    with session_scope() as session:
        message = session.get(WebhookMessage, uuid.UUID(world.ids["delivery"]))
        assert message is not None
        message.attempts += 1
    try:
        assert snapshot(world.a.org_id) != before
    finally:
        with session_scope() as session:
            message = session.get(WebhookMessage, uuid.UUID(world.ids["delivery"]))
            assert message is not None
            message.attempts -= 1
    assert snapshot(world.a.org_id) == before
