"""The dashboard at /ui/ through Flask's test client: logging in and out, the session
cookie, tenant isolation, the CSRF check, and each page with real rows behind it."""

from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from api import create_app
from shared.db import session_scope
from shared.engine import sweep_log
from shared.engine.fanout import fan_out_job
from shared.mentionlab.models import Project
from shared.models import ApiKey, Execution, Job, WorkerProcess, utcnow
from tests.support import Tenant

# The pages whose queries differ by database (JSON keys, aggregates, keyset cursors) run on
# SQLite too: make up's database.
ON_EVERY_DATABASE = pytest.mark.every_database
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, page: str = "/ui/login") -> str:
    found = CSRF_FIELD.search(client.get(page).get_data(as_text=True))
    assert found, f"no CSRF token on {page}"
    return found.group(1)


def log_in(client: FlaskClient, credential: str) -> TestResponse:
    return client.post(
        "/ui/login", data={"credential": credential, "csrf_token": csrf_token(client)}
    )


def logged_in(app: Flask, credential: str) -> FlaskClient:
    client = app.test_client()
    response = log_in(client, credential)
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


def post(client: FlaskClient, path: str, **data: str) -> TestResponse:
    """A form post from a dashboard page: with the session's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_token(client, "/ui/"), **data})


def trigger(client: FlaskClient, tenant: Tenant, fan_out: bool = True) -> str:
    created = client.post(
        "/api/jobs/trigger",
        headers=tenant.headers(),
        json={"aiModels": ["sonar", "gpt-4.1-mini"], "executionCount": 1},
    )
    assert created.status_code == 201, created.json
    job_id: str = created.json["id"]
    if fan_out:
        fan_out_job(uuid.UUID(job_id))
    return job_id


def job_status(job_id: str) -> str:
    with session_scope() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        return job.status


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


# -- logging in ---------------------------------------------------------------------------------


def test_a_page_without_a_session_sends_to_the_login_and_back(app: Flask, tenant: Tenant) -> None:
    client = app.test_client()
    page = client.get("/ui/operations")
    assert page.status_code == 303
    assert page.headers["Location"].startswith("/ui/login?next=/ui/operations")
    token = csrf_token(client)
    back = client.post(
        "/ui/login",
        data={"credential": tenant.api_key, "csrf_token": token, "next": "/ui/operations"},
    )
    assert back.status_code == 303 and back.headers["Location"] == "/ui/operations"


def test_the_root_and_ui_send_to_the_dashboard(client: FlaskClient) -> None:
    for path in ("/", "/ui"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"] == "/ui/", path


def test_login_with_an_api_key_sets_a_hardened_session_cookie(app: Flask, tenant: Tenant) -> None:
    client = app.test_client()
    response = log_in(client, tenant.api_key)
    assert response.status_code == 303 and response.headers["Location"] == "/ui/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("jobyard_ui="), cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http unless configured
    assert tenant.api_key not in cookie  # the key itself is never kept
    page = client.get("/ui/")
    assert page.status_code == 200 and "Acme Org" in text(page)
    # Not framed (a cancel button under a decoy), scripts of its own origin only, not cached.
    assert page.headers["X-Frame-Options"] == "DENY"
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert page.headers["Cache-Control"] == "no-store"


def test_the_session_cookie_is_secure_when_configured(tenant: Tenant) -> None:
    app = create_app({"TESTING": True, "SESSION_COOKIE_SECURE": True})
    client = app.test_client()
    response = log_in(client, tenant.api_key)
    assert "Secure" in response.headers["Set-Cookie"]


def test_login_with_a_users_token(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.token)
    assert "Acme Org" in text(client.get("/ui/"))


def test_a_wrong_key_or_token_is_refused_and_opens_nothing(
    app: Flask, tenant: Tenant, outsider: object
) -> None:
    client = app.test_client()
    for credential in ("jy_not-a-key", "not.a.token", tenant.api_key[:-2] + "xx"):
        response = log_in(client, credential)
        assert response.status_code == 401, credential
        assert "Invalid" in text(response)
        assert client.get("/ui/").status_code == 303  # still the login
    outsider_token = outsider.token  # type: ignore[attr-defined]
    assert log_in(client, outsider_token).status_code == 401  # a member of no organisation


def test_a_revoked_key_ends_the_session_at_the_next_click(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.api_key)
    assert client.get("/ui/").status_code == 200
    with session_scope() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.organisation_id == tenant.org_id)
            .values(revoked_at=utcnow())
        )
    assert client.get("/ui/").status_code == 303


def test_a_session_ends_when_its_token_expires(app: Flask, tenant: Tenant) -> None:
    from shared.accounts.auth import issue_token

    short = issue_token(tenant.user_id, tenant.org_id, ttl=timedelta(seconds=3))
    client = logged_in(app, short)
    assert client.get("/ui/").status_code == 200
    time.sleep(3.2)
    assert client.get("/ui/").status_code == 303


def test_logout_ends_the_session(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.api_key)
    response = post(client, "/ui/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/ui/login"
    assert client.get("/ui/").status_code == 303


def test_login_goes_back_to_dashboard_pages_only(app: Flask, tenant: Tenant) -> None:
    client = app.test_client()
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/jobs/list"):
        response = client.post(
            "/ui/login",
            data={"credential": tenant.api_key, "csrf_token": csrf_token(client), "next": target},
        )
        assert response.headers["Location"] == "/ui/", target


# -- CSRF -----------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    app: Flask, tenant: Tenant
) -> None:
    """The guard test: without Flask-WTF's check in the dashboard's before_request the
    cancel below goes through (try it)."""
    client = logged_in(app, tenant.api_key)
    job_id = trigger(client, tenant)
    before = job_status(job_id)
    assert before != "canceled"
    refused = client.post(f"/ui/jobs/{job_id}/cancel", data={})
    assert refused.status_code == 400
    assert "CSRF" in text(refused) and refused.mimetype == "text/html"
    assert job_status(job_id) == before
    forged = client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf_token": "forged"})
    assert forged.status_code == 400 and job_status(job_id) == before
    # Another session's token does not do either.
    other = logged_in(app, tenant.api_key)
    stolen = csrf_token(other, "/ui/")
    assert client.post(f"/ui/jobs/{job_id}/cancel", data={"csrf_token": stolen}).status_code == 400
    assert job_status(job_id) == before
    # With the page's own token: canceled.
    assert post(client, f"/ui/jobs/{job_id}/cancel").status_code == 303
    assert job_status(job_id) == "canceled"


def test_the_login_form_needs_the_csrf_token_too(client: FlaskClient, tenant: Tenant) -> None:
    response = client.post("/ui/login", data={"credential": tenant.api_key})
    assert response.status_code == 400
    assert client.get("/ui/").status_code == 303


def test_api_families_are_not_asked_for_a_csrf_token(client: FlaskClient, tenant: Tenant) -> None:
    assert trigger(client, tenant, fan_out=False)


# -- tenant isolation -------------------------------------------------------------------------------


def test_another_organisations_jobs_are_not_there(
    app: Flask, tenant: Tenant, other_tenant: Tenant
) -> None:
    owner = logged_in(app, tenant.api_key)
    job_id = trigger(owner, tenant)
    with session_scope() as session:
        execution_id = session.scalar(
            select(Execution.id).where(Execution.job_id == uuid.UUID(job_id)).limit(1)
        )
    assert job_id in text(owner.get("/ui/"))
    assert owner.get(f"/ui/jobs/{job_id}").status_code == 200
    assert owner.get(f"/ui/jobs/{job_id}/executions/{execution_id}").status_code == 200

    stranger = logged_in(app, other_tenant.api_key)
    assert job_id not in text(stranger.get("/ui/"))
    for path in (
        f"/ui/jobs/{job_id}",
        f"/ui/jobs/{job_id}/executions/{execution_id}",
        f"/ui/jobs/{job_id}/stream-token",
    ):
        response = stranger.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html", path
        assert str(execution_id) not in text(response)
    assert post(stranger, f"/ui/jobs/{job_id}/cancel").status_code == 404
    assert job_status(job_id) == "processing"
    # The stranger's own job under the owner's job id is no way in either.
    own_job = trigger(stranger, other_tenant)
    assert stranger.get(f"/ui/jobs/{own_job}/executions/{execution_id}").status_code == 404


def test_an_unknown_ui_path_is_an_html_404(client: FlaskClient) -> None:
    response = client.get("/ui/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


# -- the pages ----------------------------------------------------------------------------------------


@ON_EVERY_DATABASE
def test_the_job_list_filters_and_pages(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.api_key)
    jobs = [trigger(client, tenant, fan_out=False) for _ in range(3)]
    post(client, f"/ui/jobs/{jobs[0]}/cancel")
    listed = text(client.get("/ui/", query_string={"status": "canceled"}))
    assert jobs[0] in listed and jobs[1] not in listed
    assert jobs[1] in text(client.get("/ui/", query_string={"type": "ai_queries"}))
    assert jobs[1] not in text(client.get("/ui/", query_string={"type": "batch"}))
    bad = client.get("/ui/", query_string={"status": "exploded"})
    assert bad.status_code == 400 and "status must be one of" in text(bad)
    assert client.get("/ui/", query_string={"cursor": "nonsense"}).status_code == 400

    from api.ui import views

    seen: list[str] = []
    url = "/ui/"
    original = views.JOBS_PER_PAGE
    views.JOBS_PER_PAGE = 2
    try:
        while url:
            page = text(client.get(url))
            seen += re.findall(r'data-job="([0-9a-f-]+)"', page)
            found = re.search(r'href="([^"]+)" id="next-page"', page)
            url = found.group(1).replace("&amp;", "&") if found else ""
    finally:
        views.JOBS_PER_PAGE = original
    assert seen == list(reversed(jobs))


@ON_EVERY_DATABASE
def test_the_job_page_shows_counters_breakdown_executions_and_the_stream(
    app: Flask, tenant: Tenant
) -> None:
    client = logged_in(app, tenant.api_key)
    job_id = trigger(client, tenant)
    page = text(client.get(f"/ui/jobs/{job_id}"))
    assert 'id="counter-pending">6<' in page and 'id="counter-total">6<' in page
    assert "By model" in page and "sonar" in page and "gpt-4.1-mini" in page
    assert page.count('class="execution pending"') == 6
    assert 'data-token="' in page and "/api/jobs/" in page
    token = re.search(r'data-token="([^"]+)"', page)
    assert token
    # The page's stream token opens the job's progress stream.
    from shared.accounts.stream_tokens import verify_stream_token

    assert verify_stream_token(token.group(1), uuid.UUID(job_id)) == tenant.org_id
    fresh = client.get(f"/ui/jobs/{job_id}/stream-token")
    assert verify_stream_token(fresh.json["token"], uuid.UUID(job_id)) == tenant.org_id

    post(client, f"/ui/jobs/{job_id}/cancel")
    failed = text(client.get(f"/ui/jobs/{job_id}", query_string={"status": "failed"}))
    assert failed.count('class="execution failed"') == 6 and "canceled" in failed
    assert 'data-token="' not in failed  # a finished job has nothing to follow
    assert "Cancel job" not in failed
    assert client.get(f"/ui/jobs/{job_id}", query_string={"status": "x"}).status_code == 400


def test_the_execution_page_shows_its_error_and_result(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.api_key)
    job_id = trigger(client, tenant)
    with session_scope() as session:
        first = session.scalars(
            select(Execution).where(Execution.job_id == uuid.UUID(job_id)).order_by(Execution.seq)
        ).first()
        assert first is not None
        execution_id = first.id
        first.result = {"answer": "Acme <b>is</b> the best"}
    page = text(client.get(f"/ui/jobs/{job_id}/executions/{execution_id}"))
    assert "Acme &lt;b&gt;is&lt;/b&gt; the best" in page  # escaped, never markup
    post(client, f"/ui/jobs/{job_id}/cancel")
    page = text(client.get(f"/ui/jobs/{job_id}/executions/{execution_id}"))
    assert 'id="execution-error" class="error">canceled<' in page


def test_schedules_pause_and_resume_a_projects_recurrence(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.api_key)
    page = text(client.get("/ui/schedules"))
    assert "Acme" in page and "No sync jobs" in page
    assert post(client, f"/ui/projects/{tenant.project_id}/pause").status_code == 303
    with session_scope() as session:
        project = session.get(Project, tenant.project_id)
        assert project is not None and project.recurrence_status == "paused"
    assert post(client, f"/ui/projects/{tenant.project_id}/resume").status_code == 303
    with session_scope() as session:
        project = session.get(Project, tenant.project_id)
        assert project is not None and project.recurrence_status == "active"
    assert post(client, f"/ui/projects/{uuid.uuid4()}/pause").status_code == 404
    assert post(client, "/ui/sync-jobs/nothing_here/pause").status_code == 404


@ON_EVERY_DATABASE
def test_operations_shows_workers_queues_and_the_sweeps(
    app: Flask, tenant: Tenant, empty_broker: object
) -> None:
    now = utcnow()
    worker_id = f"ui-test-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        session.add(
            WorkerProcess(
                id=worker_id,
                hostname="host-a",
                pid=4242,
                capacity=16,
                started_at=now,
                heartbeat_at=now,
            )
        )
    sweep_log.record({"dead_workers": 0, "leases_released": 7, "dispatched": 3}, now)
    try:
        client = logged_in(app, tenant.api_key)
        page = text(client.get("/ui/operations"))
        assert worker_id in page and "0 of 16" in page
        assert "executions" in page  # the queues' table
        assert "<td>7</td>" in page  # the sweep's released leases
    finally:
        with session_scope() as session:
            session.execute(WorkerProcess.__table__.delete().where(WorkerProcess.id == worker_id))


@pytest.mark.parametrize("path", ["/ui/", "/ui/schedules", "/ui/operations"])
def test_pages_answer_html(app: Flask, tenant: Tenant, path: str) -> None:
    client = logged_in(app, tenant.api_key)
    response = client.get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"


def finished_with_failures(client: FlaskClient, tenant: Tenant) -> tuple[str, list[uuid.UUID]]:
    """An AI run of six executions, three succeeded and three failed (the engine's own
    claim and finish, as a worker does them): partial_failed."""
    from shared.db import connection_scope
    from shared.engine.claim import claim_group
    from shared.engine.finish import finish_batch
    from shared.engine.outcomes import Outcome

    job_id = trigger(client, tenant)
    with session_scope() as session:
        ids = list(
            session.scalars(
                select(Execution.id)
                .where(Execution.job_id == uuid.UUID(job_id))
                .order_by(Execution.seq)
            )
        )
    with connection_scope() as connection:
        claims = {c.execution_id: c for c in claim_group(connection, ids, "ui-test")}
    outcomes = [
        Outcome.succeeded({"answer": "fine"}) if i % 2 else Outcome.failed("HTTP 400: refused")
        for i in range(len(ids))
    ]
    with connection_scope() as connection:
        finish_batch(connection, [(claims[i], o) for i, o in zip(ids, outcomes, strict=True)])
    assert job_status(job_id) == "partial_failed"
    return job_id, [i for i, o in zip(ids, outcomes, strict=True) if not o.success]


@ON_EVERY_DATABASE
def test_retry_failed_runs_the_failed_ones_again(app: Flask, tenant: Tenant) -> None:
    client = logged_in(app, tenant.api_key)
    job_id, failed = finished_with_failures(client, tenant)
    page = text(client.get(f"/ui/jobs/{job_id}"))
    assert 'id="retry-failed"' in page and "Retry 3 failed" in page
    execution_page = text(client.get(f"/ui/jobs/{job_id}/executions/{failed[0]}"))
    assert "HTTP 400: refused" in execution_page and 'id="retry-execution"' in execution_page

    # One execution, named on its page.
    one = post(client, f"/ui/jobs/{job_id}/retry", execution=str(failed[0]))
    assert one.status_code == 303
    with session_scope() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None and (job.status, job.pending, job.failed) == ("processing", 1, 2)
    # A running job has nothing to retry yet: a 409 page, nothing changed.
    refused = post(client, f"/ui/jobs/{job_id}/retry")
    assert refused.status_code == 409 and refused.mimetype == "text/html"
    assert post(client, f"/ui/jobs/{job_id}/retry", execution="nope").status_code == 400


def test_retry_of_another_organisations_job_is_not_found(
    app: Flask, tenant: Tenant, other_tenant: Tenant
) -> None:
    owner = logged_in(app, tenant.api_key)
    job_id, _ = finished_with_failures(owner, tenant)
    stranger = logged_in(app, other_tenant.api_key)
    assert post(stranger, f"/ui/jobs/{job_id}/retry").status_code == 404
    assert job_status(job_id) == "partial_failed"


def test_schedules_pause_and_resume_a_sync_job(
    app: Flask, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.kb.models import SyncJob
    from shared.settings import reset_settings_cache
    from tests.kb_support import SOURCE_URL, job_body, source_table

    monkeypatch.setenv("JOBYARD_ALLOW_PRIVATE_URLS", "true")  # the source is on 127.0.0.1
    reset_settings_cache()
    suffix = uuid.uuid4().hex[:8]
    database, kb, name = f"ui_db_{suffix}", f"ui_kb_{suffix}", f"ui_sync_{suffix}"
    api = app.test_client()
    headers = tenant.headers()
    try:
        with source_table() as (_engine, table):
            made = api.post(
                "/databases", headers=headers, json={"name": database, "url": SOURCE_URL}
            )
            assert made.status_code == 201, made.json
            assert (
                api.post("/knowledge_bases", headers=headers, json={"name": kb}).status_code == 201
            )
            body = job_body(database, table.name, kb, job_name=name)
            created = api.post("/jobs/create", headers=headers, json=body)
            assert created.status_code == 201, created.json

            def status() -> str:
                with session_scope() as session:
                    row = session.scalars(select(SyncJob).where(SyncJob.name == name)).one()
                    return row.status

            client = logged_in(app, tenant.api_key)
            page = text(client.get("/ui/schedules"))
            assert name in page and f"{database}.{table.name}" in page
            assert post(client, f"/ui/sync-jobs/{name}/pause").status_code == 303
            assert status() == "paused"
            assert "Resume" in text(client.get("/ui/schedules"))
            assert post(client, f"/ui/sync-jobs/{name}/resume").status_code == 303
            assert status() == "scheduled"
            api.delete(f"/jobs/{name}", headers=headers)
    finally:
        reset_settings_cache()


def test_failed_callbacks_are_resent_from_the_job_page(app: Flask, tenant: Tenant) -> None:
    from shared.webhooks import enqueue
    from shared.webhooks.messages import MessageState
    from shared.webhooks.models import WebhookMessage

    api = app.test_client()
    batch = api.post(
        f"/v1/apps/{tenant.project_id}/jobs",
        headers=tenant.headers(),
        json={"inputs": [{"a": 1}], "callbackUrl": "https://hooks.example.com/ui"},
    )
    assert batch.status_code == 200, batch.json
    job_id = batch.json["batchId"]
    with session_scope() as session:
        message = enqueue(
            session,
            organisation_id=tenant.org_id,
            job_id=uuid.UUID(job_id),
            execution_id=None,
            event="batch.finished",
            url="https://hooks.example.com/ui",
            payload={"entityId": job_id},
            now=utcnow() - timedelta(minutes=5),
        )
        message.state = MessageState.FAILED
        message.next_attempt_at = None
        message_id = message.id

    def state() -> str:
        with session_scope() as session:
            row = session.get(WebhookMessage, message_id)
            assert row is not None
            return row.state

    client = logged_in(app, tenant.api_key)
    page = text(client.get(f"/ui/jobs/{job_id}"))
    assert str(message_id) in page and "Resend 1 failed callback(s)" in page
    assert "By input" in page  # a batch is broken down by its inputs
    assert post(client, f"/ui/jobs/{job_id}/deliveries/resend").status_code == 303
    assert state() == MessageState.SENDING
    with session_scope() as session:
        session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == message_id)
            .values(state=MessageState.FAILED, next_attempt_at=None)
        )
    resent = post(client, f"/ui/jobs/{job_id}/deliveries/{message_id}/resend")
    assert resent.status_code == 303 and state() == MessageState.SENDING
    # A callback of another of the organisation's jobs is not this job's to resend.
    other_job = trigger(client, tenant, fan_out=False)
    assert post(client, f"/ui/jobs/{other_job}/deliveries/{message_id}/resend").status_code == 404


def test_the_recovery_sweep_records_what_it_did(
    app: Flask, tenant: Tenant, empty_broker: object
) -> None:
    """The worker's sweep task writes its summary where the operations page reads it."""
    from worker.tasks.recovery import recovery_sweep

    summary = recovery_sweep()
    latest = sweep_log.recent(1)
    assert latest and latest[0]["dispatched"] == summary["dispatched"]
    assert set(summary) <= set(latest[0])
    client = logged_in(app, tenant.api_key)
    assert latest[0]["at"] in text(client.get("/ui/operations"))
