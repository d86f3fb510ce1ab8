"""The dashboard's pages and forms (see :mod:`api.ui`).

Every view reads through the request's unit of work and filters by the session's
organisation (:func:`organisation_id`); the commands are the ones the API families call
(cancel_job, retry_failed, the webhook resends, a sync job's pause and resume, a
project's recurrence), so the dashboard cannot do what the API would refuse.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, select

from api.transaction import request_session, request_work
from api.ui import csrf
from api.ui.login import Visitor, log_in, log_out, visitor
from shared.accounts.stream_tokens import issue_stream_token
from shared.engine import job_types, sweep_log
from shared.engine import jobs as engine_jobs
from shared.engine import workers as engine_workers
from shared.engine.backlog import executions_backlog, oldest_unclaimed_since
from shared.engine.breakdown import STATUSES, breakdown
from shared.engine.retry import retry_failed
from shared.errors import InvalidInput, Unauthenticated
from shared.kb import sync as kb_sync
from shared.mentionlab import projects
from shared.mentionlab.models import CachedJob, Query
from shared.mentionlab.recurrence import ACTIVE, PAUSED
from shared.messaging.broker import queue_depth
from shared.messaging.queues import ALL_QUEUES
from shared.models import (
    ACTIVE_EXECUTION_STATUSES,
    ACTIVE_JOB_STATUSES,
    Execution,
    Job,
    JobStatus,
    WorkerProcess,
    utcnow,
)
from shared.paging import paginate
from shared.webhooks import messages

blp = Blueprint(
    "ui",
    __name__,
    url_prefix="/ui",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

JOBS_PER_PAGE = 25
EXECUTIONS_PER_PAGE = 50
DELIVERIES_SHOWN = 20
RUNS_SHOWN = 10
RESULT_CHARACTERS = 20_000  # a long answer is cut on the page (the API has it whole)
# Pages anyone may open: the login form and the dashboard's own CSS and JS.
PUBLIC_ENDPOINTS = {f"{blp.name}.login", f"{blp.name}.static"}


# -- the session's organisation -----------------------------------------------------------


@blp.before_request
def check_form_and_visitor() -> Response | None:
    """Every post carries the session's CSRF token (else 400, before anything runs);
    every page but the login needs a session that is still valid (else the login)."""
    if request.method == "POST":
        csrf.protect()
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    found = visitor(request_session())
    if found is None:
        return redirect(url_for(".login", next=request.full_path.rstrip("?")), code=303)  # type: ignore[return-value]
    g.visitor = found
    return None


# The pages load only their own CSS and JS and talk only to their own origin (the progress
# stream included), may not be framed (clickjacking a cancel button), and hold one
# organisation's data: no cache keeps them.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@blp.after_request
def page_headers(response: Response) -> Response:
    for name, value in PAGE_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def current_visitor() -> Visitor:
    found: Visitor = g.visitor
    return found


def organisation_id() -> uuid.UUID:
    return current_visitor().principal.organisation_id


@blp.app_template_filter("age")
def age(moment: datetime | None) -> str:
    """How long ago, in the largest whole unit ("3 min", "2 h", "5 d")."""
    if moment is None:
        return ""
    seconds = max(0, int((utcnow() - moment).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


@blp.app_template_filter("duration")
def duration(pair: tuple[datetime | None, datetime | None]) -> str:
    start, end = pair
    if start is None or end is None:
        return ""
    return f"{(end - start).total_seconds():.2f} s"


@blp.app_template_filter("when")
def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@blp.app_template_filter("usd")
def usd(amount: float | None) -> str:
    return f"${amount or 0:.4f}"


@blp.context_processor
def page_context() -> dict[str, Any]:
    return {"visitor": g.get("visitor")}


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a dashboard page only (never another site)."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return url_for(".jobs")


def choice(name: str, allowed: list[str]) -> str | None:
    """A query parameter that must be one of ``allowed`` (empty: none); else a 400."""
    value = request.args.get(name) or None
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}")
    return value


def page_number() -> int:
    raw = request.args.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise InvalidInput("page must be a whole number from 1")
    return int(raw)


# -- logging in and out -------------------------------------------------------------------


@blp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target, error=None)
    try:
        log_in(request_session(), request.form.get("credential", ""))
    except Unauthenticated as exc:
        # 401 and the form again; nothing of the session changes.
        return render_template("login.html", next=target, error=exc.message), 401
    return redirect(target, code=303)


@blp.route("/logout", methods=["POST"])
def logout() -> Any:
    log_out()
    return redirect(url_for(".login"), code=303)


# -- jobs -----------------------------------------------------------------------------------


def installed_types() -> list[str]:
    return [spec.name for spec in job_types.installed()]


@blp.route("/")
def jobs() -> str:
    """Every job of the organisation, of every type, newest first, in cursor pages."""
    job_type = choice("type", installed_types())
    status = choice("status", [s.value for s in JobStatus])
    cursor = request.args.get("cursor") or None
    page = engine_jobs.browse_jobs(
        request_session(),
        organisation_id(),
        job_types=[job_type] if job_type else None,
        status=status,
        cursor=cursor,
        limit=JOBS_PER_PAGE,
        parameter="cursor",
    )
    filters = {k: v for k, v in (("type", job_type), ("status", status)) if v}
    next_url = (
        f"{url_for('.jobs')}?{urlencode({**filters, 'cursor': page.next_cursor})}"
        if page.next_cursor
        else None
    )
    return render_template(
        "jobs.html",
        jobs=page.items,
        types=installed_types(),
        statuses=[s.value for s in JobStatus],
        filters=filters,
        next_url=next_url,
        first_url=f"{url_for('.jobs')}?{urlencode(filters)}" if cursor else None,
    )


def own_job(job_id: uuid.UUID) -> Job:
    return engine_jobs.get_job(request_session(), organisation_id(), job_id)


def breakdown_of(job: Job) -> Any:
    try:
        key = job_types.spec_for(job.type).breakdown_key
    except job_types.UnknownJobType:
        return None
    return breakdown(request_session(), job.id, key) if key else None


@blp.route("/jobs/<uuid:job_id>")
def job(job_id: uuid.UUID) -> str:
    """A job: counters (live while it runs), breakdown, executions, callbacks, buttons."""
    found = own_job(job_id)
    session = request_session()
    status = choice("status", list(STATUSES))
    stmt = select(Execution).where(Execution.job_id == found.id)
    if status:
        stmt = stmt.where(Execution.status == status)
    executions = paginate(session, stmt.order_by(Execution.seq), EXECUTIONS_PER_PAGE, page_number())
    deliveries = messages.message_log(
        session,
        organisation_id(),
        job_id=found.id,
        execution_id=None,
        cursor=None,
        limit=DELIVERIES_SHOWN,
    )
    failed_deliveries = messages.failed_since(
        session, organisation_id(), [found.id], datetime.min.replace(tzinfo=utcnow().tzinfo)
    )
    active = found.status in ACTIVE_JOB_STATUSES
    stream = (
        issue_stream_token(organisation_id(), found.id, current_visitor().principal.user_id)
        if active
        else None
    )
    return render_template(
        "job.html",
        job=found,
        active=active,
        stream_token=stream.token if stream else None,
        breakdown=breakdown_of(found),
        statuses=STATUSES,
        status=status,
        executions=executions,
        deliveries=deliveries.items,
        more_deliveries=deliveries.next_cursor is not None,
        failed_deliveries=len(failed_deliveries),
    )


@blp.route("/jobs/<uuid:job_id>/stream-token")
def stream_token(job_id: uuid.UUID) -> Response:
    """A new stream token for the job page's live counters (the one in the page expires
    after a few minutes). Read by the page's own script: same origin, no CORS."""
    found = own_job(job_id)
    issued = issue_stream_token(organisation_id(), found.id, current_visitor().principal.user_id)
    return jsonify({"token": issued.token})


@blp.route("/jobs/<uuid:job_id>/executions/<uuid:execution_id>")
def execution(job_id: uuid.UUID, execution_id: uuid.UUID) -> str:
    """One execution: its item, error, attempts, timing, result and callbacks."""
    found = own_job(job_id)
    session = request_session()
    row = engine_jobs.get_execution(session, organisation_id(), execution_id, "Execution")
    if row.job_id != found.id:
        abort(404)
    result = json.dumps(row.result, indent=2, ensure_ascii=False) if row.result else ""
    deliveries = messages.message_log(
        session,
        organisation_id(),
        job_id=found.id,
        execution_id=row.id,
        cursor=None,
        limit=DELIVERIES_SHOWN,
    )
    return render_template(
        "execution.html",
        job=found,
        execution=row,
        item=json.dumps(row.item, indent=2, ensure_ascii=False),
        result=result[:RESULT_CHARACTERS],
        result_cut=len(result) > RESULT_CHARACTERS,
        deliveries=deliveries.items,
    )


def back_to_job(job_id: uuid.UUID) -> Response:
    return redirect(url_for(".job", job_id=job_id), code=303)  # type: ignore[return-value]


@blp.route("/jobs/<uuid:job_id>/cancel", methods=["POST"])
def cancel(job_id: uuid.UUID) -> Response:
    engine_jobs.cancel_job(request_work(), organisation_id(), job_id)
    flash("Canceled: no new attempt starts; unfinished executions end failed (canceled).")
    return back_to_job(job_id)


@blp.route("/jobs/<uuid:job_id>/retry", methods=["POST"])
def retry(job_id: uuid.UUID) -> Response:
    """Run the finished job's failed executions again (or the one the execution page
    names), as ``POST /api/jobs/{id}/retry`` does."""
    named = request.form.get("execution")
    try:
        execution_ids = [uuid.UUID(named)] if named else None
    except ValueError:
        raise InvalidInput("execution must be an execution id") from None
    again = retry_failed(request_work(), organisation_id(), job_id, execution_ids=execution_ids)
    flash(
        f"Retrying {'that execution' if named else 'the failed executions'}: the job is {again.status}."
    )
    return back_to_job(job_id)


@blp.route("/jobs/<uuid:job_id>/deliveries/resend", methods=["POST"])
def resend_failed_deliveries(job_id: uuid.UUID) -> Response:
    """Send every callback of the job that failed for good once more, now."""
    found = own_job(job_id)
    session = request_session()
    ids = messages.failed_since(
        session, organisation_id(), [found.id], datetime.min.replace(tzinfo=utcnow().tzinfo)
    )
    flash(
        f"{messages.resend(session, organisation_id(), ids)} callback(s) queued to be sent again."
    )
    return back_to_job(job_id)


@blp.route("/jobs/<uuid:job_id>/deliveries/<uuid:delivery_id>/resend", methods=["POST"])
def resend_delivery(job_id: uuid.UUID, delivery_id: uuid.UUID) -> Response:
    found = own_job(job_id)
    session = request_session()
    log = messages.get_message(session, organisation_id(), delivery_id)
    if log.message.job_id != found.id:
        abort(404)
    messages.resend_one(session, organisation_id(), delivery_id)
    flash("The callback is queued to be sent again.")
    return back_to_job(job_id)


# -- runs and schedules ------------------------------------------------------------------------


@blp.route("/schedules")
def schedules() -> str:
    """Mentionlab projects with their recurrence and cached jobs; Smart DB sync jobs with
    their next run and latest runs."""
    session = request_session()
    org = organisation_id()
    owned_projects = projects.list_projects(session, current_visitor().principal)
    cached = session.execute(
        select(CachedJob, Query.text)
        .join(Query, Query.id == CachedJob.query_id)
        .where(CachedJob.organisation_id == org)
        .order_by(CachedJob.project_id, CachedJob.created_at, CachedJob.id)
        .limit(500)
    ).all()
    by_project: dict[uuid.UUID, list[Any]] = {}
    for cached_job, query_text in cached:
        by_project.setdefault(cached_job.project_id, []).append((cached_job, query_text))
    syncs = [
        (
            sync_job,
            kb_sync.next_run_at(session, sync_job),
            kb_sync.runs_of(session, sync_job.id, RUNS_SHOWN),
        )
        for sync_job in kb_sync.list_sync_jobs(session, org)
    ]
    return render_template(
        "schedules.html", projects=owned_projects, cached=by_project, syncs=syncs
    )


def set_recurrence(project_id: uuid.UUID, status: str) -> Response:
    projects.update_project(
        request_session(), current_visitor().principal, project_id, {"recurrence_status": status}
    )
    flash(f"Project recurrence {status}.")
    return redirect(url_for(".schedules"), code=303)  # type: ignore[return-value]


@blp.route("/projects/<uuid:project_id>/pause", methods=["POST"])
def pause_project(project_id: uuid.UUID) -> Response:
    return set_recurrence(project_id, PAUSED)


@blp.route("/projects/<uuid:project_id>/resume", methods=["POST"])
def resume_project(project_id: uuid.UUID) -> Response:
    return set_recurrence(project_id, ACTIVE)


@blp.route("/sync-jobs/<name>/pause", methods=["POST"])
def pause_sync(name: str) -> Response:
    kb_sync.pause(request_session(), organisation_id(), name)
    flash(f"Sync job {name} paused.")
    return redirect(url_for(".schedules"), code=303)  # type: ignore[return-value]


@blp.route("/sync-jobs/<name>/resume", methods=["POST"])
def resume_sync(name: str) -> Response:
    kb_sync.resume(request_session(), organisation_id(), name)
    flash(f"Sync job {name} resumed.")
    return redirect(url_for(".schedules"), code=303)  # type: ignore[return-value]


# -- operations ---------------------------------------------------------------------------------


@blp.route("/operations")
def operations() -> str:
    """The engine as a whole: workers, queues, backlog, the recovery sweep. Counts only:
    nothing here names another organisation's job (the waiting and backlog lines of the
    visitor's own organisation are its jobs' counters)."""
    session = request_session()
    now = utcnow()
    workers = list(session.scalars(select(WorkerProcess).order_by(WorkerProcess.started_at)))
    in_use = dict(
        session.execute(
            select(Execution.lease_owner, func.count())
            .where(
                Execution.dispatched_at.is_not(None),
                Execution.status.in_(ACTIVE_EXECUTION_STATUSES),
                Execution.lease_token.is_not(None),
            )
            .group_by(Execution.lease_owner)
        ).all()
    )
    try:
        depths: dict[str, int | None] = {queue: queue_depth(queue) for queue in ALL_QUEUES}
    except Exception:  # Redis away: the page still shows the rest
        depths = dict.fromkeys(ALL_QUEUES)
    since = oldest_unclaimed_since(session, now)
    own_backlog = session.scalar(
        select(func.coalesce(func.sum(Job.pending + Job.retrying), 0)).where(
            Job.organisation_id == organisation_id(), Job.status.in_(ACTIVE_JOB_STATUSES)
        )
    )
    alive_since = engine_workers.alive_since(now)
    return render_template(
        "operations.html",
        workers=[(w, int(in_use.get(w.id, 0)), w.heartbeat_at >= alive_since) for w in workers],
        depths=depths,
        oldest_wait=(now - since).total_seconds() if since else None,
        backlog=executions_backlog(session),
        own_backlog=int(own_backlog or 0),
        sweeps=sweep_log.recent(),
    )
