"""``GET /api/jobs/{id}/events``: a job's counters and status as server-sent events.

The stream subscribes to the job's Redis channel (:mod:`shared.engine.progress`) *before*
it reads the job row, so no change falls between the two; then it sends the row as a
``progress`` event, one ``progress`` event per published change, and an ``end`` event
(the final counters) when the job is terminal, and closes. Nothing polls: between
changes the stream waits on the subscription (a greenlet of gunicorn's gevent worker:
the process serves other requests meanwhile). Once per heartbeat it sends a comment
(proxies close silent connections) and re-reads the row, which makes good a publish lost
while Redis was away (pub/sub is at-most-once).

A stream holds a greenlet and a Redis connection while it is open, so a process serves
at most ``JOBYARD_SSE_MAX_STREAMS_PER_PROCESS`` at once (503 beyond) for at most
``JOBYARD_SSE_MAX_STREAM_SECONDS`` each (then a ``timeout`` event: reconnect).

A browser's ``EventSource`` cannot send headers: ``POST /api/jobs/{id}/events/token``
gives a stream token (:mod:`shared.accounts.stream_tokens`) that opens the stream as
``?token=...``, from any origin (the token is the only credential such a request carries,
so ``Access-Control-Allow-Origin: *`` exposes nothing a cookie would).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from flask import Response, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.auth import current_principal, has_credentials, use_principal
from api.mentionlab.context import authenticate, context_headers
from api.mentionlab.schemas import IsoDateTime, Text
from api.transaction import request_session
from shared.accounts.auth import Principal
from shared.accounts.stream_tokens import StreamToken, issue_stream_token, verify_stream_token
from shared.db import session_scope
from shared.engine import jobs as engine_jobs
from shared.engine import progress
from shared.errors import Unavailable
from shared.settings import get_settings
from shared.sqlite import reads_only

blp = Blueprint(
    "mentionlab-job-events",
    __name__,
    url_prefix="/api/jobs",
    description="Live progress of a job (server-sent events), also from a browser",
)
STREAM_TOKEN = "token"


@blp.before_request
def authenticate_caller() -> None:
    """The usual credentials; or, for the stream alone and only when the request carries
    none (an ``EventSource``), a stream token for that job in ``?token=``."""
    token = request.args.get(STREAM_TOKEN)
    is_stream = request.method == "GET" and request.endpoint == f"{blp.name}.JobEvents"
    if token is not None and is_stream and not has_credentials():
        job_id = (request.view_args or {})["job_id"]
        use_principal(Principal(verify_stream_token(token, job_id), None))
        g.by_stream_token = True
        return
    authenticate()


class StreamArgs(Schema):
    token = Text(
        metadata={
            "description": "A stream token from POST /api/jobs/{jobId}/events/token, for a "
            "client that cannot send headers (a browser's EventSource). Never put an API "
            "key or a bearer token in a URL. Ignored when the request carries the usual "
            "credentials."
        }
    )


class StreamTokenSchema(Schema):
    token = fields.String(
        required=True,
        metadata={"description": "Opens this job's stream as ?token=...; nothing else"},
    )
    expiresAt = IsoDateTime(
        attribute="expires_at",
        required=True,
        metadata={
            "description": "When the token stops opening the stream (a stream already open "
            "goes on); ask for a new one to reconnect after this"
        },
    )


_slots_lock = threading.Lock()
_open_streams = {"count": 0}


def _take_slot() -> None:
    with _slots_lock:
        if _open_streams["count"] >= get_settings().sse_max_streams_per_process:
            raise Unavailable(
                "Too many progress streams are open on this server; try again shortly "
                "(or follow GET /api/jobs/{id})"
            )
        _open_streams["count"] += 1


def _release_slot() -> None:
    with _slots_lock:
        _open_streams["count"] -= 1


def sse(event: str, data: dict[str, object]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


@blp.route("/<uuid:job_id>/events")
class JobEvents(MethodView):
    @context_headers
    @blp.arguments(StreamArgs, location="query")
    @blp.response(
        200,
        content_type="text/event-stream",
        description=(
            "Server-sent events: `progress` (the job's counters and status: the current "
            "ones first, then one per change), then `end` (the final counters) when the "
            "job is finished, and the stream closes; a `timeout` event after "
            "JOBYARD_SSE_MAX_STREAM_SECONDS (reconnect). Comment lines are heartbeats. "
            "Opened with a stream token, it answers any origin "
            "(`Access-Control-Allow-Origin: *`)."
        ),
    )
    @blp.alt_response(503, description="Every progress stream slot of the server is taken")
    def get(self, args: dict[str, Any], job_id: uuid.UUID) -> Response:
        """Follow a job's progress live (server-sent events)"""
        response = job_events(current_principal().organisation_id, job_id)
        if g.get("by_stream_token"):
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response


@blp.route("/<uuid:job_id>/events/token")
class JobEventsToken(MethodView):
    @context_headers
    @blp.response(200, StreamTokenSchema)
    def post(self, job_id: uuid.UUID) -> StreamToken:
        """Get a short-lived token that opens this job's progress stream from a browser"""
        principal = current_principal()
        session = request_session()
        engine_jobs.get_job(session, principal.organisation_id, job_id)  # the tenant check
        return issue_stream_token(principal.organisation_id, job_id, principal.user_id)


def job_events(organisation_id: uuid.UUID, job_id: uuid.UUID) -> Response:
    """The stream's response (NotFound, before anything is sent, for another tenant's job)."""
    _take_slot()
    pubsub = progress.redis_client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(progress.channel(job_id))
        session = request_session()
        engine_jobs.get_job(session, organisation_id, job_id)  # the tenant check
        first = progress.read(session, job_id)
        assert first is not None
    except BaseException:
        pubsub.close()
        _release_slot()
        raise
    return Response(
        _stream(job_id, first, pubsub),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def as_event(snapshot: progress.Snapshot) -> dict[str, Any]:
    """A progress snapshot as a Mentionlab job names its counters."""
    return {
        "id": snapshot.id,
        "status": snapshot.status,
        "totalExecutions": snapshot.total,
        "pendingExecutions": snapshot.pending,
        "retryingExecutions": snapshot.retrying,
        "successExecutions": snapshot.success,
        "failedExecutions": snapshot.failed,
    }


def _stream(job_id: uuid.UUID, first: progress.Snapshot, pubsub: object) -> Iterator[str]:
    settings = get_settings()
    try:
        yield "retry: 3000\n\n"
        last = first
        if last.terminal:
            yield sse("end", as_event(last))
            return
        yield sse("progress", as_event(last))
        started = time.monotonic()
        next_beat = started + settings.sse_heartbeat_seconds
        deadline = started + settings.sse_max_stream_seconds
        while True:
            now = time.monotonic()
            if now >= deadline:
                yield sse("timeout", {"id": str(job_id), "reconnect": True})
                return
            if now >= next_beat:
                next_beat = now + settings.sse_heartbeat_seconds
                yield ": heartbeat\n\n"
                with reads_only(), session_scope() as session:
                    current = progress.read(session, job_id)
                if current is None:  # deleted with its project
                    return
            else:
                message = pubsub.get_message(timeout=min(next_beat, deadline) - now)  # type: ignore[attr-defined]
                if message is None or message.get("type") != "message":
                    continue
                current = progress.Snapshot.from_dict(json.loads(message["data"]))
            if current.terminal:
                yield sse("end", as_event(current))
                return
            # Two finishers' publishes may arrive out of commit order: an older one (fewer
            # executions done) is dropped, so a client's counters never go backwards.
            if current != last and current.done >= last.done:
                last = current
                yield sse("progress", as_event(current))
    finally:
        pubsub.close()  # type: ignore[attr-defined]
        _release_slot()
