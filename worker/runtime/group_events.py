"""A group's task, in Flower, ends when its executions do.

``executions.run`` returns, and its message is acknowledged, while the group's calls still
run on the event loop (:mod:`worker.runtime.groups`): its return value cannot know how they
end. So for a task that handed executions to the loop, Celery's own ``task-succeeded``
event is held back (:class:`GroupRequest`), and when the group's last outcome is written
the completer sends the task's end through the worker's event dispatcher (same hostname,
same clock, on only while task events are):

- ``task-failed`` when any execution ended failed (out of attempts, or an error no retry
  helps): its exception says "k of n executions failed: <the first errors>", so Flower
  shows FAILURE and counts it under Failed;
- ``task-succeeded`` otherwise, its result the group's tally.

Either carries the tally as its result (its counts that are not zero: claimed, and
succeeded, failed, retrying, deferred, not_counted, with the task's own early and
dropped) and the group's runtime (from the claim to the last outcome). Meanwhile Flower
shows the task STARTED, which it is.

Why not Celery's ``task-succeeded`` and a ``task-failed`` after it: ``celery.events.state``,
Flower's model, ranks states by precedence (SUCCESS above FAILURE) and merges a later
event of a lower state into the task without changing its state: the task would stay
SUCCESS with an exception beside it.

What does not count as a failure of the group: an attempt that failed and will be tried
again (``retrying``: its next attempt is a message of its own, which ends as it ends); an
attempt deferred by a throttle; and an outcome not counted (``not_counted``) because the
execution's lease was gone: the job was canceled (a user's decision, not a failure of
the work; the job's own status says canceled), or the lease lapsed and another attempt
took the execution over.

A worker that dies while a group runs sends no end: Flower keeps that task STARTED (its
executions are handed out again and run in other tasks).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery.worker.request import Request

log = logging.getLogger(__name__)

# Celery's events that end a task's run: the first one forgets a deferred task.
TASK_ENDS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected"})

_lock = threading.Lock()
# The worker's Celery consumer (its event dispatcher is replaced when it reconnects).
_consumer: Any = None
_deferred: set[str] = set()  # ids of tasks whose end the completer sends


def attach(consumer: Any) -> None:
    """Send groups' ends through this Celery consumer's event dispatcher (worker_ready)."""
    global _consumer
    _consumer = consumer


@dataclass
class GroupTask:
    """The ``executions.run`` task a group came in, while its executions run."""

    task_id: str
    summary: dict[str, int]  # what the task itself did (claimed, early, dropped)
    started: float = field(default_factory=time.monotonic)


def defer(task_id: str | None, summary: dict[str, int]) -> GroupTask | None:
    """Take over the end of task ``task_id``, about to return with its executions still
    running; None when there is no worker event dispatcher to send it (the group then runs
    as before, its task ending with Celery's own event)."""
    if task_id is None or _consumer is None:
        return None
    with _lock:
        _deferred.add(task_id)
    return GroupTask(task_id, summary)


def _take_deferred(task_id: str) -> bool:
    with _lock:
        if task_id in _deferred:
            _deferred.discard(task_id)
            return True
        return False


class GroupRequest(Request):
    """``executions.run``'s request: its own ``task-succeeded`` is not sent when the task
    deferred its end (the completer sends it, or ``task-failed``, once the group ends)."""

    def send_event(self, type: str, **fields: Any) -> None:
        if type in TASK_ENDS:
            deferred = _take_deferred(self.id)
            if deferred and type == "task-succeeded":
                return  # the completer sends this task's end
        super().send_event(type, **fields)


def failure_text(failed: int, claimed: int, errors: list[str]) -> str:
    """``k of n executions failed: e1; e2``."""
    text = f"{failed} of {claimed} executions failed"
    return f"{text}: {'; '.join(errors)}" if errors else text


def send_end(task: GroupTask, ends: dict[str, int], errors: list[str]) -> None:
    """Send the group task's end (see the module docstring); never raises."""
    consumer = _consumer
    dispatcher = getattr(consumer, "event_dispatcher", None)
    if dispatcher is None:
        return
    # What happened, without the zeros (Flower's result column is one line).
    tally = {k: v for k, v in {**task.summary, **ends}.items() if v or k == "claimed"}
    runtime = time.monotonic() - task.started
    try:
        if ends.get("failed"):
            exception = failure_text(ends["failed"], task.summary.get("claimed", 0), errors)
            dispatcher.send(
                "task-failed",
                uuid=task.task_id,
                exception=exception,
                traceback=exception,
                result=repr(tally),
                runtime=runtime,
            )
        else:
            dispatcher.send(
                "task-succeeded", uuid=task.task_id, result=repr(tally), runtime=runtime
            )
    except Exception:  # monitoring must never stop the completer
        log.warning("could not send the end of group task %s", task.task_id, exc_info=True)
