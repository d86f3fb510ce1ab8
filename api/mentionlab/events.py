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
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

from flask import Response

from shared.db import session_scope
from shared.engine import jobs as engine_jobs
from shared.engine import progress
from shared.errors import Unavailable
from shared.settings import get_settings

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


def job_events(organisation_id: uuid.UUID, job_id: uuid.UUID) -> Response:
    """The stream's response (NotFound, before anything is sent, for another tenant's job)."""
    _take_slot()
    pubsub = progress.redis_client().pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(progress.channel(job_id))
        with session_scope() as session:
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


def _stream(job_id: uuid.UUID, first: progress.Snapshot, pubsub: object) -> Iterator[str]:
    settings = get_settings()
    try:
        yield "retry: 3000\n\n"
        last = first
        if last.terminal:
            yield sse("end", last.as_dict())
            return
        yield sse("progress", last.as_dict())
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
                with session_scope() as session:
                    current = progress.read(session, job_id)
                if current is None:  # deleted with its project
                    return
            else:
                message = pubsub.get_message(timeout=min(next_beat, deadline) - now)  # type: ignore[attr-defined]
                if message is None or message.get("type") != "message":
                    continue
                current = progress.Snapshot.from_dict(json.loads(message["data"]))
            if current.terminal:
                yield sse("end", current.as_dict())
                return
            # Two finishers' publishes may arrive out of commit order: an older one (fewer
            # executions done) is dropped, so a client's counters never go backwards.
            if current != last and current.done >= last.done:
                last = current
                yield sse("progress", current.as_dict())
    finally:
        pubsub.close()  # type: ignore[attr-defined]
        _release_slot()
