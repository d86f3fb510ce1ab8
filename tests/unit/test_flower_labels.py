"""What Flower is given to show: a message's job label, as Flower's own search reads it,
and a group's tally, as its task's end reports it (the e2e test, tests/e2e/test_flower.py,
runs both through a real worker and a real Flower)."""

from __future__ import annotations

import ast
import uuid
from types import SimpleNamespace

from flower.utils.search import TaskSearchEngine

from shared.engine.outcomes import Outcome
from shared.messaging.labels import JobGroup, JobLabel, kwargsrepr_of
from worker.runtime.completer import (
    DEFERRED,
    ERRORS_KEPT,
    FAILED,
    NOT_COUNTED,
    RETRYING,
    SUCCEEDED,
    Completion,
    end_of,
)
from worker.runtime.group_events import failure_text


def flower_task(task_id: str, label: JobLabel | None) -> SimpleNamespace:
    """A task as Flower's event state holds it after ``task-received``."""
    return SimpleNamespace(
        uuid=task_id,
        name="executions.run",
        state="SUCCESS",
        worker=None,
        args=repr(([str(uuid.uuid4())],)),
        kwargs=label.kwargsrepr() if label else "{}",
        result="{'claimed': 1, 'succeeded': 1}",
    )


def test_flowers_search_finds_a_job_by_its_id_and_by_the_exact_key() -> None:
    organisation = uuid.uuid4()
    ours, other = uuid.uuid4(), uuid.uuid4()
    label = JobLabel(ours, organisation, "echo")
    assert ast.literal_eval(label.kwargsrepr()) == {
        "job_type": "echo",
        "job_id": str(ours),
        "organisation_id": str(organisation),
    }
    engine = TaskSearchEngine()
    tasks = {
        "t-ours": flower_task("t-ours", label),
        "t-other": flower_task("t-other", JobLabel(other, organisation, "ai_queries")),
        "t-old": flower_task("t-old", None),  # a message published before labels
    }
    for task in tasks.values():
        engine.upsert(task)
    assert engine.matching_ids(str(ours)) == {"t-ours"}
    assert engine.matching_ids(f"kwargs:job_id={ours}") == {"t-ours"}
    assert engine.matching_ids("kwargs:job_type=ai_queries") == {"t-other"}
    assert engine.matching_ids(str(organisation)) == {"t-ours", "t-other"}


def test_a_group_is_its_ids_with_its_label() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    label = JobLabel(uuid.uuid4(), None, "echo")
    group = JobGroup(ids, label)
    assert group == ids and len(group) == 2
    assert kwargsrepr_of(group) == label.kwargsrepr()
    assert "organisation_id" not in label.kwargsrepr()  # unknown: not shown as None
    assert kwargsrepr_of(ids) is None  # a bare list: Celery's own repr


def test_how_an_outcome_ended() -> None:
    failure = Outcome.failed("HTTP 503", retryable=True)
    assert end_of(Outcome.succeeded({}), "success") == SUCCEEDED
    assert end_of(failure, "failed") == FAILED
    assert end_of(failure, "retrying") == RETRYING
    assert end_of(Outcome.deferred(1.0), "pending") == DEFERRED
    assert end_of(failure, None) == NOT_COUNTED  # the lease was gone (a cancel, a takeover)


def test_a_completion_tallies_ends_and_keeps_the_first_distinct_errors() -> None:
    ended: list[Completion] = []
    completion = Completion(7, on_done=ended.append)
    completion.count_down(counted=True, end=SUCCEEDED)
    completion.count_down(counted=True, end=RETRYING, error="HTTP 503")  # not a failure
    for error in ("timeout", "timeout", "HTTP 401", "bad JSON", "HTTP 500"):
        assert not ended
        completion.count_down(counted=True, end=FAILED, error=error)
    assert ended == [completion]
    assert completion.ends == {
        SUCCEEDED: 1,
        FAILED: 5,
        RETRYING: 1,
        DEFERRED: 0,
        NOT_COUNTED: 0,
    }
    assert completion.errors == ["timeout", "HTTP 401", "bad JSON"][:ERRORS_KEPT]
    assert (
        failure_text(5, 7, completion.errors)
        == "5 of 7 executions failed: timeout; HTTP 401; bad JSON"
    )
